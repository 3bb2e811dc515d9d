"""The epoch loop every detector's training shares: dev selection, history, resume, saving.

Each epoch trains (a callable of the kind's own procedure), scores the dev split, keeps the
model if its dev EER is the lowest so far (the test split never picks an epoch) and writes a
checkpoint atomically, so an interrupted run resumes where it stopped and reaches the same
weights. At the end the best-on-dev weights are restored and saved as one detector file with
its history and provenance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from facecat.core.checkpoints import atomic_write
from facecat.core.distributed import barrier, current_world
from facecat.core.provenance import provenance
from facecat.datasets.manifest import Manifest
from facecat.evaluation import metrics
from facecat.models.registry import save_detector

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
DETECTOR_NAME = "detector.safetensors"
HISTORY_NAME = "history.csv"


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a training run."""

    detector_path: Path
    best_epoch: int
    best_dev_eer: float
    history: pd.DataFrame


def new_state() -> dict:
    """The training state before the first epoch (what a checkpoint holds besides weights)."""
    return {
        "epoch": 0,
        "best_epoch": 0,
        "best_eer": float("inf"),
        "best_model": None,
        "history": [],
    }


def check_splits(train: Manifest, dev: Manifest) -> None:
    """Raise a ValueError unless the train and dev splits each hold both classes."""
    for split_name, split in (("train", train), ("dev", dev)):
        labels = split.labels
        if len(split) == 0 or labels.min() == labels.max():
            raise ValueError(
                f"{split_name} split needs bona fide and attack samples; got {len(split)} "
                f"samples with labels {sorted(set(labels.tolist()))}"
            )


def epoch_order(seed: int, epoch: int, samples: int) -> tuple[np.ndarray, torch.Tensor]:
    """One epoch's seeded sample order and horizontal-flip choices (``True``: flip)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(samples, generator=generator).numpy()
    return order, torch.rand(samples, generator=generator) < 0.5


def run_epochs(
    state: dict,
    epochs: int,
    *,
    train_epoch: Callable[[int], list[float]],
    dev_scores: Callable[[], np.ndarray],
    dev_labels: np.ndarray,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    save_state: Callable[[], None],
    patience: int = 0,
    on_epoch_end: Callable[[int], None] | None = None,
) -> None:
    """Run the epochs after ``state["epoch"]`` up to ``epochs``, updating ``state``.

    Args:
        state: the training state (:func:`new_state` or a resumed checkpoint's).
        epochs: the last epoch.
        train_epoch: trains one epoch (given its number) and returns the batch losses.
        dev_scores: P(real) of the dev split with the current weights.
        dev_labels: the dev split's labels.
        model: the trained modules (their weights are kept for the best epoch).
        optimizer: its learning rate goes into the history.
        save_state: writes the checkpoint of ``state``.
        patience: stop when the dev EER has not improved for this many epochs (0: never).
        on_epoch_end: called with the epoch number after its checkpoint is written.
    """
    for epoch in range(state["epoch"] + 1, epochs + 1):
        if patience and epoch - 1 - state["best_epoch"] >= patience:
            log.info("dev EER has not improved for %d epochs: stopping", patience)
            break
        losses = train_epoch(epoch)
        record_epoch(state, epoch, losses, dev_scores(), dev_labels, model, optimizer)
        save_state()
        if on_epoch_end is not None:
            on_epoch_end(epoch)


def record_epoch(
    state: dict,
    epoch: int,
    losses: list[float],
    dev_scores: np.ndarray,
    dev_labels: np.ndarray,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> None:
    """Append an epoch's history row and keep the model if its dev EER is the lowest."""
    dev_eer, threshold = metrics.eer(dev_scores, dev_labels)
    dev_auc = metrics.auc(dev_scores, dev_labels)
    state["history"].append(
        {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "dev_eer": dev_eer,
            "dev_auc": dev_auc,
            "lr": optimizer.param_groups[0]["lr"],
        }
    )
    if dev_eer < state["best_eer"]:
        state.update(
            best_epoch=epoch,
            best_eer=dev_eer,
            best_threshold=threshold,
            best_model={k: v.detach().clone() for k, v in model.state_dict().items()},
        )
    state["epoch"] = epoch
    log.info(
        "epoch %d: loss %.4f, dev EER %.4f, dev AUC %.4f", epoch, np.mean(losses), dev_eer, dev_auc
    )


def finish_run(
    detector: torch.nn.Module,
    model: torch.nn.Module,
    state: dict,
    out_dir: Path,
    metadata: dict,
    train_samples: int,
    dev_samples: int,
) -> TrainResult:
    """Restore the best-on-dev weights, write the history and save the detector file.

    The file's header records the run (best epoch, dev EER and threshold, ``metadata``) and
    its provenance (:func:`facecat.core.provenance.provenance`).
    """
    model.load_state_dict(state["best_model"])
    detector.eval()
    history = pd.DataFrame(state["history"])
    detector_path = out_dir / DETECTOR_NAME
    world = current_world()
    if world.is_main:
        atomic_write(out_dir / HISTORY_NAME, lambda tmp: history.to_csv(tmp, index=False))
        save_detector(
            detector,
            detector_path,
            metadata={
                **provenance(next(model.parameters()).device),
                "best_epoch": state["best_epoch"],
                "best_dev_eer": state["best_eer"],
                "dev_threshold": state.get("best_threshold"),
                **metadata,
                "train_samples": train_samples,
                "dev_samples": dev_samples,
            },
        )
    barrier(world)
    return TrainResult(detector_path, state["best_epoch"], state["best_eer"], history)
