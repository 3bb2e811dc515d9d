"""CDCN++ (Yu et al., CVPR 2020): central difference convolutions regressing a depth map.

The baseline detector: a network of central difference convolutions (CDC) with spatial
attention regresses a face depth map at 1/8 of the image size, supervised with the face's
depth for bona fide images and zeros for attacks (see :mod:`facecat.training.pseudo_depth` when a
data set has no depth maps). The score, P(real), is the mean of the predicted map clamped to
[0, 1], as in the FaceCat release. Training lives in :mod:`facecat.training.cdcn`.

Architecture (channels at ``width`` 1; every count is scaled by ``width``, rounded, at least 8):

* stem: CDC 3 -> 64;
* three blocks, each CDC in -> 128 -> int(128 m) -> 128 (m = 1.6, 1.2, 1.4; block 1 takes
  the stem's 64) followed by MaxPool(3, stride 2, padding 1);
* per block, spatial attention (channel mean and max -> conv with kernel 7, 5, 3 -> sigmoid)
  multiplies the block output, which is then resized bilinearly to image_size / 8;
* the three maps are concatenated (3 x 128) -> CDC 384 -> 128 -> 64 -> 1 with a final ReLU.

Every CDC but the last is followed by BatchNorm and ReLU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecat.core.checkpoints import load_strict
from facecat.core.device import conv_memory_format, pick_device, prefers_channels_last
from facecat.core.images import ImageBatchError, check_image_batch
from facecat.models.config import parse_dataclass
from facecat.models.registry import register_kind

DEPTH_STRIDE = 8
BLOCK_MULTIPLIERS = (1.6, 1.2, 1.4)
ATTENTION_KERNELS = (7, 5, 3)


@dataclass(frozen=True)
class CDCNTrainConfig:
    """Adam with weight decay at a constant learning rate (the paper: lr 1e-4, wd 5e-5)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 5e-5


@dataclass(frozen=True)
class CDCNConfig:
    """Everything needed to rebuild a CDCN++ detector (weights aside).

    Attributes:
        name: config name.
        image_size: input side length, a multiple of 8; depth maps are image_size / 8.
        width: channel multiplier (1.0 is the paper's network).
        theta: weight of the central difference term (0 gives plain convolutions).
        train: optimiser settings of :func:`facecat.training.cdcn.train_cdcn`.
        description: free text shown by listings.
        kind: registry kind, always "cdcn".
    """

    name: str
    image_size: int
    width: float = 1.0
    theta: float = 0.7
    train: CDCNTrainConfig = field(default_factory=CDCNTrainConfig)
    description: str = ""
    kind: str = "cdcn"

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % 8:
            raise ValueError(f"image_size must be a positive multiple of 8, got {size!r}")
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width!r}")
        if not 0 <= self.theta <= 1:
            raise ValueError(f"theta must lie in [0, 1], got {self.theta!r}")
        if self.kind != "cdcn":
            raise ValueError(f"kind must be 'cdcn', got {self.kind!r}")

    @property
    def depth_size(self) -> int:
        return self.image_size // DEPTH_STRIDE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CDCNConfig:
        """Parse a config dict, rejecting unknown fields with their names."""
        data = dict(data)
        if "train" in data:
            data["train"] = parse_dataclass(CDCNTrainConfig, data["train"], "train")
        return parse_dataclass(cls, data, "cdcn config")


class CentralDifferenceConv2d(nn.Conv2d):
    """Central difference convolution: ``conv(x, W) - theta * conv1x1(x, sum_{kh,kw} W)``.

    The difference term is folded into the kernel (its centre tap loses ``theta * sum W``),
    so one convolution computes both. ``theta = 0`` is a plain convolution.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel side length.
        stride: convolution stride.
        padding: zero padding.
        theta: weight of the central difference term, in [0, 1].
        bias: add a learnable bias (once, not differenced).

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, H', W')
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        theta: float = 0.7,
        bias: bool = False,
    ) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centre tap), got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.theta = theta

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}"

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight
        if self.theta:
            half = self.kernel_size[0] // 2
            centre = F.pad(weight.sum(dim=(2, 3), keepdim=True), (half, half, half, half))
            weight = weight - self.theta * centre
        return self._conv_forward(x, weight, self.bias)


class SpatialAttention(nn.Module):
    """Attention map from the channel mean and max: conv (kernel k) -> sigmoid.

    Shape:
        (B, C, H, W) -> (B, 1, H, W), values in (0, 1)
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


