"""The published configs of the default models, written as config-only folders (no weights).

The memory plan reads sizes from configs, so these folders let tests and ``bench.gpu --check``
plan for the real models without downloading them. Values are those of the config.json files
the model repositories publish (FLUX.1-dev's model_index.json and per-component configs,
Qwen2-VL-2B-Instruct, SAM-HQ ViT-H, ViTMatte-B); parameter counts computed from them on the
meta device are checked against the published sizes in tests/test_memory_plan.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FLUX_DEV_INDEX = {
    "_class_name": "FluxPipeline", "_diffusers_version": "0.30.0.dev0",
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
}
FLUX_DEV_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                            guidance_embeds=True, axes_dims_rope=(16, 56, 56))
FLUX_DEV_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, act_fn="silu", layers_per_block=2,
                    block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                    up_block_types=["UpDecoderBlock2D"] * 4, norm_num_groups=32, sample_size=1024,
                    scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
                    mid_block_add_attention=True, force_upcast=True)
CLIP_L_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=12, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu")
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
              tie_word_embeddings=False, is_encoder_decoder=True)
# Qwen2-VL-2B-Instruct config.json (text and vision towers).
QWEN2VL_2B = dict(
    text_config=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                     num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                     tie_word_embeddings=True),
    vision_config=dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4, patch_size=14,
                       spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
    tie_word_embeddings=True,
)
# Qwen2-VL-7B-Instruct: the larger VLM a 48 GB card can hold next to FLUX only by loading it per stage.
QWEN2VL_7B = dict(
    QWEN2VL_2B,
    text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                     num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                     tie_word_embeddings=False),
    vision_config=dict(QWEN2VL_2B["vision_config"], hidden_size=3584),
    tie_word_embeddings=False,
)
# syscv-community/sam-hq-vit-huge: SAM's ViT-H image encoder plus the HQ mask decoder.
SAM_HQ_VIT_H = dict(
    vision_config=dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                       global_attn_indexes=[7, 15, 23, 31], output_channels=256, image_size=1024, patch_size=16,
                       window_size=14, mlp_dim=5120),
    mask_decoder_config=dict(vit_dim=1280),
)
# hustvl/vitmatte-base-composition-1k: a ViTDet-B backbone over RGB + trimap.
VITMATTE_B = dict(
    backbone_config=dict(model_type="vitdet", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         num_channels=4, image_size=512, pretrain_image_size=224, patch_size=16, mlp_ratio=4,
                         window_size=14, window_block_indices=[0, 1, 3, 4, 6, 7, 9, 10],
                         residual_block_indices=[2, 5, 8, 11], use_relative_position_embeddings=True,
                         out_features=["stage12"]),
    hidden_size=768, convstream_hidden_sizes=[48, 96, 192], fusion_hidden_sizes=[256, 128, 64, 32],
)


def _json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def write_flux_dev(out: Path) -> Path:
    from transformers import CLIPTextConfig, T5Config

    _json(out / "model_index.json", FLUX_DEV_INDEX)
    _json(out / "transformer" / "config.json", {"_class_name": "FluxTransformer2DModel", **FLUX_DEV_TRANSFORMER})
    _json(out / "vae" / "config.json", {"_class_name": "AutoencoderKL", **FLUX_DEV_VAE})
    CLIPTextConfig(**CLIP_L_TEXT).save_pretrained(out / "text_encoder")
    T5Config(**T5_XXL).save_pretrained(out / "text_encoder_2")
    return out


def write_qwen2vl(out: Path, dims: dict[str, Any] = QWEN2VL_2B) -> Path:
    from transformers import Qwen2VLConfig

    Qwen2VLConfig(**dims).save_pretrained(out)
    return out


def write_sam_hq(out: Path) -> Path:
    from transformers import SamHQConfig

    SamHQConfig(**SAM_HQ_VIT_H).save_pretrained(out)
    return out


def write_vitmatte(out: Path) -> Path:
    from transformers import VitMatteConfig

    VitMatteConfig(**VITMATTE_B).save_pretrained(out)
    return out


def write_defaults(root: Path, vlm: dict[str, Any] = QWEN2VL_2B) -> dict[str, Path]:
    """Config-only folders for the default model set: role -> folder (settings take folders as models)."""
    return {"flux": write_flux_dev(root / "flux"), "seg": write_sam_hq(root / "sam-hq"),
            "matting": write_vitmatte(root / "vitmatte"), "vlm": write_qwen2vl(root / "qwen2-vl", vlm)}
