"""The headline comparison from per-image scores: AUC per attack family, paired differences.

Both tables read the scores table the main job writes (one row per detector and image with
``detector``, ``split``, ``label``, ``attack_type`` and ``score``); they never touch a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from facecat.datasets.protocol import ADVERSARIAL_TYPES, BONA_FIDE
from facecat.evaluation import metrics

#: The attack families of the paper's protocols 2 and 3.
FAMILIES = ("presentation attacks", "adversarial")


def family_of(attack_type: str) -> str:
    """ "adversarial" for the 14 adversarial types, "presentation attacks" otherwise."""
    return FAMILIES[1] if attack_type in ADVERSARIAL_TYPES else FAMILIES[0]


def _test_frame(scores: pd.DataFrame, detector: str) -> pd.DataFrame:
    part = scores[(scores["detector"] == detector) & (scores["split"] == "test")]
    return part.sort_values("path").reset_index(drop=True)


def family_auc(scores: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Test AUC of every detector on all attacks and on each family against all bona fide.

    Args:
        scores: per-image scores as the main job writes them.
        n_boot: bootstrap resamples of the intervals.
        seed: bootstrap seed.

    Returns:
        Rows ``detector, family, n_attack, auc, auc_ci_low, auc_ci_high``.
    """
    rows = []
    for detector in dict.fromkeys(scores["detector"]):
        test = _test_frame(scores, detector)
        families = test["attack_type"].map(family_of).where(test["label"] == 0, BONA_FIDE)
        for family in ("all", *FAMILIES):
            keep = (families != BONA_FIDE) if family == "all" else (families == family)
            part = test[keep | (test["label"] == 1)]
            s, y = part["score"].to_numpy(), part["label"].to_numpy()
            low, high = metrics.bootstrap_ci(metrics.auc, s, y, n_boot=n_boot, seed=seed)
            rows.append(
                {
                    "detector": detector,
                    "family": family,
                    "n_attack": int((y == 0).sum()),
                    "auc": metrics.auc(s, y),
                    "auc_ci_low": low,
                    "auc_ci_high": high,
                }
            )
    return pd.DataFrame(rows)


def paired_auc_differences(
    scores: pd.DataFrame,
    reference: str,
    others: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Test AUC of ``reference`` minus each other detector's, with paired bootstrap intervals.

    Both detectors are resampled on the same test images, so the interval is that of the
    difference, narrower than the two separate intervals suggest.

    Returns:
        Rows ``detector, versus, family, auc_difference, ci_low, ci_high, significant``
        (``significant``: the interval excludes 0).
    """
    ref = _test_frame(scores, reference)
    families = ref["attack_type"].map(family_of)
    rows = []
    for other in others:
        alt = _test_frame(scores, other)
        if not np.array_equal(ref["path"].to_numpy(), alt["path"].to_numpy()):
            raise ValueError(f"{reference} and {other} were not scored on the same test images")
        for family in ("all", *FAMILIES):
            in_family = (families == family) if family != "all" else ref["label"] == 0
            keep = (ref["label"] == 1) | in_family
            a, b = ref[keep], alt[keep]
            diff, low, high = metrics.paired_bootstrap_diff(
                metrics.auc,
                a["score"].to_numpy(),
                b["score"].to_numpy(),
                a["label"].to_numpy(),
                n_boot=n_boot,
                seed=seed,
            )
            rows.append(
                {
                    "detector": reference,
                    "versus": other,
                    "family": family,
                    "auc_difference": diff,
                    "ci_low": low,
                    "ci_high": high,
                    "significant": bool(low > 0 or high < 0),
                }
            )
    return pd.DataFrame(rows)


def bpcer_by_source(
    scores: pd.DataFrame, sources: pd.Series, thresholds: dict[str, float]
) -> pd.DataFrame:
    """BPCER of every detector on the dev and test bona fide faces of each source.

    A bona fide face is rejected when its score falls below the detector's threshold (fixed
    on the dev split), the rule of :func:`facecat.evaluation.metrics.apcer_bpcer`. The dev
    rows are what a configuration may be chosen on; the test rows are the result.

    Args:
        scores: per-image scores as the main job writes them.
        sources: the ``source`` column of the protocol manifest, indexed by ``path``.
        thresholds: each detector's dev-split threshold.

    Returns:
        Rows ``detector, split, source, n_bona_fide, rejected, bpcer, threshold``.
    """
    rows = []
    for detector, threshold in thresholds.items():
        for split in ("dev", "test"):
            part = scores[
                (scores["detector"] == detector)
                & (scores["split"] == split)
                & (scores["label"] == 1)
            ]
            origin = part["path"].map(sources)
            if origin.isna().any():
                missing = part.loc[origin.isna(), "path"].iloc[0]
                raise KeyError(f"bona fide {split} image {missing} has no source in the manifest")
            for source, group in part.groupby(origin, sort=True):
                rejected = int((group["score"] < threshold).sum())
                rows.append(
                    {
                        "detector": detector,
                        "split": split,
                        "source": source,
                        "n_bona_fide": len(group),
                        "rejected": rejected,
                        "bpcer": rejected / len(group),
                        "threshold": threshold,
                    }
                )
    return pd.DataFrame(rows)
