"""FaceCat: one detector for face presentation attacks and adversarial faces.

Public entry points::

    from facecat import create_detector, list_detectors, load_detector, save_detector
"""

from facecat import cdcn as _cdcn  # noqa: F401  (registers the "cdcn" detector kind)
from facecat import model as _model  # noqa: F401  (registers the "facecat" detector kind)
from facecat.registry import (
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
