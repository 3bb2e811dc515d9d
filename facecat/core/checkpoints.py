"""Safe checkpoint I/O: no arbitrary unpickling, strict key checks, atomic writes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unsafe, corrupted or does not fit the model."""


def load_state_dict_file(path: str | Path, *, what: str) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file, never unpickling objects.

    Args:
        path: the file.
        what: what the file should be, used in error messages (e.g. "FFHQ-256 UNet").

    Returns:
        A flat ``{name: tensor}`` dict on the CPU (a ``state_dict``/``model`` wrapper is
        unwrapped).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what}: file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            state = safetensors.torch.load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many unrelated types
        raise CheckpointError(
            f"{what}: cannot read {path} as a safe checkpoint (safetensors, or torch.load "
            f"with weights_only=True): {type(error).__name__}: {str(error)[:300]}"
        ) from error
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{what}: {path} does not hold a flat state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_strict(module: nn.Module, state: Mapping[str, Tensor], *, source: str) -> None:
    """Load ``state`` into ``module`` requiring identical keys and shapes.

    Args:
        module: the model to fill.
        state: the weights.
        source: file and config description used in the error message.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:3]})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (first: {mismatched[:3]})")
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write a file through a temporary sibling and ``os.replace``.

    Args:
        path: the final file.
        write: called with the temporary path; must create the file there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def state_digest(state: Mapping[str, Tensor]) -> str:
    """SHA-256 over names, shapes, dtypes and raw bytes of a state dict (sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


_TRAINING_KEYS = frozenset(
    ("run_key", "epoch", "best_epoch", "best_eer", "best_model", "history", "model", "optimizer")
)


def save_training_state(
    path: Path,
    run_key: str,
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None = None,
) -> None:
    """Write a training checkpoint atomically, for an exact resume by :func:`load_training_state`.

    Args:
        path: the checkpoint file.
        run_key: digest of everything that defines the run (config, data, seed, ...).
        state: ``epoch``, ``best_epoch``, ``best_eer``, ``best_threshold`` (dev EER threshold
            of the best epoch), ``best_model`` (a state dict or None)
            and ``history`` (a list of JSON-serialisable dicts).
        model: the trained module.
        optimizer: its optimiser.
        scheduler: its learning-rate scheduler, if any.
    """
    payload = {
        "run_key": run_key,
        "epoch": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_eer": state["best_eer"],
        "best_threshold": state.get("best_threshold"),
        "best_model": state["best_model"],
        "history": json.dumps(state["history"]),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_training_state(
    path: Path,
    run_key: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None = None,
) -> dict[str, Any]:
    """Restore model, optimiser and scheduler from a checkpoint of the same run.

    Args:
        path: the checkpoint written by :func:`save_training_state`.
        run_key: the current run's key; a checkpoint of another run is refused.
        model: filled with the checkpoint's weights.
        optimizer: filled with the checkpoint's optimiser state.
        scheduler: filled with the checkpoint's scheduler state, if any.

    Returns:
        The ``state`` dict that was saved.

    Raises:
        CheckpointError: when the file is unreadable or belongs to another run.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupted or unsafe file
        raise CheckpointError(
            f"{path}: cannot resume from this checkpoint ({type(error).__name__}: "
            f"{str(error)[:200]}); delete it to start over"
        ) from error
    missing = (
        sorted(_TRAINING_KEYS - set(payload)) if isinstance(payload, dict) else ["(not a dict)"]
    )
    if missing:
        raise CheckpointError(
            f"{path}: not a training checkpoint (missing {missing}); delete it to start over"
        )
    if payload.get("run_key") != run_key:
        raise CheckpointError(
            f"{path} belongs to a different run (config, data, seed or backbone changed); "
            "use another output folder or delete the checkpoint"
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
    log.info("resuming from %s after epoch %d", path, payload["epoch"])
    return {
        "epoch": payload["epoch"],
        "best_epoch": payload["best_epoch"],
        "best_eer": payload["best_eer"],
        "best_threshold": payload.get("best_threshold"),  # absent in older checkpoints
        "best_model": payload["best_model"],
        "history": json.loads(payload["history"]),
    }
