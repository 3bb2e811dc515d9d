"""Heads that map fused diffusion features to an image embedding.

* ``resnet18`` (the paper): conv to 64 channels, ResNet-18 layer1..layer4, global pooling.
* ``conv`` (the embedded configuration): feature standardisation, a 1x1 reduction and two
  strided 3x3 convolutions, global pooling; about 0.2M parameters, sized for ~1,000 training
  images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

from facecat.core.checkpoints import CheckpointError, load_state_dict_file


class EmbeddingHead(nn.Module):
    """Maps fused diffusion features to an image embedding.

    conv3x3 (in -> 64) + BN + ReLU, ResNet-18 ``layer1``..``layer4`` (the two downsampling
    stages of the paper are the strided first blocks of layer2..layer4), global average
    pooling, then a linear projection when the text encoder's dimension is not 512.

    Args:
        in_channels: channels of the fused feature map.
        embed_dim: output dimension (the text encoder's; 512 for CLIP).

    Shape:
        (B, in_channels, R, R) -> (B, embed_dim)
    """

    def __init__(self, in_channels: int, embed_dim: int = 512) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        resnet = resnet18(weights=None)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.project = nn.Identity() if embed_dim == 512 else nn.Linear(512, embed_dim)
        self.embed_dim = embed_dim

    def forward(self, fused: Tensor) -> Tensor:
        h = self.stem(fused)
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.project(self.pool(h).flatten(1))

    def load_resnet18(self, path: str | Path) -> None:
        """Initialise layer1..layer4 from a torchvision ResNet-18 ImageNet state dict file.

        Args:
            path: e.g. ``resnet18-f37072fd.pth`` from torchvision's model zoo (user supplied).
        """
        state = load_state_dict_file(path, what="ResNet-18 ImageNet weights")
        wanted = {k: v for k, v in state.items() if k.split(".")[0] in _LAYERS}
        own = {k for k in self.state_dict() if k.split(".")[0] in _LAYERS}
        missing = sorted(own - set(wanted))
        if missing:
            raise CheckpointError(
                f"{path}: not a torchvision ResNet-18 state dict; missing keys such as "
                f"{missing[:5]}"
            )
        with torch.no_grad():
            for name, tensor in self.state_dict().items():
                if name in wanted:
                    if wanted[name].shape != tensor.shape:
                        raise CheckpointError(
                            f"{path}: {name} has shape {tuple(wanted[name].shape)}, "
                            f"expected {tuple(tensor.shape)}"
                        )
                    tensor.copy_(wanted[name])


_LAYERS = ("layer1", "layer2", "layer3", "layer4")


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class ConvHead(nn.Module):
    """A small convolutional head for few training images.

    BatchNorm without affine parameters standardises every feature channel with running
    training statistics (the features of different blocks and timesteps differ in scale by
    orders of magnitude), channel dropout, a 1x1 reduction to ``width`` channels, two strided
    3x3 conv + BN + ReLU stages (``width``, then ``2 * width`` channels), global average
    pooling, dropout and a linear projection to the embedding.

    Args:
        in_channels: channels of the fused feature map.
        embed_dim: output dimension.
        width: channels after the 1x1 reduction.

    Shape:
        (B, in_channels, R, R) -> (B, embed_dim)
    """

    def __init__(self, in_channels: int, embed_dim: int = 512, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels, affine=False),
            nn.Dropout2d(0.1),
            *_conv_bn_relu(in_channels, width, 1, 1),
            *_conv_bn_relu(width, width, 3, 2),
            *_conv_bn_relu(width, 2 * width, 3, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(2 * width, embed_dim),
        )
        self.embed_dim = embed_dim

    def forward(self, fused: Tensor) -> Tensor:
        return self.body(fused)


HEADS: dict[str, Callable[[int, int], nn.Module]] = {
    "resnet18": EmbeddingHead,
    "conv": ConvHead,
}


def create_head(name: str, in_channels: int, embed_dim: int) -> nn.Module:
    """Build the named head.

    Args:
        name: "resnet18" (the paper's) or "conv" (the embedded configuration's).
        in_channels: channels of the fused feature map.
        embed_dim: embedding dimension.

    Returns:
        A module mapping (B, in_channels, R, R) to (B, embed_dim).
    """
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; available: {sorted(HEADS)}")
    return HEADS[name](in_channels, embed_dim)
