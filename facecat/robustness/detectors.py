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
import importlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from facecat.core.images import ImageFiles, load_images
from facecat.datasets.manifest import Manifest
from facecat.datasets.protocol import leave_one_type_out
from facecat.evaluation.evaluate import score_files, score_images
from facecat.experiments.variants import Variant, train_variant
from facecat.models.facecat import FaceCat
from facecat.models.registry import load_detector
from facecat.training.cache import FeatureCache
from facecat.training.facecat import FeatureSource, score_source

#: ``package.module:attribute``, the form that names a user's Python detector.
IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
#: The detectors the suites know by name.
BUILTIN = {"facecat": Variant("FaceCat", "facecat-small"), "cdcn": Variant("CDCN", "cdcn")}
#: Epochs of the unseen suite's leave-one-type-out trainings, where they differ from the
#: config's. CDCN trains its whole network from the images (about 60 s per epoch on the
#: embedded protocol, 2 CPU cores), so to fit 28 hold-outs in an hour it trains one epoch
#: instead of its 8 (on every type, one epoch reached dev AUC 0.71 against 0.89 after 8 on
#: the protocol before the capture stage): its unseen figures are those of an under-trained
#: CDCN. FaceCat trains only its head on cached backbone features and keeps its schedule.
HOLD_OUT_EPOCHS = {"cdcn": 1}


@dataclass(frozen=True)
class SplitData:
    """One split in memory: images on the device, labels, attack types and manifest rows."""

    images: Tensor
    labels: np.ndarray
    attack_types: np.ndarray
    frame: pd.DataFrame
    root: Path


def parse_detector_list(text: str) -> tuple[list[str], dict[str, str]]:
    """Names and sources of a ``name,name=source,...`` option value.

    A bare name is a built-in detector (trained on the protocol); ``name=source`` names a
    detector of your own, loaded by :func:`load_user_detector`.

    Returns:
        Every name in order, and the source of each name that gives one.
    """
    names, sources = [], {}
    for item in text.split(","):
        name, _, source = item.strip().partition("=")
        if not name:
            raise ValueError(f"empty detector name in {text!r}; expected name or name=source")
        names.append(name)
        if source:
            sources[name] = source
    return names, sources


class ScoresObject:
    """A user's object with ``scores(images)`` seen as a harness detector.

    The object must have ``scores(images)`` taking (N, 3, S, S) RGB in [0, 1] and returning
    N scores P(real) (a tensor, array or list), and ``image_size`` = S. Its scores come back
    as a float tensor on the images' device; a wrong shape is a clear error.
    """

    def __init__(self, wrapped: object, name: str) -> None:
        if not callable(getattr(wrapped, "scores", None)):
            raise TypeError(f"detector {name!r}: {type(wrapped).__name__} has no scores(images)")
        size = getattr(wrapped, "image_size", None)
        if not isinstance(size, int) or size < 1:
            raise TypeError(
                f"detector {name!r}: {type(wrapped).__name__}.image_size must be the input side "
                f"in pixels (a positive int), got {size!r}"
            )
        self.wrapped = wrapped
        self.name = name
        self.image_size = size

    def scores(self, images: Tensor) -> Tensor:
        """P(real) of a batch.

        Shape:
            images (N, 3, S, S) -> (N,)
        """
        with torch.no_grad():
            raw = self.wrapped.scores(images)
        if isinstance(raw, Tensor):
            out = raw.detach().float()
        else:
            out = torch.as_tensor(np.asarray(raw, dtype=np.float32))
        if out.shape != (len(images),):
            raise ValueError(
                f"detector {self.name!r}: scores() returned shape {tuple(out.shape)} for "
                f"{len(images)} images; expected ({len(images)},)"
            )
        return out.to(images.device)


