"""Train any registered detector kind with one call (FaceCat heads or CDCN)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from facecat.manifest import Manifest
from facecat.train import TrainResult, train_facecat, with_epochs
from facecat.train_cdcn import train_cdcn


def train_detector(
    detector: nn.Module,
    train: Manifest,
    dev: Manifest,
    out_dir: str | Path,
    *,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train ``detector`` by its kind's procedure and save the best-on-dev detector.

    Args:
        detector: a detector from :func:`facecat.registry.create_detector`.
        train: training split.
        dev: development split (model selection).
        out_dir: run folder (checkpoint, history, detector file); a finished or interrupted
            run with the same inputs is resumed from it.
        epochs: override the config's number of epochs.
        seed: batch-order seed.
        device: where training runs.
        cache_dir: FaceCat feature cache (ignored by kinds without one).
        use_cache: FaceCat only: False re-extracts features every epoch.
        progress: show progress bars.

    Returns:
        The saved detector path, best epoch, its dev EER and the history.
    """
    kind = detector.config.kind
    if kind == "facecat":
        return train_facecat(
            detector,
            train,
            dev,
            out_dir,
            config=with_epochs(detector.config.train, epochs),
            cache_dir=cache_dir,
            use_cache=use_cache,
            seed=seed,
            device=device,
            progress=progress,
        )
    if kind == "cdcn":
        return train_cdcn(
            detector,
            train,
            dev,
            out_dir,
            epochs=epochs,
            seed=seed,
            device=device,
            progress=progress,
        )
    raise ValueError(f"no training procedure for detector kind {kind!r} (facecat, cdcn)")
