"""The face regions an adversarial 3D print may cover, in the canonical UV frame.

After AT3D (Yang et al., CVPR 2023), which prints adversarial textures restricted to the eye,
eye-nose and respirator areas of a face mesh. Regions are soft masks over canonical
coordinates (:mod:`facecat.core.face_surface`: eyes at ``(+-0.5, 0)``, units of the inter-ocular
distance d), so they fit every wearer once the template is aligned to the landmarks:

* ``eye``: a goggle-shaped band over both eyes and the brows;
* ``eye_nose``: the eye band plus the nose down to below its tip;
* ``respirator``: nose bridge, nose, mouth and chin, like a half-face respirator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from facecat.core.face_surface import UV_BOX, UV_LANDMARKS, face_oval

__all__ = ["REGIONS", "region_mask", "texture_grid"]

_EDGE = 0.04  # width of the soft edge, in units of d


def _box(value: Tensor, low: float | Tensor, high: float | Tensor) -> Tensor:
    return ((value - low) / _EDGE).clamp(0, 1) * ((high - value) / _EDGE).clamp(0, 1)


def _eye(uv: Tensor) -> Tensor:
    u, v = uv[..., 0], uv[..., 1]
    band = _box(u, -1.05, 1.05) * _box(v, -0.42, 0.3)
    corners = (1.25 - ((u.abs() - 0.55) ** 2 / 0.5**2 + (v + 0.06) ** 2 / 0.45**2)) / 0.1
    return band * corners.clamp(0, 1)


def _nose(uv: Tensor) -> Tensor:
    u, v = uv[..., 0], uv[..., 1]
    tip = float(UV_LANDMARKS[2, 1])
    half_width = 0.16 + 0.14 * ((v - 0.1) / (tip - 0.1)).clamp(0, 1)
    return _box(u, -half_width, half_width) * _box(v, -0.1, tip + 0.18)


def _eye_nose(uv: Tensor) -> Tensor:
    return torch.maximum(_eye(uv), _nose(uv))


def _respirator(uv: Tensor) -> Tensor:
    u, v = uv[..., 0], uv[..., 1]
    top = 0.3 - 0.25 * (u.abs() / 0.9).clamp(0, 1)
    return _box(u, -0.95, 0.95) * _box(v, top, 2.5) * face_oval(uv, margin=_EDGE)


#: Region masks by name: canonical coordinates (..., 2) -> coverage in [0, 1] (...).
REGIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "eye": _eye,
    "eye_nose": _eye_nose,
    "respirator": _respirator,
}


def texture_grid(size: int, like: Tensor) -> Tensor:
    """Canonical coordinates (size, size, 2) of the texels of a ``size`` x ``size`` texture."""
    u_min, u_max, v_min, v_max = UV_BOX
    steps = (torch.arange(size, device=like.device, dtype=like.dtype) + 0.5) / size
    v, u = torch.meshgrid(
        v_min + (v_max - v_min) * steps, u_min + (u_max - u_min) * steps, indexing="ij"
    )
    return torch.stack([u, v], dim=-1)


def region_mask(region: str, size: int, like: Tensor) -> Tensor:
    """A region's coverage over the texture, (1, 1, size, size) in [0, 1].

    Raises:
        ValueError: If ``region`` is unknown.
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {sorted(REGIONS)}")
    return REGIONS[region](texture_grid(size, like))[None, None]
