"""FaceCat: one detector for face presentation attacks and adversarial faces.

Public entry points::

    from facecat import create_detector, list_detectors, load_detector, save_detector

They load on first use (PEP 562), so ``import facecat`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facecat.models.registry import (
        Detector,
        create_detector,
        list_detectors,
        load_detector,
        register_kind,
        save_detector,
    )

__all__ = [
    "Detector",
    "create_detector",
    "list_detectors",
    "load_detector",
    "register_kind",
    "save_detector",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The registry's public names, imported with the "cdcn" and "facecat" kinds registered."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from facecat.models import registry

    registry.register_builtin_kinds()
    value = getattr(registry, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Module attributes including the lazily loaded public names."""
    return sorted(set(globals()) | set(__all__))
