"""The presentation-attack types and the pixels each may change (:func:`attack_region`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from facecat.datasets.presentation_attacks._geometry import (
    _box_sdf,
    _face_oval_sdf,
    _Frame,
    _frame,
    _mouth_geometry,
    _scale,
)

__all__ = ["PA_TYPES", "attack_region"]

PA_TYPES: tuple[str, ...] = (
    "Makeup_Co",
    "Makeup_Im",
    "Makeup_Ob",
    "Mask_Half",
    "Mask_Mann",
    "Mask_Paper",
    "Mask_Silicone",
    "Mask_Trans",
    "Paper",
    "Partial_Eye",
    "Partial_Funnyeye",
    "Partial_Mouth",
    "Partial_Paperglass",
    "Replay",
)


def _check_type(attack_type: str) -> None:
    if attack_type not in PA_TYPES:
        raise ValueError(
            f"unknown presentation-attack type {attack_type!r}; available: {', '.join(PA_TYPES)}"
        )


def _region_oval(fr: _Frame) -> Tensor:
    return _face_oval_sdf(fr) <= 2.0


def _region_eyes(fr: _Frame) -> Tensor:
    pad = 3.0 * _scale(fr) + 1.0
    return _box_sdf(fr, 0.0, 0.0, 1.07 * fr.d + pad, 0.36 * fr.m + 0.1 * fr.d + pad) <= 0


def _region_funny_eyes(fr: _Frame) -> Tensor:
    pad = 3.0 * _scale(fr) + 1.0
    return _box_sdf(fr, 0.0, 0.0, 1.02 * fr.d + pad, 0.6 * fr.d + pad) <= 0


def _region_glasses(fr: _Frame) -> Tensor:
    pad = 3.0 * _scale(fr) + 1.0
    return _box_sdf(fr, 0.0, 0.0, 1.25 * fr.d + pad, 0.5 * fr.d + pad) <= 0


def _region_mouth(fr: _Frame) -> Tensor:
    cu, cv, half, tilt = _mouth_geometry(fr)
    pad = 3.0 * _scale(fr) + 1.0
    return (
        _box_sdf(fr, cu, cv, half + 0.45 * fr.d + pad, 0.32 * fr.m + 0.12 * fr.d + pad, tilt) <= 0
    )


_REGIONS: dict[str, Callable[[_Frame], Tensor]] = {
    "Makeup_Co": _region_oval,
    "Makeup_Im": _region_oval,
    "Makeup_Ob": _region_oval,
    "Partial_Eye": _region_eyes,
    "Partial_Funnyeye": _region_funny_eyes,
    "Partial_Mouth": _region_mouth,
    "Partial_Paperglass": _region_glasses,
}


def attack_region(attack_type: str, landmarks: Tensor, height: int, width: int) -> Tensor:
    """Pixels a presentation-attack type may change.

    Local types (the four ``Partial_*`` covers and the three ``Makeup_*`` types) return a
    landmark-placed region; global types (masks, print, replay) return all ``True``. The
    simulators keep every pixel outside this region bit-exactly unchanged.

    Args:
        attack_type: one of :data:`PA_TYPES`.
        landmarks: 5-point landmarks, pixel ``(x, y)``.
        height: image height in pixels.
        width: image width in pixels.

    Shape:
        - landmarks: :math:`(5, 2)`
        - output: :math:`(H, W)`, bool, on ``landmarks``' device

    Returns:
        The boolean region mask.
    """
    _check_type(attack_type)
    region = _REGIONS.get(attack_type)
    if region is None:
        return torch.ones(height, width, dtype=torch.bool, device=landmarks.device)
    return region(_frame(landmarks, height, width))


def _region(attack_type: str, face: Tensor, landmarks: Tensor) -> Tensor:
    return attack_region(attack_type, landmarks.to(face.device), face.shape[-2], face.shape[-1])
