"""Attack registry and the conversion between attacks and the protocol's type names.

Attacks register under their method name (``"PGD"``); the protocol's 14 adversarial types
(listed once, in :data:`facecat.datasets.protocol.ADVERSARIAL_TYPES`) are ``f"{name}_{Mode}"`` with
Mode "Dodging" or "Impersonation" (``"PGD_Impersonation"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from facecat.attacks.base import MODES, AttackBase, check_mode
from facecat.recognition.face_recognition import FaceRecognizer

__all__ = [
    "ATTACKS",
    "adversarial_type",
    "create_attack",
    "parse_adversarial_type",
    "register_attack",
]

#: Attack classes by method name, filled by :func:`register_attack`.
ATTACKS: dict[str, type[AttackBase]] = {}

AttackType = TypeVar("AttackType", bound=type[AttackBase])


def register_attack(name: str) -> Callable[[AttackType], AttackType]:
    """Class decorator registering an :class:`AttackBase` subclass under ``name``."""

    def decorate(cls: AttackType) -> AttackType:
        if "_" in name:
            raise ValueError(f"attack names may not contain '_' (type names split on it): {name}")
        if name in ATTACKS and ATTACKS[name] is not cls:
            raise ValueError(f"attack {name!r} is already registered by {ATTACKS[name]}")
        cls.name = name
        ATTACKS[name] = cls
        return cls

    return decorate


def create_attack(
    name: str, model: FaceRecognizer, mode: str = "dodging", **kwargs: Any
) -> AttackBase:
    """Create a registered attack.

    Args:
        name: method name, a key of :data:`ATTACKS` ("FGSM", "PGD", ...).
        model: the FR target.
        mode: "dodging" or "impersonation".
        **kwargs: the attack's own arguments (eps, steps, max_queries, seed, ...).

    Returns:
        The attack, ready to call on images.

    Raises:
        ValueError: For an unknown name or mode.
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; registered: {sorted(ATTACKS)}")
    return ATTACKS[name](model, mode, **kwargs)


def adversarial_type(name: str, mode: str) -> str:
    """The protocol's type name, e.g. ("PGD", "impersonation") -> "PGD_Impersonation"."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; registered: {sorted(ATTACKS)}")
    return f"{name}_{check_mode(mode).capitalize()}"


def parse_adversarial_type(attack_type: str) -> tuple[str, str]:
    """Split a type name: "PGD_Impersonation" -> ("PGD", "impersonation").

    Raises:
        ValueError: Unless the name is a registered attack and a mode joined by "_".
    """
    name, _, mode = attack_type.rpartition("_") if isinstance(attack_type, str) else ("", "", "")
    if name not in ATTACKS or mode not in tuple(m.capitalize() for m in MODES):
        raise ValueError(
            f"unknown adversarial type {attack_type!r}; expected <attack>_<Mode> with attack in "
            f"{sorted(ATTACKS)} and Mode in ('Dodging', 'Impersonation')"
        )
    return name, mode.lower()
