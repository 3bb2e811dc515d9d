"""The simulator of every type, the donor rule, input checks and :func:`simulate_pa`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from facecat.datasets.presentation_attacks.makeup import (
    makeup_cosmetic,
    makeup_impersonation,
    makeup_obfuscation,
)
from facecat.datasets.presentation_attacks.masks import (
    mask_half,
    mask_mannequin,
    mask_paper,
    mask_silicone,
    mask_transparent,
)
from facecat.datasets.presentation_attacks.partial import (
    partial_eye,
    partial_funny_eye,
    partial_mouth,
    partial_paper_glasses,
)
from facecat.datasets.presentation_attacks.print_replay import paper_print, screen_replay
from facecat.datasets.presentation_attacks.regions import _check_type

__all__ = ["PA_SIMULATORS", "PaSimulator", "needs_donor", "simulate_pa"]

PaSimulator = Callable[[Tensor, Tensor, torch.Generator, Tensor | None, Tensor | None], Tensor]

_MIN_SIZE = 16

PA_SIMULATORS: dict[str, PaSimulator] = {
    "Makeup_Co": makeup_cosmetic,
    "Makeup_Im": makeup_impersonation,
    "Makeup_Ob": makeup_obfuscation,
    "Mask_Half": mask_half,
    "Mask_Mann": mask_mannequin,
    "Mask_Paper": mask_paper,
    "Mask_Silicone": mask_silicone,
    "Mask_Trans": mask_transparent,
    "Paper": paper_print,
    "Partial_Eye": partial_eye,
    "Partial_Funnyeye": partial_funny_eye,
    "Partial_Mouth": partial_mouth,
    "Partial_Paperglass": partial_paper_glasses,
    "Replay": screen_replay,
}

_NEEDS_DONOR: frozenset[str] = frozenset({"Makeup_Im"})


def needs_donor(attack_type: str) -> bool:
    """Whether ``attack_type`` requires a donor face (another subject).

    Args:
        attack_type: one of :data:`PA_TYPES`.

    Returns:
        ``True`` for types that cannot be simulated without a donor (``Makeup_Im``); the
        mask types use a donor when one is given but do not require it.
    """
    _check_type(attack_type)
    return attack_type in _NEEDS_DONOR


def _check_image(name: str, img: object) -> Tensor:
    if not isinstance(img, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(img).__name__}")
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"{name} must have shape (3, H, W), got {tuple(img.shape)}")
    if not img.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got {img.dtype}")
    h, w = img.shape[-2:]
    if h < _MIN_SIZE or w < _MIN_SIZE:
        raise ValueError(f"{name} must be at least {_MIN_SIZE}x{_MIN_SIZE}, got {h}x{w}")
    if not bool(torch.isfinite(img).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(img.min()), float(img.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} values must lie in [0, 1], got min {lo:.4g} and max {hi:.4g}")
    return img


def _check_landmarks(name: str, landmarks: object, height: int, width: int) -> Tensor:
    if not isinstance(landmarks, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(landmarks).__name__}")
    if tuple(landmarks.shape) != (5, 2):
        raise ValueError(f"{name} must have shape (5, 2), got {tuple(landmarks.shape)}")
    lm = landmarks.to(torch.float64)
    if not bool(torch.isfinite(lm).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    inside = (lm[:, 0] >= 0) & (lm[:, 0] <= width - 1) & (lm[:, 1] >= 0) & (lm[:, 1] <= height - 1)
    if not bool(inside.all()):
        bad = int((~inside).nonzero()[0, 0])
        x, y = lm[bad].tolist()
        raise ValueError(
            f"{name} must lie inside the image (x in [0, {width - 1}], y in [0, {height - 1}]); "
            f"point {bad} is ({x:.4g}, {y:.4g})"
        )
    return landmarks


def simulate_pa(
    attack_type: str,
    face: Tensor,
    landmarks: Tensor,
    *,
    seed: int,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Simulate one presentation attack on one face, deterministically under ``seed``.

    Args:
        attack_type: one of :data:`PA_TYPES`.
        face: RGB face in ``[0, 1]`` (float32 or float64), at least 16x16.
        landmarks: 5-point landmarks, pixel ``(x, y)``: left eye, right eye, nose, left and
            right mouth corner ("left" = image left), inside the image.
        seed: seed of the ``torch.Generator`` that draws every random parameter.
        donor: another subject's face (any size >= 16x16); required when
            :func:`needs_donor` says so, optional for the mask types.
        donor_landmarks: the donor's 5-point landmarks (required with ``donor``).

    Shape:
        - face, output: :math:`(3, H, W)`; donor: :math:`(3, H_d, W_d)`
        - landmarks, donor_landmarks: :math:`(5, 2)`

    Returns:
        The attack image, same shape, dtype and device as ``face``, values in ``[0, 1]``.

    Raises:
        ValueError: for an unknown type (the message lists the available ones), a malformed
            or out-of-range face or donor, landmarks of the wrong shape, non-finite or outside
            the image, a donor without landmarks, or a missing donor where one is needed.

    Example:
        >>> face = torch.rand(3, 32, 32)
        >>> lm = torch.tensor([[11.0, 13], [21, 13], [16, 18], [12, 23], [20, 23]])
        >>> out = simulate_pa("Replay", face, lm, seed=3)
        >>> bool(((out >= 0) & (out <= 1)).all())
        True
    """
    _check_type(attack_type)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {type(seed).__name__}")
    face = _check_image("face", face)
    h, w = face.shape[-2:]
    landmarks = _check_landmarks("landmarks", landmarks, h, w).to(face.device)
    if (donor is None) != (donor_landmarks is None):
        raise ValueError("donor and donor_landmarks must be given together")
    if donor is not None and donor_landmarks is not None:
        donor = _check_image("donor", donor)
        dh, dw = donor.shape[-2:]
        donor_landmarks = _check_landmarks("donor_landmarks", donor_landmarks, dh, dw)
        donor = donor.to(device=face.device, dtype=face.dtype)
        donor_landmarks = donor_landmarks.to(face.device)
    elif needs_donor(attack_type):
        raise ValueError(
            f"{attack_type} needs a donor face: pass donor= and donor_landmarks= "
            "(another subject's face and its 5 landmarks)"
        )
    rng = torch.Generator(device="cpu").manual_seed(seed)
    return PA_SIMULATORS[attack_type](face, landmarks, rng, donor, donor_landmarks)
