"""Hierarchical fusion of decoder-block features into one map at a common resolution.

Two variants, both derived from the block shapes so they work for any UNet config:

* ``strided`` (the authors' release): every block above the target resolution goes through
  stride-2 conv3x3 + BN + ReLU layers until it reaches the target; all but the last keep the
  channel count and the last halves it (FFHQ-256: 1024 + 512 + 512 + 256 + 128 = 2432 @ 32).
* ``pooling`` (paper Eq. 9): every block is average-pooled to the target resolution and the
  channels are concatenated unchanged.

The target resolution is the smallest resolution among the chosen blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecat.models.unet import BlockShape


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _halvings(shape: BlockShape, target: int) -> int:
    ratio = shape.resolution / target
    steps = round(math.log2(ratio)) if ratio >= 1 else -1
    if steps < 0 or 2**steps != ratio:
        raise ValueError(
            f"block resolution {shape.resolution} is not a power-of-two multiple of the "
            f"fusion target {target}"
        )
    return steps


class StridedConvFusion(nn.Module):
    """The release's fusion: strided convs bring every block down to the target resolution.

    Args:
        shapes: channels and resolution of each input block.

    Shape:
        list of (B, C_i, R_i, R_i) -> (B, out_channels, R, R) with R = min(R_i).
    """

    def __init__(self, shapes: Sequence[BlockShape]) -> None:
        super().__init__()
        self.target = min(s.resolution for s in shapes)
        self.branches = nn.ModuleList()
        out_channels = 0
        for shape in shapes:
            steps = _halvings(shape, self.target)
            layers = [_conv_bn_relu(shape.channels, shape.channels) for _ in range(steps - 1)]
            if steps:
                layers.append(_conv_bn_relu(shape.channels, shape.channels // 2))
            self.branches.append(nn.Sequential(*layers))
            out_channels += shape.channels // 2 if steps else shape.channels
        self.out_channels = out_channels

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return torch.cat([b(f) for b, f in zip(self.branches, features, strict=True)], dim=1)


class PoolingFusion(nn.Module):
    """The paper's fusion: average-pool every block to the target resolution, concatenate.

    Args:
        shapes: channels and resolution of each input block.

    Shape:
        list of (B, C_i, R_i, R_i) -> (B, sum C_i, R, R) with R = min(R_i).
    """

    def __init__(self, shapes: Sequence[BlockShape]) -> None:
        super().__init__()
        self.target = min(s.resolution for s in shapes)
        self.factors = [2 ** _halvings(s, self.target) for s in shapes]
        self.out_channels = sum(s.channels for s in shapes)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        pooled = [
            F.avg_pool2d(f, k) if k > 1 else f for f, k in zip(features, self.factors, strict=True)
        ]
        return torch.cat(pooled, dim=1)


FUSIONS: dict[str, Callable[[Sequence[BlockShape]], nn.Module]] = {
    "strided": StridedConvFusion,
    "pooling": PoolingFusion,
}


def create_fusion(name: str, shapes: Sequence[BlockShape]) -> nn.Module:
    """Build the named fusion for the given block shapes.

    Args:
        name: "strided" (release) or "pooling" (paper).
        shapes: the feature extractor's block shapes.

    Returns:
        A module with an ``out_channels`` attribute.
    """
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; available: {sorted(FUSIONS)}")
    return FUSIONS[name](shapes)
