"""Runs a robustness check, records its figures whether it passes or not, then judges it.

Every check yields one record: detector, suite, case, severity, AUC, ACER, EER,
TDR@0.2%FDR (with bootstrap confidence intervals), the threshold (always fixed on the clean
dev split), the criterion, pass / fail and the seconds it took.

* **transform**: the detector trained on all types scores the transformed test split.
* **unseen**: the detector trained without one attack type scores the test split's bona
  fide faces and that type.
* **adaptive**: the test split's adversarial faces that fool the FR model are perturbed by
  the adaptive attacker (:mod:`facecat.robustness.adaptive`) within the budget; the record
  adds the detection rate at the dev threshold, the share still fooling the FR model, the
  attacker's settings and, per other detector of the session, the share of these faces it
  flags at its own dev threshold (transfer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from facecat.attacks import parse_adversarial_type
from facecat.core.images import load_images
from facecat.datasets.adversarial_faces import create_recognizer
from facecat.datasets.protocol import ADVERSARIAL_TYPES
from facecat.evaluation import metrics
from facecat.evaluation.evaluate import evaluate_scores, score_images
from facecat.robustness.adaptive import AttackSettings, adaptive_attack, differentiable_scores
from facecat.robustness.checks import Check, Criteria
from facecat.robustness.detectors import DetectorPool
from facecat.robustness.transforms import apply_transform

RECORD_METRICS = ("auc", "acer", "eer", "tdr_at_fdr", "apcer_max", "bpcer")


class Harness:
    """Runs checks on a :class:`DetectorPool` and keeps their records.

    Args:
        pool: the detectors and the protocol.
        criteria: pass criteria and expected failures.
        n_boot: bootstrap resamples of the confidence intervals.
        seed: seed of random transformations, bootstrap and the adaptive attacker.
        adaptive_limit: at most this many adversarial faces per adaptive check.
        split: the split transformation checks score: "test" (reporting) or "dev" (choosing
            a configuration without looking at the test split).
        protocol: the protocol's key; records are kept per (protocol, check).
        provenance: columns added to every record (facecat version, commit, torch, device,
            dtype, date: :func:`facecat.core.provenance.provenance`).
        attack: the adaptive attacker's settings (default :class:`AttackSettings`).
        transfer: detectors that also score each adaptive check's faces (transfer to them).
    """

    def __init__(
        self,
        pool: DetectorPool,
        criteria: Criteria,
        *,
        n_boot: int = 200,
        seed: int = 0,
        adaptive_limit: int = 64,
        split: str = "test",
        protocol: str = "unknown",
        provenance: dict[str, Any] | None = None,
        attack: AttackSettings | None = None,
        transfer: Sequence[str] = (),
    ) -> None:
        if split not in ("test", "dev"):
            raise ValueError(f"split must be 'test' or 'dev', got {split!r}")
        self.split = split
        self.protocol = protocol
        self.provenance = dict(provenance or {})
        self.attack = attack or AttackSettings()
        self.transfer = list(transfer)
        self.pool = pool
        self.criteria = criteria
        self.n_boot = n_boot
        self.seed = seed
        self.adaptive_limit = adaptive_limit
        self.records: list[dict[str, Any]] = []

    def run(self, check: Check) -> dict[str, Any]:
        """Measure ``check``, record it, print a one-line summary, then assert its criterion."""
        started = time.perf_counter()
        figures = self.measure(check)
        passed, criterion = self.criteria.verdict(check, figures["auc"])
        record = {
            "protocol": self.protocol,
            "id": check.id,
            "detector": check.detector,
            "suite": check.suite,
            "case": check.case,
            "severity": check.severity,
            "split": self.split if check.suite == "transform" else "test",
            **{k: v for k, v in figures.items() if "[" not in k},
            "criterion": criterion,
            "passed": passed,
            "expected_failure": self.criteria.expected_failure(check) or "",
            "seconds": time.perf_counter() - started,
            **self.provenance,
        }
        self.records.append(record)
        print(
            f"\n{check.id}: AUC {record['auc']:.4f} [{record['auc_ci_low']:.4f}, "
            f"{record['auc_ci_high']:.4f}]  ACER {record['acer']:.4f}  "
            f"TDR@0.2%FDR {record['tdr_at_fdr']:.4f}  ({record['seconds']:.1f} s)"
        )
        assert passed, f"{check.id}: AUC {record['auc']:.4f} fails {criterion}"
        return record

    def measure(self, check: Check) -> dict[str, Any]:
        """The figures of one check; subclasses add suites (:mod:`physical` does)."""
        measures = {
            "transform": self._transform,
            "unseen": self._unseen,
            "adaptive": self._adaptive,
        }
        if check.suite not in measures:
            raise ValueError(f"{type(self).__name__} does not run {check.suite!r} checks")
        return measures[check.suite](check)

    def _dev(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        detector = self.pool.detector(name)
        dev = self.pool.split("dev", detector.image_size)
        return self.pool.dev_scores(name), dev.labels

    def _transform(self, check: Check) -> dict[str, Any]:
        detector = self.pool.detector(check.detector)
        test = self.pool.split(self.split, detector.image_size)
        images = apply_transform(check.case, test.images, check.severity, seed=self.seed)
        dev_scores, dev_labels = self._dev(check.detector)
        return evaluate_scores(
            dev_scores,
            dev_labels,
            score_images(detector, images),
            test.labels,
            test.attack_types,
            n_boot=self.n_boot,
            seed=self.seed,
        )

    def _unseen(self, check: Check) -> dict[str, Any]:
        detector = self.pool.detector(check.detector, held_out=check.case)
        manifest = self.pool.held_out_manifest(check.case)
        dev, test = manifest.split("dev"), manifest.split("test")
        return evaluate_scores(
            self.pool.file_scores(detector, dev),
            dev.labels,
            self.pool.file_scores(detector, test),
            test.labels,
            test.attack_types,
            n_boot=self.n_boot,
        )

    def _adaptive(self, check: Check) -> dict[str, Any]:
        detector = self.pool.detector(check.detector)
        try:
            score = differentiable_scores(detector)
        except TypeError as error:
            pytest.skip(str(error))
        test = self.pool.split("test", detector.image_size)
        frame = test.frame
        if not {"source_path", "fr_success"} <= set(frame.columns):
            pytest.skip("the protocol's adversarial rows carry no source_path / fr_success")
        chosen = np.flatnonzero(
            frame["attack_type"].isin(ADVERSARIAL_TYPES).to_numpy()
            & (frame["fr_success"].astype(str) == "True").to_numpy()
        )[: self.adaptive_limit]
        if not len(chosen):
            pytest.skip("no adversarial test faces that fool the FR model")
        recognizer = create_recognizer("dlib", str(self.pool.device))
        modes = [parse_adversarial_type(t)[1] for t in frame["attack_type"].iloc[chosen]]
        reference_paths = [
            row["target_path"] if mode == "impersonation" else row["source_path"]
            for mode, (_, row) in zip(modes, frame.iloc[chosen].iterrows(), strict=True)
        ]
        with torch.no_grad():
            references = recognizer(
                load_images([test.root / Path(p) for p in reference_paths], size=None).to(
                    self.pool.device
                )
            )
        dev_scores, dev_labels = self._dev(check.detector)
        threshold = metrics.choose_threshold(dev_scores, dev_labels, "eer")
        adversarial = adaptive_attack(
            score,
            recognizer,
            test.images[chosen],
            references,
            modes,
            eps=check.severity / 255,
            threshold=threshold,
            settings=self.attack,
            seed=self.seed,
        )
        with torch.no_grad():
            same = recognizer.same_identity(recognizer(adversarial), references).cpu()
        fooled = same == torch.tensor([mode == "impersonation" for mode in modes])
        bona_fide = np.flatnonzero(test.labels == 1)
        scores = np.concatenate(
            [score_images(detector, test.images[bona_fide]), score_images(detector, adversarial)]
        )
        labels = np.concatenate([test.labels[bona_fide], np.zeros(len(chosen), dtype=int)])
        types = np.concatenate([test.attack_types[bona_fide], test.attack_types[chosen]])
        figures = evaluate_scores(
            dev_scores, dev_labels, scores, labels, types, n_boot=self.n_boot, seed=self.seed
        )
        attacked = scores[len(bona_fide) :]
        figures["detection_rate"] = float((attacked < figures["threshold"]).mean())
        figures["fr_success_kept"] = float(fooled.float().mean())
        figures["n_adversarial"] = len(chosen)
        figures["attack"] = self.attack.describe()
        for other in self.transfer:
            if other != check.detector:
                figures[f"transfer_detection_{other}"] = self._transfer(other, adversarial)
        return figures

    def _transfer(self, name: str, images: Tensor) -> float:
        """Share of ``images`` that detector ``name`` flags at its own dev threshold."""
        detector = self.pool.detector(name)
        dev_scores, dev_labels = self._dev(name)
        threshold = metrics.choose_threshold(dev_scores, dev_labels, "eer")
        size = detector.image_size
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        return float((score_images(detector, images) < threshold).mean())
