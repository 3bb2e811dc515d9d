"""The detectors the jobs compare and how one is trained on a protocol.

A :class:`Variant` is a packaged detector config plus overrides and options ("FaceCat w/o
TG" is ``facecat-small`` with ``text_guided: false``); :func:`train_variant` trains one on a
protocol's train split in a run folder named by its resolved config, resuming or reusing a
run of the same inputs. :func:`embedded_p1` is the embedded protocol with all 28 types, the
protocol every job and suite trains on by default.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facecat.core.checkpoints import CheckpointError
from facecat.datasets.adversarial_faces import protocol_generators
from facecat.datasets.manifest import Manifest
from facecat.datasets.protocol import EmbeddedProtocol, build_embedded
from facecat.models.config import merge, read_config_dict
from facecat.models.registry import create_detector
from facecat.training.detector import train_detector
from facecat.training.loop import CHECKPOINT_NAME

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One row of the comparison: a packaged detector config plus overrides and options."""

    label: str
    config: str
    overrides: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def run_name(self, epochs: int | None, seed: int) -> str:
        """Folder name of this variant's training run: config name + digest of the resolved
        config, options, epochs and seed (a changed config trains in a new folder)."""
        resolved = merge(read_config_dict(self.config), self.overrides)
        text = json.dumps([resolved, self.options, epochs, seed], sort_keys=True, default=str)
        return f"{self.config}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def run_dir(self, cache_dir: Path, protocol: str, epochs: int | None, seed: int) -> Path:
        """This variant's training run on the protocol folder named ``protocol``:
        ``cache_dir/runs/<protocol>/<run_name>`` (shared by the main job and the shipped
        detectors, so either reuses the other's run)."""
        return Path(cache_dir) / "runs" / protocol / self.run_name(epochs, seed)


#: FaceCat with text guidance, the two ablations of the paper (Table 4 and section 5.4),
#: and the CDCN baseline.
VARIANTS = (
    Variant("FaceCat", "facecat-small"),
    Variant("FaceCat w/o TG", "facecat-small", overrides={"text_guided": False}),
    Variant("FaceCat, untrained FDM", "facecat-small", options={"unet_weights": "random"}),
    Variant("CDCN", "cdcn"),
)


def embedded_p1(
    cache_dir: Path, *, seed: int, bona_fide: str | Path | None, device: str | torch.device
) -> EmbeddedProtocol:
    """The embedded protocol with all 28 types, adversarial faces crafted against dlib."""
    return build_embedded(
        cache_dir,
        seed=seed,
        bona_fide=bona_fide,
        adversarial=protocol_generators("dlib", str(device)),
    )


def train_variant(
    variant: Variant,
    manifest: Manifest,
    run_dir: Path,
    *,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    feature_cache: Path | None = None,
    progress: bool = True,
) -> Path:
    """Train ``variant`` on ``manifest``'s train split (dev selects the epoch) in ``run_dir``.

    A finished or interrupted run with the same inputs in ``run_dir`` is resumed; a run of
    other inputs (a stale cache entry) is trained again from scratch. FaceCat
    variants share backbone features through ``feature_cache`` (default: one per run).

    Returns:
        The saved detector file.
    """
    detector = create_detector(
        variant.config, seed=seed, device=device, **variant.overrides, **variant.options
    )

    def train() -> Path:
        return train_detector(
            detector,
            manifest.split("train"),
            manifest.split("dev"),
            run_dir,
            epochs=epochs,
            seed=seed,
            device=device,
            cache_dir=feature_cache,
            progress=progress,
        ).detector_path

    try:
        return train()
    except CheckpointError as error:  # a cached run of other inputs: rebuild, never reuse
        log.warning("%s; training %s again from scratch", error, run_dir)
        (run_dir / CHECKPOINT_NAME).unlink()
        return train()
