"""Train any registered detector kind with one call (FaceCat heads or CDCN)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from facecat.core.distributed import broadcast_value, current_world
from facecat.datasets.manifest import Manifest
from facecat.models.registry import load_detector
from facecat.training.cdcn import train_cdcn
from facecat.training.facecat import train_facecat, with_epochs
from facecat.training.loop import TrainResult


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
    shares: int = 1,
) -> TrainResult:
    """Train ``detector`` by its kind's procedure and save the best-on-dev detector.

    Args:
        detector: a detector from :func:`facecat.models.registry.create_detector`.
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
        shares: FaceCat only: gradient-accumulation shares per batch (see
            :func:`facecat.training.facecat.train_facecat`).

    Under torchrun FaceCat trains data-parallel; kinds without a distributed procedure
    (CDCN) train on rank 0 while the other processes wait, then every rank gets the result.

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
            shares=shares,
        )
    if kind == "cdcn":
        world = current_world()
        result = None
        if world.is_main:
            result = train_cdcn(
                detector,
                train,
                dev,
                out_dir,
                epochs=epochs,
                seed=seed,
                device=device,
                progress=progress,
            )
        result = broadcast_value(result, world)
        if not world.is_main:
            detector.load_state_dict(load_detector(result.detector_path).state_dict())
        return result
    raise ValueError(f"no training procedure for detector kind {kind!r} (facecat, cdcn)")
