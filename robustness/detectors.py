"""Detectors and data for the robustness suites, trained or loaded once and reused.

:class:`DetectorPool` owns one protocol (the embedded one or a user's manifest) and hands out
detectors by name: the built-in ``facecat`` and ``cdcn`` are trained on the protocol's train
split (or on a leave-one-type-out split for the unseen suite), with the run folders of the
main job's cache, so a warm cache makes them free; a user's detector file is loaded as is.
Split images are read once and kept on the device; clean dev scores fix each detector's
threshold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from facecat.distributed import current_world, gather_rows, shard_bounds
from facecat.manifest import Manifest, load_images
from facecat.protocol import leave_one_type_out
from facecat.registry import load_detector
from facecat.reproduce import Variant, train_variant

#: The detectors the suites know by name.
BUILTIN = {"facecat": Variant("FaceCat", "facecat-small"), "cdcn": Variant("CDCN", "cdcn")}


@dataclass(frozen=True)
class SplitData:
    """One split in memory: images on the device, labels, attack types and manifest rows."""

    images: Tensor
    labels: np.ndarray
    attack_types: np.ndarray
    frame: pd.DataFrame
    root: Path


def parse_detector_list(text: str) -> tuple[list[str], dict[str, Path]]:
    """Names and files of a ``name,name=detector-file,...`` option value.

    Returns:
        Every name in order, and the detector file of each name that gives one.
    """
    names, files = [], {}
    for item in text.split(","):
        name, _, path = item.strip().partition("=")
        names.append(name)
        if path:
            files[name] = Path(path)
    return names, files


def score_images(detector: nn.Module, images: Tensor, batch_size: int = 64) -> np.ndarray:
    """P(real) for an in-memory batch, in chunks.

    Under torchrun each process scores its shard and the scores are gathered in order.

    Shape:
        images (N, 3, S, S) -> (N,)
    """
    world = current_world()
    start, stop = shard_bounds(len(images), world)
    parts = [
        detector.scores(images[i : min(i + batch_size, stop)]).float()
        for i in range(start, stop, batch_size)
    ]
    local = torch.cat(parts) if parts else torch.zeros(0, device=images.device)
    return gather_rows(local, len(images), world).cpu().numpy()


class DetectorPool:
    """Detectors by name on one protocol, trained or loaded once.

    Args:
        manifest: the protocol (train, dev and test splits).
        runs_dir: where trained runs live (reused when the inputs match).
        feature_cache: FaceCat's backbone feature cache, shared by all runs.
        device: where detectors and images live.
        files: user detectors by name (safetensors files from ``facecat train``).
        epochs: override the built-in detectors' epochs.
        seed: training seed.
    """

    def __init__(
        self,
        manifest: Manifest,
        runs_dir: Path,
        feature_cache: Path,
        *,
        device: torch.device,
        files: dict[str, Path] | None = None,
        epochs: int | None = None,
        seed: int = 0,
    ) -> None:
        self.manifest = manifest
        self.runs_dir = runs_dir
        self.feature_cache = feature_cache
        self.device = device
        self.files = files or {}
        self.epochs = epochs
        self.seed = seed
        unknown = set(self.files) & set(BUILTIN)
        if unknown:
            raise ValueError(f"detector names {sorted(unknown)} are built in; rename yours")

    @property
    def names(self) -> list[str]:
        return [*BUILTIN, *self.files]

    def held_out_manifest(self, attack_type: str | None) -> Manifest:
        """The protocol, or its leave-one-type-out split when ``attack_type`` is given."""
        if attack_type is None:
            return self.manifest
        return leave_one_type_out(self.manifest, attack_type)

    @cache  # noqa: B019  (the pool lives for one pytest session)
    def detector(self, name: str, held_out: str | None = None) -> nn.Module:
        """The detector ``name`` trained without ``held_out`` (None: on all types)."""
        if name in self.files:
            if held_out is not None:
                raise ValueError(
                    f"detector {name!r} is a fixed file; the unseen suite needs a trainable "
                    f"built-in detector ({sorted(BUILTIN)})"
                )
            return load_detector(self.files[name], device=self.device)
        if name not in BUILTIN:
            raise ValueError(f"unknown detector {name!r}; known: {self.names}")
        variant = BUILTIN[name]
        run = variant.run_name(self.epochs, self.seed)
        run = run if held_out is None else f"{run}-without-{held_out}"
        path = train_variant(
            variant,
            self.held_out_manifest(held_out),
            self.runs_dir / run,
            epochs=self.epochs,
            seed=self.seed,
            device=self.device,
            feature_cache=self.feature_cache,
            progress=False,
        )
        return load_detector(path, device=self.device)

    @cache  # noqa: B019
    def split(self, name: str, size: int) -> SplitData:
        """Split ``name`` of the protocol at ``size`` x ``size``, on the device."""
        part = self.manifest.split(name)
        images = load_images(list(part.paths), size=size).to(self.device)
        frame = part.frame.reset_index(drop=True)
        return SplitData(images, part.labels, part.attack_types, frame, part.root)

    @cache  # noqa: B019
    def dev_scores(self, name: str) -> np.ndarray:
        """Clean dev-split scores of detector ``name`` (they fix its threshold)."""
        detector = self.detector(name)
        return score_images(detector, self.split("dev", detector.image_size).images)


def manifest_key(manifest: Manifest) -> str:
    """Short digest naming a manifest's runs folder (its rows and root)."""
    text = manifest.frame.to_csv(index=False) + str(manifest.root)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
