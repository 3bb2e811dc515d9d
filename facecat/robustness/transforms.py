"""Input transformations at graded severities: pure functions, a registry and a module form.

Every transformation maps a batch of RGB images ``[B, 3, H, W]`` with values in [0, 1] to a
batch of the same shape, device and dtype, clamped to [0, 1] and differentiable with respect
to the images. Severity 0 is the clean input; severities 1..5 use the parameter values of the
registered table, which follow ImageNet-C (Hendrycks & Dietterich, 2019) where it defines the
corruption. Half-precision inputs are computed in float32 and cast back.

Example:
    >>> images = torch.rand(2, 3, 64, 64)
    >>> apply_transform("jpeg", images, severity=3).shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Concatenate, ParamSpec

import kornia
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BLUR_REFERENCE_WIDTH",
    "NUM_SEVERITIES",
    "RANGE_TOLERANCE",
    "TRANSFORMS",
    "ApplyTransform",
    "TransformFn",
    "Transformation",
    "apply_transform",
    "bit_depth",
    "contrast",
    "downscale",
    "gamma",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg",
    "register_transform",
    "severity_table",
]

TransformFn = Callable[[Tensor, float, torch.Generator | None], Tensor]
"""``fn(images, value, generator) -> images``: one parameter value, an optional RNG."""

NUM_SEVERITIES = 5
"""Severities 1..NUM_SEVERITIES come from a table; 0 is the clean input."""

RANGE_TOLERANCE = 1e-6
"""Input values in [-RANGE_TOLERANCE, 1 + RANGE_TOLERANCE] are accepted."""

BLUR_REFERENCE_WIDTH = 224
"""Image width (px) at which the Gaussian blur sigmas of the table apply (ImageNet-C)."""

_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")
_NATIVE_DTYPES = (torch.float32, torch.float64)
_P = ParamSpec("_P")


def _check_images(images: Tensor) -> None:
    """Raise a ValueError (TypeError for a non-tensor) naming what is wrong with ``images``."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images: expected a 4-D BCHW tensor with 3 channels [B, 3, H, W], "
            f"got shape {tuple(images.shape)}"
        )
    if images.numel() == 0:
        raise ValueError(f"images: empty batch of shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"images: expected a floating-point tensor with values in [0, 1], got {images.dtype}"
            + (" (divide 8-bit images by 255)" if images.dtype == torch.uint8 else "")
        )
    low, high = torch.aminmax(images.detach())
    if bool((low >= -RANGE_TOLERANCE) & (high <= 1 + RANGE_TOLERANCE)):  # False for NaN
        return
    nan = int(torch.isnan(images.detach()).sum())
    if nan:
        raise ValueError(f"images: {nan} NaN value(s); values must lie in [0, 1]")
    raise ValueError(
        f"images: values must lie in [0, 1] (tolerance {RANGE_TOLERANCE:g}); "
        f"found min {float(low):.6g}, max {float(high):.6g}"
    )


def _run(call: Callable[[Tensor], Tensor], images: Tensor, name: str) -> Tensor:
    """Call ``call`` in float32 or float64, check its shape, clamp to [0, 1], cast back."""
    out = call(images if images.dtype in _NATIVE_DTYPES else images.float())
    if not isinstance(out, Tensor) or out.shape != images.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"transformation {name!r} returned {got}; "
            f"expected a tensor of the input's shape {tuple(images.shape)}"
        )
    # Same values as out.clamp(0, 1), but values exactly at 0 or 1 keep their gradient
    # (clamp's is zero there, which would cut e.g. bit_depth's straight-through gradient).
    inside = (out >= 0) & (out <= 1)
    return torch.where(inside, out, out.clamp(0, 1)).to(images.dtype)


def _image_op(
    kernel: Callable[Concatenate[Tensor, _P], Tensor],
) -> Callable[Concatenate[Tensor, _P], Tensor]:
    """Wrap a kernel into a public transformation: input checks, dtype handling, clamping."""

    @functools.wraps(kernel)
    def transformation(images: Tensor, *args: _P.args, **kwargs: _P.kwargs) -> Tensor:
        _check_images(images)
        return _run(lambda work: kernel(work, *args, **kwargs), images, kernel.__name__)

    return transformation


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@_image_op
def jpeg(images: Tensor, quality: float, generator: torch.Generator | None = None) -> Tensor:
    """JPEG compression and decompression with kornia's differentiable codec.

    The codec uses the standard (libjpeg) quantization tables scaled by ``quality`` and 4:2:0
    chroma subsampling, and pads to multiples of 16 itself, so any size works. Its output is
    not rounded to 8 bits.

    Args:
        images: RGB images in [0, 1].
        quality: JPEG quality in [0, 100] (lower compresses harder).
        generator: Unused (deterministic).

    Shape:
        images: [B, 3, H, W]; returns the same shape.

    Returns:
        The decoded images, clamped to [0, 1].
    """
    _require(0 <= quality <= 100, f"jpeg: quality must lie in [0, 100], got {quality}")
    return kornia.enhance.jpeg_codec_differentiable(images, images.new_tensor([quality]))


