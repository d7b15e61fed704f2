"""LLM designers on the server side: MCP sampling (the calling agent's own model) or Anthropic.

They run in the server process because sampling is a request back through the client's
MCP session, which only the server holds; the Anthropic call is plain async HTTP beside it.
The worker asks for a design with a DesignNeeded event and gets a DesignAnswer back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from pipeline.messages import MAX_ANSWER_CHARS, DesignPrompt

log = logging.getLogger(__name__)

Sampler = Callable[[DesignPrompt], Awaitable[str]]


@dataclass(frozen=True)
class LLMAnswer:
    text: str | None
    source: str  # mcp_sampling / anthropic / none
    note: str = ""


class LLMDesigners:
    def __init__(self, model: str, timeout_s: float, api_key: str | None = None, base_url: str | None = None) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.api_key = api_key
        self.base_url = base_url
        self._anthropic: Any = None

    @property
    def anthropic_configured(self) -> bool:
        return bool(self.api_key)

    def _client(self) -> Any:
        if self._anthropic is None:
            from anthropic import AsyncAnthropic

            # Key and base URL come from Settings (ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL, as the SDK reads them).
            self._anthropic = AsyncAnthropic(
                api_key=self.api_key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0
            )
        return self._anthropic

    async def _ask_anthropic(self, prompt: DesignPrompt) -> str:
        msg = await self._client().messages.create(
            model=self.model, max_tokens=prompt.max_tokens, system=prompt.system,
            messages=[{"role": "user", "content": prompt.user}],
        )
        return "".join(getattr(block, "text", "") for block in msg.content)

    async def answer(self, prompt: DesignPrompt, sampler: Sampler | None) -> LLMAnswer:
        attempts: list[tuple[str, Callable[[DesignPrompt], Awaitable[str]]]] = []
        if sampler is not None:
            attempts.append(("mcp_sampling", sampler))
        if self.anthropic_configured:
            attempts.append(("anthropic", self._ask_anthropic))
        if not attempts:
            why = "no LLM reachable (no sampling-capable client waiting, no ANTHROPIC_API_KEY)"
            return LLMAnswer(None, "none", why)
        notes = []
        for source, ask in attempts:
            try:
                with anyio.fail_after(self.timeout_s):
                    text = await ask(prompt)
            except TimeoutError:
                notes.append(f"{source} gave no answer within {self.timeout_s:g} s")
                continue
            except Exception as exc:
                log.warning("%s designer failed: %s", source, exc)
                notes.append(f"{source} failed ({type(exc).__name__})")
                continue
            if len(text) > MAX_ANSWER_CHARS:
                notes.append(f"{source} answer too large ({len(text)} characters)")
                continue
            if not text.strip():
                notes.append(f"{source} answer was empty")
                continue
            return LLMAnswer(text, source, "; ".join(notes))
        return LLMAnswer(None, "none", "; ".join(notes))
