"""The robustness harness extended with the physical suite.

:class:`PhysicalHarness` runs the ``physical`` checks (``facecat-physical``,
``cdcn-physical-jpeg-sev3``) beside the harness's own suites: the detector trained on the
protocol (which holds no physical data) scores the physical set's attack photographs and
bona fide faces, clean or transformed by a robustness transformation, at the threshold fixed
on its clean dev split. Bona fide faces are the captured set's own when it has them, else the
protocol's test-split bona fide faces. The clean checks keep their per-image scores for the
ROC plot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from facecat.core.images import load_images
from facecat.datasets.manifest import Manifest
from facecat.evaluation.evaluate import evaluate_scores, score_images
from facecat.robustness.checks import Check, Criteria
from facecat.robustness.detectors import DetectorPool
from facecat.robustness.harness import Harness
from facecat.robustness.transforms import apply_transform

__all__ = ["PhysicalHarness"]


class PhysicalHarness(Harness):
    """A :class:`facecat.robustness.harness.Harness` that also runs physical checks.

    Args:
        pool: the detectors and the protocol they are trained on.
        criteria: pass criteria and expected failures.
        physical: the physical set (attack rows; bona fide rows optional).
        n_boot: bootstrap resamples of the confidence intervals.
        seed: seed of random transformations and bootstrap.
        protocol, provenance: as for :class:`facecat.robustness.harness.Harness`.
    """

    def __init__(
        self,
        pool: DetectorPool,
        criteria: Criteria,
        physical: Manifest,
        *,
        n_boot: int = 200,
        seed: int = 0,
        protocol: str = "unknown",
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            pool, criteria, n_boot=n_boot, seed=seed, protocol=protocol, provenance=provenance
        )
        self.physical = physical
        self.scores: dict[str, pd.DataFrame] = {}
        self._images: dict[int, tuple[Tensor, np.ndarray, np.ndarray, list[str]]] = {}

    def measure(self, check: Check) -> dict[str, Any]:
        if check.suite != "physical":
            return super().measure(check)
        detector = self.pool.detector(check.detector)
        images, labels, types, paths = self._evaluation_set(detector.image_size)
        if check.case != "clean":
            images = apply_transform(check.case, images, check.severity, seed=self.seed)
        scores = score_images(detector, images)
        dev_scores, dev_labels = self._dev(check.detector)
        figures = evaluate_scores(
            dev_scores, dev_labels, scores, labels, types, n_boot=self.n_boot, seed=self.seed
        )
        figures["n_attack"], figures["n_bona_fide"] = int((labels == 0).sum()), int(labels.sum())
        if check.case == "clean":
            self.scores[check.detector] = pd.DataFrame(
                {
                    "detector": check.detector,
                    "split": "test",
                    "path": paths,
                    "label": labels,
                    "attack_type": types,
                    "score": scores,
                }
            )
        return figures

    def _evaluation_set(self, size: int) -> tuple[Tensor, np.ndarray, np.ndarray, list[str]]:
        """Attack photographs + bona fide faces at ``size``: images, labels, types, paths."""
        if size not in self._images:
            physical = self.physical
            attacks = physical.filter(physical.labels == 0)
            parts = [(load_images(attacks.paths, size=size), attacks)]
            if (physical.labels == 1).any():
                bona_fide = physical.filter(physical.labels == 1)
                parts.append((load_images(bona_fide.paths, size=size), bona_fide))
            else:
                test = self.pool.split("test", size)
                keep = np.flatnonzero(test.labels == 1)
                bona_fide = self.pool.manifest.split("test")
                bona_fide = bona_fide.filter(bona_fide.labels == 1)
                parts.append((test.images[torch.as_tensor(keep)].cpu(), bona_fide))
            self._images[size] = (
                torch.cat([images.cpu() for images, _ in parts]).to(self.pool.device),
                np.concatenate([m.labels for _, m in parts]),
                np.concatenate([m.attack_types for _, m in parts]),
                [str(p) for _, m in parts for p in m.paths],
            )
        return self._images[size]
