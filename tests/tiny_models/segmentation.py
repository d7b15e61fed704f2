from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_models.birefnet_tiny import TinyBiRefNet, TinyBiRefNetConfig


def build_segmenter(out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    TinyBiRefNetConfig.register_for_auto_class()
    TinyBiRefNet.register_for_auto_class("AutoModelForImageSegmentation")
    TinyBiRefNet(TinyBiRefNetConfig()).save_pretrained(out)
    return out
