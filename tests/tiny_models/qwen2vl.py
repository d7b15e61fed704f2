"""A tiny Qwen2-VL (vision tower + multimodal RoPE text model) with a local tokenizer and processor."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    Qwen2Tokenizer,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from tests.tiny_models.tokenizers_local import byte_level_bpe

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen2vl_tokenizer() -> tuple[Qwen2Tokenizer, dict[str, int]]:
    """A local byte-level BPE with Qwen2-VL's special tokens, and their ids."""
    vocab, merges = byte_level_bpe(vocab_size=400)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    return tok, {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}


def qwen2vl_processor(tok: Qwen2Tokenizer, max_pixels: int = 224 * 224) -> Qwen2VLProcessor:
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels, patch_size=14, merge_size=2)
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=max_pixels, patch_size=14, merge_size=2)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                            chat_template=CHAT_TEMPLATE)


def build_qwen2vl(out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tok, ids = qwen2vl_tokenizer()
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 32, "num_heads": 4, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3, "mlp_ratio": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    qwen2vl_processor(tok).save_pretrained(out)
    return out
