"""Physical-suite results on disk: the Table-7-style comparison, checks, scores and plots.

:func:`write_physical_results` merges a session's physical records into ``checks.csv`` (a
re-run check replaces its row) and rebuilds from it ``table7.csv`` (paper Table 7's shape:
one row per detector on the clean physical set, ACER, EER, TDR@0.2%FDR, AUC and the rest
with bootstrap CIs), ``table7.png``, ``degradation.png`` (AUC on the physical set vs
severity of each robustness transformation), and from the clean checks' per-image scores
``scores.csv``, ``roc.png`` and ``det.png``. Every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from facecat.core.checkpoints import atomic_write
from facecat.evaluation.plots import plot_comparison, plot_det, plot_roc
from facecat.robustness.report import merge_records, session_rows

__all__ = ["TABLE7_COLUMNS", "plot_degradation", "table7", "write_physical_results"]

#: The columns of ``table7.csv``, each metric followed by its CI where it has one.
TABLE7_COLUMNS = (
    "detector",
    "n_attack",
    "n_bona_fide",
    "threshold",
    "threshold_source",
    *(
        f"{metric}{suffix}"
        for metric in ("acer", "eer", "tdr_at_fdr", "auc", "apcer_max", "bpcer")
        for suffix in ("", "_ci_low", "_ci_high")
    ),
    "fdr",
)


def table7(checks: pd.DataFrame) -> pd.DataFrame:
    """One row per detector on the clean physical set (paper Table 7's shape)."""
    clean = checks[(checks["suite"] == "physical") & (checks["case"] == "clean")]
    return clean[[c for c in TABLE7_COLUMNS if c in clean]].reset_index(drop=True)


def plot_degradation(checks: pd.DataFrame, path: Path) -> Path:
    """AUC on the physical set vs severity, one panel per transformation, CI bands."""
    physical = checks[checks["suite"] == "physical"]
    clean = physical[physical["case"] == "clean"]
    cases = sorted(set(physical["case"]) - {"clean"})
    figure, axes = plt.subplots(
        1, max(1, len(cases)), figsize=(4.2 * max(1, len(cases)), 3.8), squeeze=False
    )
    detectors = sorted(set(physical["detector"]))
    palette = dict(zip(detectors, sns.color_palette(n_colors=len(detectors)), strict=True))
    for axis, case in zip(axes[0], cases or ["clean"], strict=False):
        data = pd.concat([clean, physical[physical["case"] == case]]).sort_values("severity")
        for detector, part in data.groupby("detector", sort=True):
            colour = palette[detector]
            axis.plot(part["severity"], part["auc"], marker="o", color=colour, label=detector)
            axis.fill_between(
                part["severity"], part["auc_ci_low"], part["auc_ci_high"], color=colour, alpha=0.2
            )
        axis.set(xlabel="severity (0 = clean)", ylabel="AUC (physical set)", ylim=(0, 1.02))
        axis.set_title(case, fontsize=10)
        axis.legend(loc="lower left")
    figure.suptitle("Held-out 3D-printed adversarial faces under robustness transformations")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return path


def write_physical_results(
    records: Sequence[dict[str, Any]], scores: Sequence[pd.DataFrame], out_dir: str | Path
) -> list[Path]:
    """Merge ``records`` into ``out_dir/checks.csv``; rebuild the table, scores and plots.

    Args:
        records: this session's check records.
        scores: per-image scores of this session's clean physical checks.
        out_dir: the results folder (``results/physical``).

    Returns:
        The files written.
    """
    out_dir = Path(out_dir)
    if not records:
        return []
    path = out_dir / "checks.csv"
    existing = pd.read_csv(path) if path.is_file() else None
    checks = merge_records(existing, records)
    atomic_write(path, lambda tmp: checks.to_csv(tmp, index=False))
    written = [path]
    checks = session_rows(checks, records)
    table = table7(checks)
    if not table.empty:
        target = out_dir / "table7.csv"
        atomic_write(target, lambda tmp: table.to_csv(tmp, index=False))
        title = "Held-out 3D-printed adversarial faces (paper Table 7's shape), dev thresholds"
        written += [target, plot_comparison(table, out_dir / "table7.png", title=title)]
    if scores:
        score_path = out_dir / "scores.csv"
        existing_scores = pd.read_csv(score_path) if score_path.is_file() else None
        new = pd.concat(scores, ignore_index=True)
        if existing_scores is not None:
            kept = existing_scores[~existing_scores["detector"].isin(new["detector"])]
            new = pd.concat([kept, new], ignore_index=True)
        atomic_write(score_path, lambda tmp: new.to_csv(tmp, index=False))
        title = "ROC on the held-out physical set"
        written += [score_path, plot_roc(new, out_dir / "roc.png", title=title)]
        title = "DET on the held-out physical set"
        written.append(plot_det(new, out_dir / "det.png", title=title))
    if (checks["case"] != "clean").any():
        written.append(plot_degradation(checks, out_dir / "degradation.png"))
    return written
