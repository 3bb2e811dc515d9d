"""Image operations shared by the simulators: seeded draws, blur, colour, blending, warps."""

from __future__ import annotations

import math

import torch
from kornia.filters import bilateral_blur, gaussian_blur2d
from kornia.geometry.transform import warp_affine
from torch import Tensor

from facecat.datasets.presentation_attacks._geometry import _Frame

_LUMA = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------- randomness


def _uniform(rng: torch.Generator, low: float, high: float) -> float:
    """One float drawn uniformly from ``[low, high)``."""
    draw = torch.rand((), generator=rng, device=rng.device, dtype=torch.float64)
    return low + (high - low) * float(draw)


def _sign(rng: torch.Generator) -> float:
    return 1.0 if _uniform(rng, 0.0, 1.0) < 0.5 else -1.0


def _chance(rng: torch.Generator, p: float) -> bool:
    return _uniform(rng, 0.0, 1.0) < p


def _choice(rng: torch.Generator, n: int) -> int:
    return min(int(_uniform(rng, 0.0, n)), n - 1)


def _noise(rng: torch.Generator, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Standard normal noise drawn on the generator's device, returned like ``like``."""
    out = torch.randn(shape, generator=rng, device=rng.device, dtype=like.dtype)
    return out.to(like.device)


# ----------------------------------------------------------------------------- image helpers


def _ksize(sigma: float, size: int) -> int:
    """Odd Gaussian kernel size covering 3 sigma, small enough for reflect padding."""
    k = 2 * math.ceil(3.0 * sigma) + 1
    return max(1, min(k, 2 * (size - 1) - 1))


def _blur(img: Tensor, sigma_y: float, sigma_x: float | None = None) -> Tensor:
    """Gaussian blur of a ``[C, H, W]`` image (standard deviations in pixels)."""
    sigma_x = sigma_y if sigma_x is None else sigma_x
    if max(sigma_x, sigma_y) < 1e-3:
        return img
    h, w = img.shape[-2:]
    kernel = (_ksize(sigma_y, h), _ksize(sigma_x, w))
    sigma = (max(sigma_y, 1e-3), max(sigma_x, 1e-3))
    return gaussian_blur2d(img[None], kernel, sigma)[0]


def _luma(img: Tensor) -> Tensor:
    """Rec. 601 luminance ``[1, H, W]`` of an RGB image ``[3, H, W]``."""
    weights = torch.tensor(_LUMA, dtype=img.dtype, device=img.device)
    return (img * weights[:, None, None]).sum(0, keepdim=True)


def _saturate(img: Tensor, amount: float) -> Tensor:
    """Scale chroma about the luminance (``amount < 1`` desaturates)."""
    y = _luma(img)
    return y + amount * (img - y)


def _rgb(values: tuple[float, float, float], like: Tensor) -> Tensor:
    """A colour as a ``[3, 1, 1]`` tensor on ``like``'s device and dtype."""
    return torch.tensor(values, dtype=like.dtype, device=like.device)[:, None, None]


def _jitter_colour(
    rng: torch.Generator, base: tuple[float, float, float], spread: float
) -> tuple[float, float, float]:
    """``base`` with each channel moved by up to ``spread``, kept in ``[0, 1]``."""
    r, g, b = (min(max(c + _uniform(rng, -spread, spread), 0.0), 1.0) for c in base)
    return (r, g, b)


def _blend(img: Tensor, layer: Tensor, alpha: Tensor | float) -> Tensor:
    """Alpha-composite ``layer`` over ``img`` (``alpha`` ``[H, W]``, ``[1, H, W]`` or scalar)."""
    if isinstance(alpha, Tensor) and alpha.dim() == 2:
        alpha = alpha[None]
    return img + alpha * (layer - img)


def _tint(img: Tensor, colour: Tensor) -> Tensor:
    """Recolour ``img`` with ``colour`` ([3, 1, 1]) keeping its luminance texture."""
    return colour * _luma(img) / _luma(colour).clamp_min(1e-3)


def _highlight(img: Tensor, light: Tensor) -> Tensor:
    """Screen-blend an achromatic light map ``[H, W]`` in ``[0, 1]`` onto ``img``."""
    return 1.0 - (1.0 - img) * (1.0 - light.clamp(0.0, 1.0))[None]


def _mean_colour(img: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean colour ``[3, 1, 1]`` of ``img`` under ``weight`` ``[H, W]``."""
    total = weight.sum().clamp_min(1e-6)
    return ((img * weight[None]).sum((1, 2)) / total)[:, None, None]


def _warp(img: Tensor, matrix: Tensor, padding: str = "border") -> Tensor:
    """Affine-warp ``[C, H, W]`` with a ``[2, 3]`` source-to-destination pixel matrix."""
    h, w = img.shape[-2:]
    m = matrix.to(device=img.device, dtype=img.dtype)[None]
    return warp_affine(img[None], m, (h, w), padding_mode=padding, align_corners=True)[0]


def _affine_about(
    centre: tuple[float, float], angle_deg: float, scale: float, shift: tuple[float, float]
) -> Tensor:
    """``[2, 3]`` matrix rotating/scaling about ``centre`` (pixels) then shifting."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    cx, cy = centre
    tx = cx - (c * cx - s * cy) + shift[0]
    ty = cy - (s * cx + c * cy) + shift[1]
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)


def _similarity(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity ``[2, 3]`` mapping points ``src`` onto ``dst`` (``[N, 2]``)."""
    src, dst = src.double(), dst.double()
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    norm = (s0**2).sum().clamp_min(1e-9)
    a = (s0 * d0).sum() / norm
    b = (s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum() / norm
    rot = torch.stack([torch.stack([a, -b]), torch.stack([b, a])])
    t = md - rot @ ms
    return torch.cat([rot, t[:, None]], 1).cpu()


def _finish(out: Tensor, face: Tensor, region: Tensor | None = None) -> Tensor:
    """Clamp to ``[0, 1]``, restore dtype, and keep ``face`` bit-exact outside ``region``."""
    out = out.clamp(0.0, 1.0).to(face.dtype)
    if region is not None:
        out = torch.where(region[None].to(face.device), out, face)
    return out


def _bilateral(img: Tensor, fr: _Frame, sigma_color: float, sigma_space: float) -> Tensor:
    """Edge-preserving smoothing (skin pores / texture removal), sizes in pixels."""
    h, w = img.shape[-2:]
    k = min(_ksize(sigma_space * 2.0 / 3.0, h), _ksize(sigma_space * 2.0 / 3.0, w))
    k = max(k, 3)
    return bilateral_blur(img[None], (k, k), sigma_color, (sigma_space, sigma_space))[0]


def _aligned_donor(
    donor: Tensor, donor_landmarks: Tensor, landmarks: Tensor, like: Tensor
) -> Tensor:
    """The donor face warped onto the target's landmarks by a similarity transform."""
    matrix = _similarity(donor_landmarks, landmarks).to(like)
    h, w = like.shape[-2:]
    src = donor.to(like)[None]
    return warp_affine(src, matrix[None], (h, w), padding_mode="border", align_corners=True)[0]
