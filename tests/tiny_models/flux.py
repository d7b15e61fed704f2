"""A tiny FLUX.1 pipeline with FLUX's own ratios (VAE downsamples by 8 into 16 latent channels,
transformer takes 64 packed channels, guidance embedding on), saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

from tests.tiny_models.tokenizers_local import byte_level_bpe, unigram


def flux_tokenizers() -> tuple[CLIPTokenizer, T5Tokenizer]:
    """CLIP and T5 tokenizers trained on the spot (their ids fit any vocabulary at least this large)."""
    vocab, merges = byte_level_bpe(end_of_word="</w>")
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77), T5Tokenizer(vocab=unigram(), extra_ids=0)


def flux_text_parts() -> tuple[CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer]:
    """The tiny FLUX.1 text encoders and tokenizers (seed torch first), shared by text-to-image and Fill."""
    clip_tok, t5_tok = flux_tokenizers()
    vocab = clip_tok.get_vocab()
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
    ))
    t5_vocab = t5_tok.get_vocab()
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_vocab), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))
    return clip, clip_tok, t5, t5_tok


def flux_vae() -> AutoencoderKL:
    """FLUX.1's VAE shape at toy width: 8x downsampling into 16 latent channels."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4), layers_per_block=1, norm_num_groups=4,
        use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035,
    )


def build_flux(out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    clip, clip_tok, t5, t5_tok = flux_text_parts()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    vae = flux_vae()
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=clip, tokenizer=clip_tok,
        text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer, vae=vae,
    )
    pipe.save_pretrained(out)
    return out