def load_user_detector(name: str, source: str, device: torch.device) -> nn.Module | ScoresObject:
    """A user detector from ``source``: a detector file, a shipped detector's name, or
    ``module:attribute`` naming an object with ``scores(images)`` (a class or factory is
    called with no arguments).

    Raises:
        ValueError: when ``source`` is none of these.
    """
    if Path(source).exists() or not IMPORT_PATH.fullmatch(source):
        return load_detector(source, device=device)
    module_name, _, attribute = source.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"detector {name!r}: cannot import {source!r} ({error}); expected a detector file, "
            "a shipped detector name or module:attribute"
        ) from error
    if callable(target) and (isinstance(target, type) or not hasattr(target, "scores")):
        target = target()
    return ScoresObject(target, name)


class DetectorPool:
    """Detectors by name on one protocol, trained or loaded once.

    Args:
        manifest: the protocol (train, dev and test splits).
        runs_dir: where trained runs live (reused when the inputs match).
        feature_cache: FaceCat's backbone feature cache, shared by all runs.
        device: where detectors and images live.
        files: user detectors by name: their sources (:func:`load_user_detector`); a
            built-in name given a source (``cdcn=cdcn``: the shipped CDCN) is not trained.
        epochs: override the built-in detectors' epochs (hold-outs included; by default a
            hold-out trains for :data:`HOLD_OUT_EPOCHS` where that names the detector).
        seed: training seed.
    """

    def __init__(
        self,
        manifest: Manifest,
        runs_dir: Path,
        feature_cache: Path,
        *,
        device: torch.device,
        files: dict[str, str] | None = None,
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

    @property
    def names(self) -> list[str]:
        return [*(n for n in BUILTIN if n not in self.files), *self.files]

    def held_out_manifest(self, attack_type: str | None) -> Manifest:
        """The protocol, or its leave-one-type-out split when ``attack_type`` is given."""
        if attack_type is None:
            return self.manifest
        return leave_one_type_out(self.manifest, attack_type)

    def training_epochs(self, name: str, held_out: str | None) -> int | None:
        """Epochs of built-in ``name``'s training: the pool's override, else the hold-out
        schedule (:data:`HOLD_OUT_EPOCHS`) for a hold-out, else None (the config's)."""
        if self.epochs is not None or held_out is None:
            return self.epochs
        return HOLD_OUT_EPOCHS.get(name)

    @cache  # noqa: B019  (the pool lives for one pytest session)
    def detector(self, name: str, held_out: str | None = None) -> nn.Module | ScoresObject:
        """The detector ``name`` trained without ``held_out`` (None: on all types)."""
        if name in self.files:
            if held_out is not None:
                raise ValueError(
                    f"detector {name!r} is fixed; the unseen suite needs a trainable "
                    f"built-in detector ({sorted(BUILTIN)})"
                )
            return load_user_detector(name, self.files[name], self.device)
        if name not in BUILTIN:
            raise ValueError(f"unknown detector {name!r}; known: {self.names}")
        variant = BUILTIN[name]
        epochs = self.training_epochs(name, held_out)
        run = variant.run_name(epochs, self.seed)
        run = run if held_out is None else f"{run}-without-{held_out}"
        path = train_variant(
            variant,
            self.held_out_manifest(held_out),
            self.runs_dir / run,
            epochs=epochs,
            seed=self.seed,
            device=self.device,
            feature_cache=self.feature_cache,
            progress=False,
        )
        return load_detector(path, device=self.device)

    def file_scores(self, detector: nn.Module | ScoresObject, split: Manifest) -> np.ndarray:
        """P(real) of a split's image files; a FaceCat detector reads its backbone features
        from the feature cache (rows extracted once serve every leave-one-type-out split).

        Shape:
            -> (len(split),)
        """
        size = detector.image_size
        if not isinstance(detector, FaceCat):
            return score_files(detector, split.paths, size=size, device=self.device)
        images = ImageFiles(split.paths, size)
        rows = FeatureCache(self.feature_cache).features(
            detector.extractor,
            detector.backbone_digest(),
            images,
            device=self.device,
            progress=False,
        )
        return score_source(FeatureSource(rows, images, detector, self.device), len(split), 64)

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
