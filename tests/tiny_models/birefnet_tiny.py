"""A tiny segmentation model with BiRefNet's contract, loaded via trust_remote_code.

Like BiRefNet it takes ImageNet-normalised RGB at a fixed size and, in eval mode, returns a
list of logit maps whose last entry is the final prediction. save_pretrained copies this file
next to the weights and writes the auto_map, exactly as BiRefNet's hub repository does.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


class TinyBiRefNetConfig(PretrainedConfig):
    model_type = "tiny_birefnet"

    def __init__(self, width: int = 8, **kwargs) -> None:
        self.width = width
        super().__init__(**kwargs)


class TinyBiRefNet(PreTrainedModel):
    config_class = TinyBiRefNetConfig

    def __init__(self, config: TinyBiRefNetConfig) -> None:
        super().__init__(config)
        w = config.width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU()
        )
        self.coarse = nn.Conv2d(w, 1, 1)
        self.refine = nn.Conv2d(w + 1, 1, 3, padding=1)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.2)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.encoder(x)
        coarse = self.coarse(feats)
        fine = self.refine(torch.cat([feats, coarse], dim=1))
        size = x.shape[-2:]
        up = lambda t: nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
        return [up(coarse), up(fine)]
