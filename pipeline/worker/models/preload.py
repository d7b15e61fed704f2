"""What a diffusion-backend worker imports, imported once by the forkserver (see ``pipeline.worker.preload``).

diffusers and transformers load a model class's module on first attribute access (seconds each on a
CPU); touching the classes the profiles use here makes those imports happen once per server instead
of at every worker start.
"""

from __future__ import annotations

import contextlib

import diffusers
import torch  # noqa: F401
import transformers

import pipeline.worker.backends.diffusion  # noqa: F401

_DIFFUSERS = ("FluxPipeline", "FluxImg2ImgPipeline", "FluxFillPipeline", "FluxKontextInpaintPipeline",
              "Flux2KleinInpaintPipeline", "AutoencoderKL", "AutoencoderKLFlux2", "FluxTransformer2DModel",
              "Flux2Transformer2DModel", "FlowMatchEulerDiscreteScheduler")
_TRANSFORMERS = ("SamHQModel", "SamHQProcessor", "VitMatteForImageMatting", "VitMatteImageProcessor",
                 "AutoModelForImageTextToText", "AutoProcessor", "Qwen2VLForConditionalGeneration",
                 "CLIPTextModel", "CLIPTokenizer", "T5EncoderModel", "T5TokenizerFast", "Qwen3ForCausalLM",
                 "Qwen2TokenizerFast")

for _module, _names in ((diffusers, _DIFFUSERS), (transformers, _TRANSFORMERS)):
    for _name in _names:
        with contextlib.suppress(Exception):  # a class this version lacks is simply imported on use, if ever
            getattr(_module, _name)
