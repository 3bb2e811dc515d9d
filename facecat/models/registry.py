"""Detector registry and the single-file detector format.

Detectors are created by name from JSON configs shipped in the package
(``create_detector("facecat-small")``), in the manner of open_clip's ``create_model``.
Each config names a *kind*; a kind is a builder registered with :func:`register_kind`
(FaceCat here; baselines register their own). A trained detector is saved in one
safetensors file holding its tensors plus its config and metadata, and loads without
unpickling anything.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import safetensors
import safetensors.torch
from torch import Tensor, nn

from facecat.core.checkpoints import CheckpointError, atomic_write
from facecat.models.config import merge, packaged_config_names, read_config_dict

log = logging.getLogger(__name__)

FILE_FORMAT = "facecat-detector-v1"


@runtime_checkable
class Detector(Protocol):
    """What every suite needs from a detector: P(real) for images in [0, 1]."""

    name: str

    def scores(self, images: Tensor) -> Tensor: ...


class DetectorKind(Protocol):
    """Builds detectors of one kind from a config dict, fresh or from saved tensors.

    ``options`` names the keyword arguments of its ``create`` (weights files, seed, device);
    :func:`create_detector` passes those on and merges every other override into the config.
    """

    options: frozenset[str]

    def create(self, config: dict[str, Any], **options: Any) -> nn.Module: ...

    def restore(
        self, config: dict[str, Any], tensors: dict[str, Tensor], **options: Any
    ) -> nn.Module: ...


_KINDS: dict[str, DetectorKind] = {}
#: Modules registering the package's own kinds, imported whenever a kind is looked up.
BUILTIN_KIND_MODULES = ("facecat.models.cdcn", "facecat.models.facecat")


def register_kind(name: str) -> Callable[[type], type]:
    """Class decorator registering a :class:`DetectorKind` under ``name``."""

    def decorate(cls: type) -> type:
        _KINDS[name] = cls()
        return cls

    return decorate


def register_builtin_kinds() -> None:
    """Import the modules of the package's own kinds; kinds registered before stay."""
    registered = dict(_KINDS)
    for module in BUILTIN_KIND_MODULES:
        importlib.import_module(module)
    _KINDS.update(registered)


def _kind(name: str) -> DetectorKind:
    register_builtin_kinds()
    if name not in _KINDS:
        raise KeyError(f"unknown detector kind {name!r}; registered: {sorted(_KINDS)}")
    return _KINDS[name]


def list_detectors() -> list[str]:
    """Names accepted by :func:`create_detector`."""
    return packaged_config_names()


def create_detector(name: str, **overrides: Any) -> nn.Module:
    """Create a detector from a packaged config name or a JSON config path.

    Args:
        name: e.g. "facecat-ffhq256", "facecat-small", or a path to a JSON config.
        **overrides: config fields to replace (nested dicts merge, e.g.
            ``features={"blocks": [5, 6]}``), plus the options its kind declares (FaceCat:
            ``unet_weights=``, ``text_weights=``, ``resnet_weights=``, ``seed=``,
            ``device=``; CDCN: ``seed=``, ``device=``).

    Returns:
        The detector module (in eval mode).

    Raises:
        ValueError: for an option of another kind (``unet_weights`` for CDCN).
    """
    config = read_config_dict(name)
    kind_name = overrides.get("kind", config.get("kind", "facecat"))
    kind = _kind(kind_name)
    foreign = sorted(
        k
        for k in overrides
        if k not in kind.options and any(k in other.options for other in _KINDS.values())
    )
    if foreign:
        raise ValueError(
            f"detector kind {kind_name!r} takes no {', '.join(foreign)}; its options: "
            f"{', '.join(sorted(kind.options))}"
        )
    options = {k: overrides.pop(k) for k in list(overrides) if k in kind.options}
    detector = kind.create(merge(config, overrides), **options)
    return detector.eval()


def save_detector(
    detector: nn.Module,
    path: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    omit_backbone: bool = False,
) -> None:
    """Save a detector with its config in one safetensors file (written atomically).

    Args:
        detector: the detector.
        path: the file to write.
        metadata: extra JSON-serialisable header fields (training provenance, threshold).
        omit_backbone: leave out the frozen backbone's tensors (``BACKBONE_PREFIX`` of the
            detector's class); loading then takes the weights its config packages and checks
            them against the recorded ``backbone_sha256``.
    """
    state = detector.state_dict()
    if omit_backbone:
        prefix = getattr(detector, "BACKBONE_PREFIX", None)
        if prefix is None:
            raise ValueError(f"{type(detector).__name__} has no frozen backbone to omit")
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    header = {
        "format": FILE_FORMAT,
        "kind": detector.config.kind,
        "config": json.dumps(detector.config.to_dict()),
        "metadata": json.dumps(getattr(detector, "provenance", dict)() | (metadata or {})),
    }
    atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, str(tmp), header))


def read_detector_header(path: str | Path) -> dict[str, Any]:
    """Format, kind, config and metadata stored in a detector file (tensors not loaded)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"detector file not found: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            keys = list(handle.keys())
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(
            f"{path}: not a readable safetensors detector file: {str(error)[:200]}"
        ) from error
    if header.get("format") != FILE_FORMAT:
        raise CheckpointError(f"{path}: format {header.get('format')!r} is not {FILE_FORMAT!r}")
    try:
        config = json.loads(header["config"])
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: corrupted config/metadata header: {error}") from error
    return {"kind": header["kind"], "config": config, "metadata": metadata, "keys": keys}


def load_detector(path: str | Path, **options: Any) -> nn.Module:
    """Load a detector saved by :func:`save_detector` (safetensors, no pickle).

    Args:
        path: the detector file, or the name of a detector shipped with the package
            (:func:`shipped_detectors`).
        **options: kind options, e.g. ``device=``.

    Returns:
        The detector in eval mode; ``file_metadata`` holds the file's metadata header.

    Raises:
        CheckpointError: when the file is missing, unreadable, or its backbone weights do
            not match the digest recorded when it was saved.
    """
    path = resolve_detector_path(path)
    header = read_detector_header(path)
    tensors = safetensors.torch.load_file(str(path), device="cpu")
    try:
        detector = _kind(header["kind"]).restore(header["config"], tensors, **options)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from error
    recorded = header["metadata"].get("backbone_sha256")
    if recorded and hasattr(detector, "backbone_digest") and detector.backbone_digest() != recorded:
        raise CheckpointError(
            f"{path}: backbone weights have SHA-256 {detector.backbone_digest()[:12]}..., the "
            f"file was trained on {recorded[:12]}...; the packaged weights changed since"
        )
    detector.file_metadata = header["metadata"]
    return detector.eval()


def shipped_detectors() -> dict[str, Path]:
    """Trained detectors shipped in ``facecat/data/detectors``, by name."""
    folder = Path(str(resources.files("facecat") / "data" / "detectors"))
    return {p.stem: p for p in sorted(folder.glob("*.safetensors"))}


def resolve_detector_path(path: str | Path) -> Path:
    """``path`` itself when it is a file, else the shipped detector of that name."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = shipped_detectors()
    if str(path) in shipped:
        return shipped[str(path)]
    if candidate.suffix or len(candidate.parts) > 1:
        raise CheckpointError(f"detector file not found: {candidate}")
    raise CheckpointError(
        f"no detector file {candidate} and no shipped detector of that name "
        f"(shipped: {', '.join(shipped) or 'none'})"
    )
