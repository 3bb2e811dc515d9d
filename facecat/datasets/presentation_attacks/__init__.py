"""Simulated presentation attacks: the 14 SiW-Mv2 spoof types on aligned face crops.

No face-spoofing data set can be had offline, so the embedded protocol renders each
presentation-attack (PA) type as a physically motivated image-space simulation of the attack
instrument (print, screen, mask, makeup, partial cover) on an aligned RGB face crop with its
5-point landmarks (pixel ``(x, y)``: left eye, right eye, nose, left mouth corner, right mouth
corner; "left" = image left). Every random choice comes from a ``torch.Generator``, so an
attack is a deterministic function of (face, landmarks, donor, seed), and every strength is
drawn per seed so that no single global statistic separates an attack from a bona fide face.

All geometry is placed in a face frame built from the landmarks (origin at the eye midpoint,
``u`` along the eye line, ``v`` towards the mouth, in pixels), so the simulations work at any
resolution, aspect ratio and in-plane rotation.

Local types (the four ``Partial_*`` and the three ``Makeup_*``) change only the pixels of
:func:`attack_region`; every other pixel is returned bit-exactly.

Example:
    >>> import torch
    >>> face = torch.rand(3, 64, 64)
    >>> lm = torch.tensor([[22.0, 26], [42, 26], [32, 37], [24, 47], [40, 47]])
    >>> simulate_pa("Paper", face, lm, seed=0).shape
    torch.Size([3, 64, 64])
"""

from __future__ import annotations

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
from facecat.datasets.presentation_attacks.regions import PA_TYPES, attack_region
from facecat.datasets.presentation_attacks.registry import (
    PA_SIMULATORS,
    PaSimulator,
    needs_donor,
    simulate_pa,
)

__all__ = [
    "PA_SIMULATORS",
    "PA_TYPES",
    "VERSION",
    "PaSimulator",
    "attack_region",
    "makeup_cosmetic",
    "makeup_impersonation",
    "makeup_obfuscation",
    "mask_half",
    "mask_mannequin",
    "mask_paper",
    "mask_silicone",
    "mask_transparent",
    "needs_donor",
    "paper_print",
    "partial_eye",
    "partial_funny_eye",
    "partial_mouth",
    "partial_paper_glasses",
    "screen_replay",
    "simulate_pa",
]

#: Raise when any simulator's output for the same face, landmarks, donor and seed changes: it
#: is part of the embedded protocol's build key (``tests/test_generator_versions.py`` holds
#: the golden digests that catch a change made without it).
VERSION = 1
