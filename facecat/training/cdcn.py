"""Training of the CDCN++ baseline: depth supervision, selection on dev, exact resume.

Bona fide images are supervised with their depth map: a grayscale image named in the
manifest's ``depth`` column (relative to the manifest's folder) where the row has one,
otherwise the pseudo-depth of :mod:`facecat.training.pseudo_depth` rendered from the row's
``landmarks``. Attacks are supervised with zeros. The loss is MSE plus the contrast-depth
loss, optimised by Adam. Images and their targets are flipped horizontally together with
probability 1/2. The epochs run in the shared loop of :mod:`facecat.training.loop` (dev selection,
checkpoints, resume).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from facecat.core.checkpoints import load_training_state, save_training_state
from facecat.core.images import ImageFiles, ImageLoadError
from facecat.datasets.manifest import Manifest
from facecat.evaluation.evaluate import score_files
from facecat.models.cdcn import CDCN, CDCNTrainConfig, cdcn_loss
from facecat.training import pseudo_depth
from facecat.training.loop import (
    CHECKPOINT_NAME,
    TrainResult,
    check_splits,
    epoch_order,
    finish_run,
    new_state,
    run_epochs,
)
from facecat.training.pseudo_depth import depth_targets

log = logging.getLogger(__name__)

DEPTH_COLUMN = "depth"


def load_depth_map(path: str | Path, size: int) -> Tensor:
    """Read a grayscale depth image (8 or 16 bit) as a map in [0, 1], resized bilinearly.

    Shape:
        -> (size, size)

    Raises:
        ImageLoadError: when the file is missing or not a readable image.
    """
    try:
        with Image.open(path) as image:
            sixteen_bit = image.mode.startswith("I")
            gray = (image if sixteen_bit else image.convert("L")).convert("F")
            gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    except OSError as error:
        raise ImageLoadError(f"{path}: cannot read the depth map ({error})") from error
    array = np.asarray(gray, dtype=np.float32) / (65535.0 if sixteen_bit else 255.0)
    return torch.from_numpy(array.clip(0, 1))


class DepthSupervision:
    """Where each row's depth target comes from: a depth file, landmarks, or zeros.

    Args:
        manifest: the split.
        image_size: side length the images are resized to (landmarks are scaled to it).
        depth_size: side length of the targets.

    Raises:
        ValueError: when a bona fide row has no depth file and the manifest has no
            ``landmarks`` column.
    """

    def __init__(self, manifest: Manifest, image_size: int, depth_size: int) -> None:
        self.image_size = image_size
        self.depth_size = depth_size
        self.labels = torch.tensor(manifest.labels)
        frame = manifest.frame
        live = manifest.labels == 1
        if DEPTH_COLUMN in frame.columns:
            cells = [c if isinstance(c, str) else "" for c in frame[DEPTH_COLUMN]]
            self.depth_paths = [manifest.root / c.strip() if c.strip() else None for c in cells]
        else:
            self.depth_paths = [None] * len(manifest)
        needs_landmarks = live & np.array([p is None for p in self.depth_paths])
        points = manifest.landmarks
        if needs_landmarks.any() and points is None:
            first = manifest.paths[int(np.flatnonzero(needs_landmarks)[0])]
            raise ValueError(
                f"{manifest.source}: {int(needs_landmarks.sum())} bona fide row(s) (first: "
                f"{first}) have no depth map (column '{DEPTH_COLUMN}') and the manifest has no "
                "'landmarks' column to render pseudo-depth from; add either column"
            )
        self.landmarks = None
        if points is not None:
            self.landmarks = torch.from_numpy(points).clone()
            for i in np.flatnonzero(needs_landmarks):  # the only rows whose landmarks are used
                with Image.open(manifest.paths[i]) as image:
                    width, height = image.size
                scale = torch.tensor([image_size / width, image_size / height])
                self.landmarks[i] = (self.landmarks[i] + 0.5) * scale - 0.5
        self.counts = {
            "depth_maps": int((live & ~needs_landmarks).sum()),
            "pseudo_depth": int(needs_landmarks.sum()),
            "attacks": int((~live).sum()),
        }

    def targets(self, indices: np.ndarray) -> Tensor:
        """Depth targets of the given rows.

        Shape:
            (B,) -> (B, depth_size, depth_size)
        """
        labels = self.labels[indices]
        maps = [
            None
            if label != 1 or self.depth_paths[i] is None
            else load_depth_map(self.depth_paths[i], self.depth_size)
            for i, label in zip(indices.tolist(), labels.tolist(), strict=True)
        ]
        landmarks = None if self.landmarks is None else self.landmarks[indices]
        return depth_targets(labels, landmarks, self.image_size, self.depth_size, maps)


def _spans(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def _run_key(
    detector: CDCN, train: Manifest, dev: Manifest, config: CDCNTrainConfig, seed: int
) -> str:
    description = {
        "config": detector.config.to_dict(),
        "train": asdict(config),
        "seed": seed,
        "pseudo_depth": pseudo_depth.VERSION,
        "train_data": train.digest(),
        "dev_data": dev.digest(),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def train_cdcn(
    detector: CDCN,
    train: Manifest,
    dev: Manifest,
    out_dir: str | Path,
    *,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = True,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a CDCN++ detector and save the best-on-dev one.

    Args:
        detector: a CDCN detector (trained in place; ends with the selected weights).
        train: training split (both classes; bona fide rows need a depth file or landmarks).
        dev: development split for model selection (both classes required).
        out_dir: receives ``checkpoint.pt``, ``history.csv`` and ``detector.safetensors``.
        epochs: overrides the config's ``train.epochs``.
        seed: seed of the batch order and the flips.
        device: where training runs.
        resume: continue from ``out_dir/checkpoint.pt`` when it belongs to the same run.
        progress: show progress bars.
        on_epoch_end: called with the epoch number after its checkpoint is written.

    Returns:
        The saved detector path, the selected epoch, its dev EER and the per-epoch history.
    """
    config = detector.config.train
    if epochs is not None:
        config = replace(config, epochs=epochs)
    out_dir = Path(out_dir)
    device = torch.device(device)
    check_splits(train, dev)
    size = detector.image_size
    supervision = DepthSupervision(train, size, detector.depth_size)
    train_images = ImageFiles(train.paths, size)
    detector.to(device)
    optimizer = torch.optim.Adam(
        detector.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    run_key = _run_key(detector, train, dev, config, seed)
    state = new_state()
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if resume and checkpoint_path.is_file():
        state = load_training_state(checkpoint_path, run_key, detector, optimizer)

    def train_epoch(epoch: int) -> list[float]:
        detector.train()
        order, flips = epoch_order(seed, epoch, len(train))
        losses = []
        bar = tqdm(
            _spans(len(train), config.batch_size),
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            disable=not progress,
        )
        for start, stop in bar:
            idx = order[start:stop]
            if len(idx) < 2:  # BatchNorm cannot train on a single sample
                continue
            images = torch.stack([train_images[i] for i in idx])
            targets = supervision.targets(idx)
            flip = flips[start:stop]
            images[flip] = images[flip].flip(-1)
            targets[flip] = targets[flip].flip(-1)
            loss = cdcn_loss(detector(images.to(device)), targets.to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss at epoch {epoch} on samples {idx[:5].tolist()}... "
                    f"(first file: {train.paths[int(idx[0])]})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        return losses

    run_epochs(
        state,
        config.epochs,
        train_epoch=train_epoch,
        dev_scores=lambda: score_files(
            detector, dev.paths, size=size, batch_size=config.batch_size, device=device
        ),
        dev_labels=dev.labels,
        model=detector,
        optimizer=optimizer,
        save_state=lambda: save_training_state(
            checkpoint_path, run_key, state, detector, optimizer
        ),
        on_epoch_end=on_epoch_end,
    )

    return finish_run(
        detector,
        detector,
        state,
        out_dir,
        {
            "train_config": asdict(config),
            "seed": seed,
            "depth_supervision": supervision.counts,
            "protocol": train.root.name,
        },
        len(train),
        len(dev),
    )
