"""Tiny SAM-HQ and ViTMatte: transformers' own classes at toy widths, with their own processors.

The product loads them with ``SamHQModel`` / ``VitMatteForImageMatting.from_pretrained`` exactly
as it loads the published checkpoints; only the sizes differ (SAM-HQ sees 128 px, not 1024).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    SamHQConfig,
    SamHQModel,
    SamHQProcessor,
    SamImageProcessor,
    VitDetConfig,
    VitMatteConfig,
    VitMatteForImageMatting,
    VitMatteImageProcessor,
)

SAM_SIDE = 128


def build_sam_hq(out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = SamHQConfig(
        vision_config={"hidden_size": 32, "output_channels": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": SAM_SIDE, "patch_size": 16, "window_size": 4, "global_attn_indexes": [1],
                       "mlp_dim": 64, "num_pos_feats": 8},
        prompt_encoder_config={"hidden_size": 16, "image_size": SAM_SIDE, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "iou_head_hidden_dim": 16, "vit_dim": 32},
    )
    SamHQModel(config).save_pretrained(out)
    image_processor = SamImageProcessor(
        size={"longest_edge": SAM_SIDE}, pad_size={"height": SAM_SIDE, "width": SAM_SIDE},
        mask_size={"longest_edge": SAM_SIDE // 4}, mask_pad_size={"height": SAM_SIDE // 4, "width": SAM_SIDE // 4},
    )
    SamHQProcessor(image_processor=image_processor).save_pretrained(out)
    return out


def build_vitmatte(out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    backbone = VitDetConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, num_channels=4, image_size=64,
        pretrain_image_size=64, patch_size=16, out_features=["stage2"], window_block_indices=[0], window_size=2,
        use_relative_position_embeddings=True,
    )
    config = VitMatteConfig(backbone_config=backbone, hidden_size=32, convstream_hidden_sizes=[4, 4, 8],
                            fusion_hidden_sizes=[8, 4, 4, 4])
    VitMatteForImageMatting(config).save_pretrained(out)
    VitMatteImageProcessor().save_pretrained(out)
    return out


def build_segmenter(out: Path, seed: int = 0) -> Path:
    """The default segmenter's tiny SAM-HQ (set ``matting_model`` too, or "" for SAM-HQ's own edges)."""
    return build_sam_hq(out, seed)
