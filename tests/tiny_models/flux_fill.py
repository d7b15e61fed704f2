"""A tiny FLUX.1 Fill pipeline: the tiny FLUX.1 parts plus a transformer that takes the packed noise (64),
the packed masked image (64) and the packed 8x8 mask (256) as input channels: 384 in, 64 out, as in
FLUX.1-Fill-dev (whose VAE has 16 latent channels: 64 packed)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel

from tests.tiny_models.flux import flux_text_parts, flux_vae


def build_flux_fill(out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    clip, clip_tok, t5, t5_tok = flux_text_parts()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=384, out_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    vae = flux_vae()
    FluxFillPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=clip, tokenizer=clip_tok,
                     text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer, vae=vae).save_pretrained(out)
    return out


def build_flux_kontext(out: Path, seed: int = 0) -> Path:
    """A tiny FLUX.1 Kontext inpainting pipeline: FLUX.1's own transformer shape (64 packed channels in; the
    reference image's tokens are appended to the sequence, not to the channels)."""
    from diffusers import FluxKontextInpaintPipeline

    torch.manual_seed(seed)
    clip, clip_tok, t5, t5_tok = flux_text_parts()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    vae = flux_vae()
    FluxKontextInpaintPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=clip, tokenizer=clip_tok,
                               text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer,
                               vae=vae).save_pretrained(out)
    return out