@_image_op
def gaussian_blur(images: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """Isotropic Gaussian blur whose ``sigma`` is given at a 224 px image width.

    The blur applied has standard deviation ``sigma * W / 224`` pixels (W = image width), so a
    64 px face is blurred in proportion to a 224 px ImageNet-C image. The kernel is odd,
    ``max(3, 2 * ceil(3 * s) + 1)`` for the scaled sigma ``s``, with replicated borders (as
    the ``nearest`` mode of ImageNet-C's scikit-image filter).

    Args:
        images: RGB images in [0, 1].
        sigma: Standard deviation in pixels at a width of :data:`BLUR_REFERENCE_WIDTH`; > 0.
        generator: Unused (deterministic).

    Shape:
        images: [B, 3, H, W]; returns the same shape.

    Returns:
        The blurred images, clamped to [0, 1].
    """
    _require(sigma > 0, f"gaussian_blur: sigma must be > 0, got {sigma}")
    scaled = sigma * images.shape[-1] / BLUR_REFERENCE_WIDTH
    size = max(3, 2 * math.ceil(3 * scaled) + 1)
    return kornia.filters.gaussian_blur2d(
        images, (size, size), (scaled, scaled), border_type="replicate"
    )


@_image_op
def bit_depth(images: Tensor, bits: float, generator: torch.Generator | None = None) -> Tensor:
    """Keep the top ``bits`` bits of each 8-bit channel value, as PIL's ``ImageOps.posterize``.

    Values are first rounded to 8 bits (``floor(255 x + 0.5)``), so on images whose values are
    multiples of 1/255 the output equals PIL's exactly. The gradient is straight-through
    (identity), since the quantizer's own derivative is zero almost everywhere.

    Args:
        images: RGB images in [0, 1].
        bits: Bits kept per channel, an integer in 1..8.
        generator: Unused (deterministic).

    Shape:
        images: [B, 3, H, W]; returns the same shape.

    Returns:
        The posterized images.
    """
    _require(
        float(bits).is_integer() and 1 <= bits <= 8,
        f"bit_depth: bits must be an integer in 1..8, got {bits}",
    )
    step = 2 ** (8 - int(bits))
    with torch.no_grad():
        levels = torch.floor(images * 255 + 0.5).clamp(0, 255)
        quantized = torch.floor(levels / step) * step / 255
    # quantized + 0 in value (exactly PIL's), identity in gradient.
    return quantized + (images - images.detach())


@_image_op
def gaussian_noise(images: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Additive Gaussian noise, independent per pixel and channel (ImageNet-C).

    Args:
        images: RGB images in [0, 1].
        std: Standard deviation of the noise (in units of the [0, 1] range); >= 0.
        generator: Random generator on the images' device; None uses torch's global RNG. The
            noise is drawn in float32, so a seed gives the same noise for every dtype.

    Shape:
        images: [B, 3, H, W]; returns the same shape.

    Returns:
        The noisy images, clamped to [0, 1].
    """
    _require(std >= 0, f"gaussian_noise: std must be >= 0, got {std}")
    noise = torch.randn(images.shape, generator=generator, device=images.device)
    return images + std * noise.to(images.dtype)  # drawn in float32: one draw for any dtype


@_image_op
def downscale(images: Tensor, factor: float, generator: torch.Generator | None = None) -> Tensor:
    """Lose resolution: resize to ``factor`` of the size (antialiased), then bilinearly back.

    Args:
        images: RGB images in [0, 1].
        factor: Scale of the intermediate image, in (0, 1]; each side is
            ``max(1, round(side * factor))`` pixels.
        generator: Unused (deterministic).

    Shape:
        images: [B, 3, H, W]; returns the same shape.

    Returns:
        The resampled images, clamped to [0, 1].
    """
    _require(0 < factor <= 1, f"downscale: factor must lie in (0, 1], got {factor}")
    height, width = images.shape[-2:]
    small = (max(1, round(height * factor)), max(1, round(width * factor)))
    down = F.interpolate(images, size=small, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False)


@_image_op
def contrast(images: Tensor, factor: float, generator: torch.Generator | None = None) -> Tensor:
    """Reduce contrast about each image's per-channel mean (ImageNet-C).

    Computes ``(x - mean) * factor + mean`` with the mean over the height and width of each
    image and channel, as ImageNet-C's ``contrast``.

    Args:
        images: RGB images in [0, 1].
        factor: Contrast kept, >= 0 (1 is the identity, 0 a flat image).
        generator: Unused (deterministic).

    Shape:
        images: [B, 3, H, W]; returns the same shape.

    Returns:
        The images with reduced contrast, clamped to [0, 1].
    """
    _require(factor >= 0, f"contrast: factor must be >= 0, got {factor}")
    mean = images.mean(dim=(-2, -1), keepdim=True)
    return (images - mean) * factor + mean


@_image_op
def gamma(images: Tensor, exponent: float, generator: torch.Generator | None = None) -> Tensor:
    """Gamma curve ``x ** exponent`` (exponent > 1 darkens).

    Values at or below 0 map to 0 with a zero gradient there, so the gradient stays finite for
    every exponent > 0 (``x ** g`` alone has an infinite derivative at 0 for g < 1 and gives
    NaN for inputs a rounding error below 0).

    Args:
        images: RGB images in [0, 1].
        exponent: The gamma exponent, > 0.
        generator: Unused (deterministic).

    Shape:
        images: [B, 3, H, W]; returns the same shape.

    Returns:
        The transformed images, clamped to [0, 1].
    """
    _require(exponent > 0, f"gamma: exponent must be > 0, got {exponent}")
    positive = images > 0
    safe = torch.where(positive, images, torch.ones_like(images))
    return torch.where(positive, safe**exponent, torch.zeros_like(images))


@dataclass(frozen=True)
class Transformation:
    """A registered transformation and its severity table.

    Attributes:
        name: Registry key, letters, digits and underscores (used in test ids and tables).
        fn: ``fn(images, value, generator) -> images`` over [B, 3, H, W] images in [0, 1].
        severities: The parameter values for severities 1..5, in order of growing distortion.
        unit: What the value measures, for tables.
        description: One line for documentation.
    """

    name: str
    fn: TransformFn
    severities: tuple[float, ...]
    unit: str
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"transformation name must be letters, digits and underscores, got {self.name!r}"
            )
        if not callable(self.fn):
            raise ValueError(f"{self.name}: fn must be callable, got {type(self.fn).__name__}")
        values = tuple(self.severities)
        if len(values) != NUM_SEVERITIES or not all(
            isinstance(v, numbers.Real) and math.isfinite(v) for v in values
        ):
            raise ValueError(
                f"{self.name}: severities must be {NUM_SEVERITIES} finite numbers "
                f"(severities 1..{NUM_SEVERITIES}), got {self.severities!r}"
            )
        object.__setattr__(self, "severities", tuple(float(v) for v in values))


TRANSFORMS: dict[str, Transformation] = {}
"""The registry, name -> :class:`Transformation`; add to it with :func:`register_transform`."""


def register_transform(
    name: str,
    fn: TransformFn,
    severities: Sequence[float],
    *,
    unit: str,
    description: str = "",
    overwrite: bool = False,
) -> Transformation:
    """Add a transformation to :data:`TRANSFORMS`.

    ``fn`` receives float32 or float64 images (half precision is upcast) and a seeded
    generator on their device; :func:`apply_transform` checks the output's shape, clamps it
    to [0, 1] and casts it back to the input dtype.

    Args:
        name: Registry key; letters, digits and underscores.
        fn: ``fn(images, value, generator) -> images``, differentiable in the images.
        severities: Parameter values for severities 1..5, in order of growing distortion.
        unit: What the value measures.
        description: One line for documentation.
        overwrite: Replace an existing entry of that name instead of raising.

    Returns:
        The registered :class:`Transformation`.

    Raises:
        ValueError: If the name is taken (and not ``overwrite``) or an argument is invalid.
    """
    entry = Transformation(name, fn, tuple(severities), unit, description)
    if name in TRANSFORMS and not overwrite:
        raise ValueError(f"transformation {name!r} is already registered (pass overwrite=True)")
    TRANSFORMS[name] = entry
    return entry


def _check_severity(severity: int) -> None:
    if (
        not isinstance(severity, numbers.Integral)
        or isinstance(severity, bool)
        or not 0 <= severity <= NUM_SEVERITIES
    ):
        raise ValueError(
            f"severity must be an int in 0..{NUM_SEVERITIES} (0 = clean), got {severity!r}"
        )


def _lookup(name: str) -> Transformation:
    try:
        return TRANSFORMS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(TRANSFORMS))
        raise ValueError(f"unknown transformation {name!r}; known: {known}") from None


def apply_transform(name: str, images: Tensor, severity: int, *, seed: int = 0) -> Tensor:
    """Apply a registered transformation at a severity.

    Args:
        name: A key of :data:`TRANSFORMS`.
        images: RGB images in [0, 1] (tolerance :data:`RANGE_TOLERANCE`), any float dtype.
        severity: 0 (clean: ``images`` is returned unchanged) or 1..5.
        seed: Seed of the generator (on the images' device) handed to random
            transformations; the same seed gives the same output.

    Shape:
        images: [B, 3, H, W]; returns the same shape.

    Returns:
        The transformed images, same device and dtype, clamped to [0, 1].

    Raises:
        ValueError: For an unknown name, a severity that is not an int in 0..5, or images
            that are not a floating-point [B, 3, H, W] tensor with values in [0, 1].
    """
    entry = _lookup(name)
    _check_severity(severity)
    _check_images(images)
    if severity == 0:
        return images
    value = entry.severities[severity - 1]
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return _run(lambda work: entry.fn(work, value, generator), images, name)


def severity_table() -> pd.DataFrame:
    """The severity tables of all registered transformations, for documentation.

    Returns:
        A frame with columns ``name``, ``severity`` (1..5), ``value`` and ``unit``, one row per
        transformation and severity; severity 0 (clean) is implied.
    """
    rows = [
        {"name": entry.name, "severity": severity, "value": value, "unit": entry.unit}
        for entry in TRANSFORMS.values()
        for severity, value in enumerate(entry.severities, start=1)
    ]
    return pd.DataFrame(rows, columns=["name", "severity", "value", "unit"])


class ApplyTransform(nn.Module):
    """Module form of :func:`apply_transform`, e.g. in front of a detector.

    Args:
        name: A key of :data:`TRANSFORMS`.
        severity: 0..5.
        seed: Seed for random transformations (the same noise on every call).

    Shape:
        input: [B, 3, H, W] in [0, 1]; output: the same shape.

    Example:
        >>> blur = ApplyTransform("gaussian_blur", severity=2)
        >>> blur(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
    """

    def __init__(self, name: str, severity: int, *, seed: int = 0) -> None:
        super().__init__()
        _lookup(name)
        _check_severity(severity)
        self.name = name
        self.severity = severity
        self.seed = seed

    def forward(self, images: Tensor) -> Tensor:
        """Transform ``images``; see :func:`apply_transform`."""
        return apply_transform(self.name, images, self.severity, seed=self.seed)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, severity={self.severity}, seed={self.seed}"


register_transform(
    "jpeg",
    jpeg,
    (25, 18, 15, 10, 7),
    unit="JPEG quality",
    description="JPEG codec (kornia, standard tables, 4:2:0 chroma)",
)
register_transform(
    "gaussian_blur",
    gaussian_blur,
    (1, 2, 3, 4, 6),
    unit=f"sigma (px at {BLUR_REFERENCE_WIDTH} px width)",
    description=f"Gaussian blur, sigma scaled by image width / {BLUR_REFERENCE_WIDTH}",
)
register_transform(
    "bit_depth",
    bit_depth,
    (6, 5, 4, 3, 2),
    unit="bits per channel",
    description="bit-depth reduction (PIL posterize), straight-through gradient",
)
register_transform(
    "gaussian_noise",
    gaussian_noise,
    (0.08, 0.12, 0.18, 0.26, 0.38),
    unit="noise std",
    description="additive Gaussian noise",
)
register_transform(
    "downscale",
    downscale,
    (0.8, 0.6, 0.5, 0.4, 0.3),
    unit="scale factor",
    description="antialiased downscale, then bilinear upscale to the input size",
)
register_transform(
    "contrast",
    contrast,
    (0.4, 0.3, 0.2, 0.1, 0.05),
    unit="contrast factor",
    description="contrast about each image's per-channel mean",
)
register_transform(
    "gamma",
    gamma,
    (1.5, 2.0, 2.5, 3.0, 3.5),
    unit="gamma exponent",
    description="gamma curve x ** g",
)