def _cdc_bn_relu(in_channels: int, out_channels: int, theta: float) -> nn.Sequential:
    return nn.Sequential(
        CentralDifferenceConv2d(in_channels, out_channels, theta=theta),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class CDCNpp(nn.Module):
    """The CDCN++ network on images normalised to [-1, 1].

    Args:
        image_size: input side length (a multiple of 8).
        width: channel multiplier; every count is rounded and at least 8.
        theta: central difference weight of every CDC layer.

    Shape:
        (B, 3, image_size, image_size) -> (B, image_size / 8, image_size / 8), values >= 0
    """

    def __init__(self, image_size: int, width: float = 1.0, theta: float = 0.7) -> None:
        super().__init__()

        def channels(base: int) -> int:
            return max(8, round(base * width))

        self.depth_size = image_size // DEPTH_STRIDE
        stem, trunk = channels(64), channels(128)
        self.stem = _cdc_bn_relu(3, stem, theta)
        self.blocks = nn.ModuleList()
        in_channels = stem
        for multiplier in BLOCK_MULTIPLIERS:
            inner = channels(int(128 * multiplier))
            self.blocks.append(
                nn.Sequential(
                    _cdc_bn_relu(in_channels, trunk, theta),
                    _cdc_bn_relu(trunk, inner, theta),
                    _cdc_bn_relu(inner, trunk, theta),
                    nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
                )
            )
            in_channels = trunk
        self.attention = nn.ModuleList(SpatialAttention(k) for k in ATTENTION_KERNELS)
        self.head = nn.Sequential(
            _cdc_bn_relu(3 * trunk, trunk, theta),
            _cdc_bn_relu(trunk, stem, theta),
            CentralDifferenceConv2d(stem, 1, theta=theta),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        maps = []
        for block, attention in zip(self.blocks, self.attention, strict=True):
            x = block(x)
            attended = attention(x) * x
            maps.append(
                F.interpolate(
                    attended, size=(self.depth_size,) * 2, mode="bilinear", align_corners=False
                )
            )
        return self.head(torch.cat(maps, dim=1))[:, 0]


class CDCN(nn.Module):
    """The CDCN++ face anti-spoofing detector: depth map regression, score = mean depth.

    Args:
        config: the detector configuration.

    Example:
        >>> detector = create_detector("cdcn")  # doctest: +SKIP
        >>> detector.scores(torch.rand(4, 3, 64, 64)).shape  # doctest: +SKIP
        torch.Size([4])
    """

    def __init__(self, config: CDCNConfig) -> None:
        super().__init__()
        self.config = config
        self.network = CDCNpp(config.image_size, config.width, config.theta)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def depth_size(self) -> int:
        return self.config.depth_size

    def forward(self, images: Tensor) -> Tensor:
        """Predicted depth maps for RGB images in [0, 1].

        Runs channels-last where that is faster
        (:func:`~facecat.core.device.prefers_channels_last`).

        Shape:
            (B, 3, S, S) -> (B, S / 8, S / 8)
        """
        memory_format = conv_memory_format(self.network, prefers_channels_last(images.device))
        return self.network((images * 2 - 1).contiguous(memory_format=memory_format))

    def differentiable_scores(self, images: Tensor) -> Tensor:
        """P(real) with gradients with respect to the images (for adaptive attackers).

        The detector stays in its current mode (eval after creation or loading).

        Shape:
            (B, 3, S, S) -> (B,)
        """
        self._check_input(images)
        weights = next(self.parameters())  # any float input dtype, as FaceCat accepts
        return self(images.to(weights.dtype)).mean(dim=(1, 2)).clamp(0, 1)

    def scores(self, images: Tensor) -> Tensor:
        """P(real): the mean predicted depth, clamped to [0, 1].

        Args:
            images: RGB images in [0, 1] of the detector's size.

        Shape:
            (B, 3, S, S) -> (B,)

        Raises:
            ImageBatchError: (a ValueError) for a wrong shape, dtype or value range.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self.differentiable_scores(images)
        finally:
            self.train(was_training)

    def _check_input(self, images: Tensor) -> None:
        check_image_batch(images)
        size = self.image_size
        if tuple(images.shape[2:]) != (size, size):
            raise ImageBatchError(
                f"images: {self.name} expects [B, 3, {size}, {size}], got shape "
                f"{tuple(images.shape)}"
            )


def contrast_depth_kernels() -> Tensor:
    """The 8 neighbour-difference kernels of the contrast-depth loss.

    Kernel k is +1 at the centre and -1 at the k-th of the 8 neighbours (row-major order,
    centre skipped).

    Shape:
        (8, 1, 3, 3)
    """
    kernels = torch.zeros(8, 1, 3, 3)
    neighbours = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    for k, (r, c) in enumerate(neighbours):
        kernels[k, 0, 1, 1] = 1.0
        kernels[k, 0, r, c] = -1.0
    return kernels


def contrast_depth_loss(pred: Tensor, target: Tensor) -> Tensor:
    """MSE between the local contrasts (centre minus each neighbour) of two depth maps.

    Args:
        pred: predicted depth maps.
        target: target depth maps.

    Shape:
        (B, H, W), (B, H, W) -> scalar (H, W >= 3)
    """
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(
            f"pred and target must be (B, H, W) of one shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    kernels = contrast_depth_kernels().to(pred)
    return F.mse_loss(F.conv2d(pred[:, None], kernels), F.conv2d(target[:, None], kernels))


def cdcn_loss(pred: Tensor, target: Tensor) -> Tensor:
    """The CDCN training loss: MSE plus the contrast-depth loss.

    Shape:
        (B, H, W), (B, H, W) -> scalar
    """
    return F.mse_loss(pred, target) + contrast_depth_loss(pred, target)


@register_kind("cdcn")
class CDCNKind:
    """Builds :class:`CDCN` detectors for the registry (no pretrained parts to load)."""

    options = frozenset({"seed", "device"})

    def create(
        self,
        config: dict[str, Any],
        *,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> CDCN:
        """A freshly initialised detector.

        Args:
            config: config dict (see ``facecat/configs/detectors/cdcn*.json``).
            seed: seed of the random initialisation.
            device: where the detector lives.
        """
        cfg = CDCNConfig.from_dict(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            detector = CDCN(cfg)
        return detector.to(pick_device(device))

    def restore(
        self,
        config: dict[str, Any],
        tensors: dict[str, Tensor],
        *,
        device: str | torch.device | None = None,
    ) -> CDCN:
        """A detector rebuilt from a saved file's config and tensors (strict)."""
        cfg = CDCNConfig.from_dict(config)
        detector = CDCN(cfg)
        load_strict(detector, tensors, source=f"detector tensors (config {cfg.name})")
        return detector.to(pick_device(device))
