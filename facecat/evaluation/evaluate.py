"""Scoring and evaluation of any detector on a manifest, thresholds fixed on the dev split."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from facecat.core.distributed import current_world, gather_rows, shard_bounds
from facecat.core.images import ImageFiles
from facecat.datasets.manifest import Manifest
from facecat.evaluation import metrics
from facecat.models.registry import Detector

CI_METRICS = ("apcer_max", "bpcer", "acer", "eer", "auc", "tdr_at_fdr")


def score_files(
    detector: Detector,
    paths: Sequence[Path],
    *,
    size: int,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    resize: str = "resize",
    progress: bool = False,
) -> np.ndarray:
    """P(real) for image files, in order.

    Args:
        detector: anything with ``scores(images) -> P(real)``.
        paths: image files.
        size: the detector's input size (images are resized by ``resize``).
        batch_size: images per forward pass.
        device: where images are sent.
        resize: resize policy of :func:`facecat.core.images.load_image`.
        progress: show a progress bar.

    Returns:
        Scores of shape (N,).

    Raises:
        FloatingPointError: when the detector returns NaN/Inf, naming the batch and file.
    """
    device = torch.device(device)
    loader = DataLoader(
        ImageFiles(paths, size, resize), batch_size=batch_size, pin_memory=device.type == "cuda"
    )
    parts = []
    for images in tqdm(loader, desc="scoring", unit="batch", disable=not progress):
        scores = detector.scores(images.to(device, non_blocking=True)).float().cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(scores))
        if len(bad):
            first = sum(len(p) for p in parts) + int(bad[0])
            raise FloatingPointError(
                f"{len(bad)} non-finite score(s) in batch {len(parts)} (first file: "
                f"{paths[first]}); the detector's weights or features hold NaN/Inf"
            )
        parts.append(scores)
    return np.concatenate(parts) if parts else np.zeros(0)


def score_images(detector: Detector, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """P(real) for images already in memory (on the detector's device), in chunks.

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


def _metric_functions(threshold: float, fdr: float) -> dict[str, metrics.MetricFn]:
    def apcer_max(s: np.ndarray, y: np.ndarray, types: np.ndarray) -> float:
        return max(metrics.per_type_apcer(s, y, types, threshold).values())

    def bpcer(s: np.ndarray, y: np.ndarray, types: np.ndarray) -> float:
        return metrics.apcer_bpcer(s, y, threshold)[1]

    return {
        "apcer_max": apcer_max,
        "bpcer": bpcer,
        "acer": lambda s, y, t: (apcer_max(s, y, t) + bpcer(s, y, t)) / 2,
        "eer": lambda s, y, t: metrics.eer(s, y)[0],
        "auc": lambda s, y, t: metrics.auc(s, y),
        "tdr_at_fdr": lambda s, y, t: metrics.tdr_at_fdr(s, y, fdr),
    }


def evaluate_scores(
    dev_scores: np.ndarray | None,
    dev_labels: np.ndarray | None,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    test_types: np.ndarray,
    *,
    rule: str = "eer",
    oracle: bool = False,
    fdr: float = 0.002,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, object]:
    """One table row of test metrics at a dev-split threshold, with bootstrap CIs.

    Args:
        dev_scores: dev-split scores used to fix the threshold (ignored when ``oracle``).
        dev_labels: dev-split labels.
        test_scores: test-split scores.
        test_labels: test-split labels.
        test_types: test-split attack types.
        rule: threshold rule on the dev split: "eer", "bpcer=0.05" or "fixed=0.5".
        oracle: pick the ACER-minimising threshold on the test split instead; optimistic
            and labelled "oracle-test-acer" in the output.
        fdr: FDR of the TDR@FDR column.
        n_boot: bootstrap resamples for the confidence intervals (0 disables them).
        seed: bootstrap seed.

    Returns:
        Flat dict: the metrics report plus ``<metric>_ci_low`` / ``<metric>_ci_high``.
    """
    if oracle:
        threshold = metrics.oracle_threshold(test_scores, test_labels, test_types)
        source = "oracle-test-acer"
    elif rule.startswith("fixed="):
        threshold = metrics.choose_threshold(test_scores, test_labels, rule)
        source = rule
    else:
        if dev_scores is None or dev_labels is None:
            raise ValueError(f"threshold rule {rule!r} needs a dev split")
        threshold = metrics.choose_threshold(dev_scores, dev_labels, rule)
        source = f"dev-{rule}"
    report = metrics.evaluate(
        test_scores, test_labels, test_types, threshold, threshold_source=source, fdr=fdr
    )
    row = report.to_dict()
    if n_boot:
        for name, fn in _metric_functions(threshold, fdr).items():
            low, high = metrics.bootstrap_ci(
                fn,
                test_scores,
                test_labels,
                n_boot=n_boot,
                seed=seed,
                extra=[np.asarray(test_types)],
            )
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
    return row


def evaluate_detector(
    detector: Detector,
    manifest: Manifest,
    *,
    size: int,
    rule: str = "eer",
    oracle: bool = False,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    n_boot: int = 1000,
    progress: bool = False,
    scorer: Callable[[Sequence[Path]], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the dev and test splits of ``manifest`` and compute the metrics table.

    Args:
        scorer: P(real) of a list of image files, in place of :func:`score_files` (e.g.
            :func:`facecat.training.facecat.cached_scores`, which reuses cached features).

    Returns:
        ``(metrics table with one row, per-image scores with split/label/type)``.
    """
    test = manifest.split("test")
    needs_dev = not oracle and not rule.startswith("fixed=")
    dev = manifest.split("dev") if needs_dev else None
    score_rows = []
    scored = {}
    for split_name, split in (("dev", dev), ("test", test)):
        if split is None:
            continue
        if scorer is None:
            scores = score_files(
                detector,
                split.paths,
                size=size,
                batch_size=batch_size,
                device=device,
                progress=progress,
            )
        else:
            scores = scorer(split.paths)
        scored[split_name] = scores
        score_rows.append(
            pd.DataFrame(
                {
                    "path": [str(p) for p in split.paths],
                    "split": split_name,
                    "label": split.labels,
                    "attack_type": split.attack_types,
                    # float64 holds every float32 score exactly, so a CSV round trip
                    # compares with the threshold as the metrics did
                    "score": np.asarray(scores, dtype=np.float64),
                }
            )
        )
    row = evaluate_scores(
        scored.get("dev"),
        None if dev is None else dev.labels,
        scored["test"],
        test.labels,
        test.attack_types,
        rule=rule,
        oracle=oracle,
        n_boot=n_boot,
    )
    table = pd.DataFrame([{"detector": getattr(detector, "name", "detector")} | row])
    return table, pd.concat(score_rows, ignore_index=True)
