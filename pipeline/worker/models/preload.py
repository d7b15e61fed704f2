"""What a diffusion-backend worker imports, imported once by the forkserver (see ``pipeline.worker.preload``).

diffusers and transformers load a model class's module on first attribute access (seconds each on a
CPU); touching the classes the profiles use here makes those imports happen once per server instead
of at every worker start. Nothing here may stop the forkserver: a library that fails to import (a
broken CUDA install, say) is only logged, and the worker meets the same error, with its own message,
when a job needs it; draft jobs keep working.
"""

from __future__ import annotations

import contextlib
import logging

_DIFFUSERS = ("FluxPipeline", "FluxImg2ImgPipeline", "FluxFillPipeline", "FluxKontextInpaintPipeline",
              "Flux2KleinInpaintPipeline", "AutoencoderKL", "AutoencoderKLFlux2", "FluxTransformer2DModel",
              "Flux2Transformer2DModel", "FlowMatchEulerDiscreteScheduler")
_TRANSFORMERS = ("SamHQModel", "SamHQProcessor", "VitMatteForImageMatting", "VitMatteImageProcessor",
                 "AutoModelForImageTextToText", "AutoProcessor", "Qwen2VLForConditionalGeneration",
                 "CLIPTextModel", "CLIPTokenizer", "T5EncoderModel", "T5TokenizerFast", "Qwen3ForCausalLM",
                 "Qwen2TokenizerFast")


def _preload() -> None:
    try:
        import diffusers
        import torch  # noqa: F401
        import transformers

        import pipeline.worker.backends.diffusion  # noqa: F401
    except Exception as exc:
        logging.getLogger(__name__).warning("model libraries not preloaded (%s: %s)", type(exc).__name__, exc)
        return
    for module, names in ((diffusers, _DIFFUSERS), (transformers, _TRANSFORMERS)):
        for name in names:
            with contextlib.suppress(Exception):  # a class this version lacks is imported on use, if ever
                getattr(module, name)


_preload()
