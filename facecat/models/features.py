"""Frozen face-diffusion features: noise the image, run the UNet, read decoder blocks."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecat.core.device import conv_memory_format, prefers_channels_last
from facecat.models.diffusion import GaussianDiffusion
from facecat.models.unet import BlockShape, UNet, decoder_block_shapes

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class FeatureConfig:
    """Which features to read from the frozen diffusion model.

    Attributes:
        timesteps: diffusion steps at which the image is noised (paper: [50]).
        blocks: output-block indices whose activations are read (paper: 5, 6, 7, 8, 12).
        noise_seed: seed of the shared noise; the same noise is used for every image, so
            features are a deterministic function of the image.
        compute_dtype: "float32", "float16" or "bfloat16" (autocast; GroupNorm stays fp32).
        pool: average-pool every block larger than ``pool`` pixels down to ``pool`` x ``pool``
            as it is read (0: keep each block's own resolution, as the paper does). Pooling
            early keeps the cache and the head of high-resolution blocks small.
    """

    timesteps: tuple[int, ...] = (50,)
    blocks: tuple[int, ...] = (5, 6, 7, 8, 12)
    noise_seed: int = 0
    compute_dtype: str = "float32"
    pool: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "timesteps", tuple(int(t) for t in self.timesteps))
        object.__setattr__(self, "blocks", tuple(sorted(int(b) for b in self.blocks)))
        if not self.timesteps or not self.blocks:
            raise ValueError("features need at least one timestep and one block")
        if self.compute_dtype not in DTYPES:
            raise ValueError(f"compute_dtype {self.compute_dtype!r} not one of {sorted(DTYPES)}")
        if self.pool < 0:
            raise ValueError(f"pool must be 0 (off) or a positive size, got {self.pool}")

    def to_dict(self) -> dict:
        return {
            "timesteps": list(self.timesteps),
            "blocks": list(self.blocks),
            "noise_seed": self.noise_seed,
            "compute_dtype": self.compute_dtype,
            "pool": self.pool,
        }


class DiffusionFeatureExtractor(nn.Module):
    """Turns images in [0, 1] into decoder-block activations of a frozen diffusion UNet.

    No state is kept between calls. Autograd does not run through the backbone unless
    ``differentiable=True`` is passed (adaptive attacks need gradients w.r.t. the images);
    the backbone's own parameters never require grad.

    Args:
        unet: the face diffusion UNet (frozen by this module).
        diffusion: forward process used to noise the images.
        config: timesteps, blocks, noise seed and compute dtype.
    """

    def __init__(self, unet: UNet, diffusion: GaussianDiffusion, config: FeatureConfig) -> None:
        super().__init__()
        block_count = len(decoder_block_shapes(unet.config))
        if max(config.blocks) >= block_count:
            raise ValueError(
                f"feature blocks {list(config.blocks)} exceed this UNet's output blocks "
                f"0..{block_count - 1}"
            )
        if max(config.timesteps) >= diffusion.steps or min(config.timesteps) < 0:
            raise ValueError(
                f"timesteps {list(config.timesteps)} outside [0, {diffusion.steps - 1}]"
            )
        pool = config.pool
        for block in config.blocks:
            resolution = decoder_block_shapes(unet.config)[block].resolution
            if pool and resolution > pool and resolution % pool:
                raise ValueError(
                    f"feature pool {pool} does not divide block {block}'s resolution {resolution}"
                )
        self.unet = unet.eval().requires_grad_(False)
        self.diffusion = diffusion
        self.config = config
        self.channels_last: bool | None = None
        self._decoder = unet.decoder_features

    def accelerate(
        self, *, channels_last: bool | None = None, compile: bool = False
    ) -> DiffusionFeatureExtractor:
        """Speed options that leave the features the same up to float rounding.

        Args:
            channels_last: run the UNet's weights and activations in channels-last memory
                format; None (the default) picks what is faster on the input's device
                (:func:`facecat.core.device.prefers_channels_last`: on for the CPU).
            compile: run the UNet's feature path through ``torch.compile`` (the first batch
                of each shape compiles; later ones run fused kernels).

        Returns:
            ``self``.
        """
        self.channels_last = channels_last
        decoder = self.unet.decoder_features
        self._decoder = torch.compile(decoder) if compile else decoder
        return self

    def train(self, mode: bool = True) -> DiffusionFeatureExtractor:
        """The backbone always stays in eval mode (dropout off)."""
        super().train(mode)
        self.unet.eval()
        return self

    def block_shapes(self) -> list[BlockShape]:
        """Shapes of the returned features (channels include every timestep)."""
        shapes = decoder_block_shapes(self.unet.config)
        steps = len(self.config.timesteps)
        return [
            BlockShape(shapes[b].channels * steps, self._pooled(shapes[b].resolution))
            for b in self.config.blocks
        ]

    def _pooled(self, resolution: int) -> int:
        pool = self.config.pool
        return pool if pool and resolution > pool else resolution

    def shared_noise(self, channels: int, size: int, device: torch.device) -> Tensor:
        """The seeded noise used for every image, one draw per timestep.

        Returns:
            Tensor of shape (T, C, H, W), generated on the CPU so every device agrees.
        """
        generator = torch.Generator().manual_seed(self.config.noise_seed)
        noise = torch.randn(len(self.config.timesteps), channels, size, size, generator=generator)
        return noise.to(device)

    def forward(self, images: Tensor, differentiable: bool = False) -> list[Tensor]:
        """Extract the configured block features.

        Args:
            images: RGB images in [0, 1], (B, 3, S, S) with S the UNet's image size.
            differentiable: keep the autograd graph from the features back to ``images``.

        Returns:
            One float32 tensor per configured block, (B, C_b * T, H_b, W_b) (H_b, W_b at most
            ``config.pool`` when it is set).
        """
        size = self.unet.config.image_size
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise ValueError(
                f"feature extractor expects images of shape (B, 3, {size}, {size}), "
                f"got {tuple(images.shape)}"
            )
        device = images.device
        channels_last = self.channels_last
        if channels_last is None:
            channels_last = prefers_channels_last(device)
        memory_format = conv_memory_format(self.unet, channels_last)
        noise = self.shared_noise(3, size, device)
        x0 = images.float() * 2 - 1
        dtype = DTYPES[self.config.compute_dtype]
        grad_context = contextlib.nullcontext() if differentiable else torch.no_grad()
        per_block: dict[int, list[Tensor]] = {b: [] for b in self.config.blocks}
        with grad_context:
            for step_noise, step in zip(noise, self.config.timesteps, strict=True):
                t = torch.full((images.shape[0],), step, device=device, dtype=torch.long)
                xt = self.diffusion.q_sample(x0, t, step_noise.expand_as(x0))
                xt = xt.contiguous(memory_format=memory_format)
                with _autocast(device, dtype):
                    activations = self._decoder(xt, t, self.config.blocks)
                for block, activation in activations.items():
                    size_out = self._pooled(activation.shape[-1])
                    if size_out < activation.shape[-1]:
                        activation = F.avg_pool2d(activation, activation.shape[-1] // size_out)
                    per_block[block].append(activation.float().contiguous())
        return [torch.cat(per_block[b], dim=1) for b in self.config.blocks]


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32 or device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def flatten_features(features: Sequence[Tensor]) -> Tensor:
    """Concatenate per-block features into one (B, D) row per image (for the cache)."""
    return torch.cat([f.flatten(1) for f in features], dim=1)


def unflatten_features(rows: Tensor, shapes: Sequence[BlockShape]) -> list[Tensor]:
    """Inverse of :func:`flatten_features` given the block shapes."""
    sizes = [s.channels * s.resolution**2 for s in shapes]
    if rows.shape[1] != sum(sizes):
        raise ValueError(
            f"feature rows have {rows.shape[1]} values, the block shapes need {sum(sizes)}"
        )
    parts = rows.split(sizes, dim=1)
    return [
        part.reshape(rows.shape[0], s.channels, s.resolution, s.resolution)
        for part, s in zip(parts, shapes, strict=True)
    ]
