"""A tiny FLUX.2 [klein] inpainting pipeline: Flux2Transformer2DModel, AutoencoderKLFlux2, a Qwen3 text
encoder and a locally trained byte-level BPE Qwen2 tokenizer with a chat template, saved with save_pretrained.

Ratios follow the published 4B model where they matter to the product code: the VAE downsamples by 8,
latents are 2x2-patchified into the transformer's channels (in_channels = 4 x latent channels), and the
transformer's joint dimension is the encoder's hidden size times the stacked layers (one layer here, so
the backend must pass ``text_encoder_out_layers=(1,)``, which it derives from the configs). The model
index says ``is_distilled`` like klein 4B's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLFlux2,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinInpaintPipeline,
    Flux2Transformer2DModel,
)
from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3ForCausalLM

from tests.tiny_models.tokenizers_local import byte_level_bpe

LATENT = 8
HIDDEN = 16
# Qwen3's template, reduced to what the pipeline uses (one user message, generation prompt, no thinking).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def qwen3_tokenizer() -> Qwen2Tokenizer:
    vocab, merges = byte_level_bpe(vocab_size=400)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<think>", "</think>"]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_flux2_klein(out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tok = qwen3_tokenizer()
    text_encoder = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=1024, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.pad_token_id,
    ))
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=4 * LATENT, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=HIDDEN, timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False,
    )
    vae = AutoencoderKLFlux2(
        sample_size=64, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(4, 4, 4, 4), layers_per_block=1,
        latent_channels=LATENT, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
        mid_block_add_attention=False,
    )
    pipe = Flux2KleinInpaintPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                                     tokenizer=tok, transformer=transformer, is_distilled=True)
    pipe.save_pretrained(out)
    return out


def write_klein_4b_configs(out: Path) -> Path:
    """Config-only folder of FLUX.2 [klein] 4B (no weights), for the memory plan: 5 double + 20 single blocks of
    24 x 128 heads, 128 packed latent channels, text embedding of 3 stacked Qwen3-4B layers (3 x 2560), the
    VAE's defaults, Qwen3-4B (36 layers, hidden 2560, GQA 32/8, tied embeddings). The architecture figures are
    those of the published model (3.9 B + 4.0 B parameters, checked in tests/test_profiles.py)."""
    import json

    def write(path: Path, data: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))

    write(out / "model_index.json", {
        "_class_name": "Flux2KleinInpaintPipeline", "_diffusers_version": "0.42.1", "is_distilled": True,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "Qwen3ForCausalLM"],
        "tokenizer": ["transformers", "Qwen2TokenizerFast"], "transformer": ["diffusers", "Flux2Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLFlux2"]})
    write(out / "transformer" / "config.json", {
        "_class_name": "Flux2Transformer2DModel", "patch_size": 1, "in_channels": 128, "num_layers": 5,
        "num_single_layers": 20, "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 7680,
        "timestep_guidance_channels": 256, "mlp_ratio": 3.0, "axes_dims_rope": [32, 32, 32, 32], "guidance_embeds": False})
    write(out / "vae" / "config.json", {"_class_name": "AutoencoderKLFlux2"})
    write(out / "text_encoder" / "config.json", {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 2560, "intermediate_size": 9728,
        "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 40960})
    return out
