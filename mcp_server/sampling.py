"""MCP sampling: the job's copy designed by the calling client's own model, when it offers one."""

from __future__ import annotations

import warnings

from mcp.server.mcpserver import Context
from mcp_types import SamplingMessage, TextContent

from pipeline.jobs.designers import Sampler
from pipeline.messages import DesignPrompt


def sampler_for(ctx: Context) -> Sampler | None:
    """Ask the calling client's own model for the design, when the client offers sampling."""
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        return None

    async def sample(prompt: DesignPrompt) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sampling is deprecated in the 2026-07-28 protocol, not in ours
            result = await ctx.session.create_message(
                [SamplingMessage(role="user", content=TextContent(text=prompt.user))],
                max_tokens=prompt.max_tokens, system_prompt=prompt.system, related_request_id=ctx.request_id,
            )
        content = result.content
        return content.text if isinstance(content, TextContent) else ""

    return sample
