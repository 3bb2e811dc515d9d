"""Seaborn figures drawn from the tidy result tables (plots read tables, never models).

Every function takes a table as the main job writes it, draws one figure and writes it
atomically as a PNG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import norm
from sklearn.metrics import det_curve, roc_curve

from facecat.core.checkpoints import atomic_write

#: Metric columns of a comparison table and their display names (all rates in [0, 1]).
METRICS = {
    "apcer_max": "APCER (max)",
    "bpcer": "BPCER",
    "acer": "ACER",
    "eer": "EER",
    "auc": "AUC",
    "tdr_at_fdr": "TDR@0.2%FDR",
}


def _save(figure: plt.Figure, path: str | Path) -> Path:
    """Lay out ``figure``, write it to ``path`` as a PNG (atomically) and close it."""
    figure.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return path


def long_metrics(table: pd.DataFrame, label: str = "detector") -> pd.DataFrame:
    """Wide metric table (one row per detector, ``<m>_ci_low/high`` columns) -> long form.

    Returns:
        Columns ``label``, metric, value, ci_low, ci_high (NaN where no interval exists).
    """
    rows = []
    for _, row in table.iterrows():
        for column, shown in METRICS.items():
            rows.append(
                {
                    label: row[label],
                    "metric": shown,
                    "value": row[column],
                    "ci_low": row.get(f"{column}_ci_low", np.nan),
                    "ci_high": row.get(f"{column}_ci_high", np.nan),
                }
            )
    return pd.DataFrame(rows)


def plot_comparison(table: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    """Grouped bars of every metric per detector with bootstrap CI whiskers.

    Args:
        table: one row per detector with a ``detector`` column and the :data:`METRICS`
            columns (plus optional CI columns).
        path: output PNG.
        title: figure title.
    """
    data = long_metrics(table)
    detectors = list(table["detector"])
    figure, axis = plt.subplots(figsize=(10, 4.5))
    sns.barplot(data=data, x="metric", y="value", hue="detector", hue_order=detectors, ax=axis)
    width = 0.8 / len(detectors)
    for index, detector in enumerate(detectors):
        part = data[data["detector"] == detector].reset_index(drop=True)
        centres = np.arange(len(part)) - 0.4 + width * (index + 0.5)
        low = (part["value"] - part["ci_low"]).clip(lower=0)
        high = (part["ci_high"] - part["value"]).clip(lower=0)
        axis.errorbar(
            centres, part["value"], yerr=[low, high], fmt="none", ecolor="black", capsize=2
        )
    axis.set(ylim=(0, 1.2), xlabel="", ylabel="rate (test split, dev threshold)", title=title)
    axis.legend(loc="upper center", ncol=len(detectors), fontsize="small")
    return _save(figure, path)


def plot_roc(scores: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    """ROC curves (attack detection rate vs bona fide rejection rate) per detector.

    Args:
        scores: per-image rows with ``detector``, ``split``, ``label`` (1 = bona fide) and
            ``score`` (P(real)); only the test split is drawn.
        path: output PNG.
        title: figure title.
    """
    figure, axis = plt.subplots(figsize=(5, 5))
    test = scores[scores["split"] == "test"]
    for detector, part in test.groupby("detector", sort=False):
        bpcer, tdr, _ = roc_curve(1 - part["label"], 1 - part["score"])
        axis.plot(bpcer, tdr, label=detector)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set(
        xscale="log",
        xlim=(1e-3, 1),
        ylim=(0, 1.01),
        xlabel="bona fide rejected (false detection rate)",
        ylabel="attacks detected (TDR)",
        title=title,
    )
    axis.legend(loc="upper left", fontsize="small")
    return _save(figure, path)


#: Error rates marked on the normal-deviate axes of a DET plot.
DET_TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8)


def plot_det(scores: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    """DET curves (APCER vs BPCER on normal-deviate axes, ISO/IEC 30107-3) per detector.

    Args:
        scores: per-image rows as for :func:`plot_roc`; only the test split is drawn.
        path: output PNG.
        title: figure title.
    """
    figure, axis = plt.subplots(figsize=(5, 5))
    test = scores[scores["split"] == "test"]
    low, high = DET_TICKS[0] / 2, 1 - DET_TICKS[0] / 2
    for detector, part in test.groupby("detector", sort=False):
        bpcer, apcer, _ = det_curve(1 - part["label"], 1 - part["score"])
        axis.plot(
            norm.ppf(np.clip(bpcer, low, high)), norm.ppf(np.clip(apcer, low, high)), label=detector
        )
    ticks = norm.ppf(DET_TICKS)
    labels = [f"{t:g}" for t in DET_TICKS]
    axis.set_xticks(ticks, labels)
    axis.set_yticks(ticks, labels)
    axis.plot(ticks, ticks, color="grey", linestyle=":", linewidth=1)
    axis.set(
        xlim=(norm.ppf(low), norm.ppf(high)),
        ylim=(norm.ppf(low), norm.ppf(high)),
        xlabel="BPCER (bona fide rejected)",
        ylabel="APCER (attacks accepted)",
        title=title,
    )
    axis.legend(loc="upper right", fontsize="small")
    return _save(figure, path)


def plot_per_type(per_type: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    """Heat map of APCER per attack type (rows) and detector (columns).

    Args:
        per_type: long rows with ``detector``, ``attack_type`` and ``apcer``.
        path: output PNG.
        title: figure title.
    """
    grid = per_type.pivot(index="attack_type", columns="detector", values="apcer")
    grid = grid[list(dict.fromkeys(per_type["detector"]))]
    figure, axis = plt.subplots(figsize=(1.6 * grid.shape[1] + 3, 0.32 * len(grid) + 1.5))
    sns.heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="rocket_r", ax=axis)
    axis.set(xlabel="", ylabel="", title=title)
    return _save(figure, path)


def plot_feature_probe(probe: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    """Heat maps of linear-probe dev AUC per timestep (rows) and decoder block (columns),
    one panel per backbone; the chosen cell of each panel is outlined.

    Args:
        probe: rows with ``backbone``, ``timestep``, ``block``, ``dev_auc`` and ``chosen``.
        path: output PNG.
        title: figure title.
    """
    backbones = list(dict.fromkeys(probe["backbone"]))
    blocks = probe["block"].nunique()
    figure, axes = plt.subplots(
        1,
        len(backbones),
        figsize=(0.7 * blocks * len(backbones) + 2, 0.5 * probe["timestep"].nunique() + 2.2),
        squeeze=False,
    )
    for axis, backbone in zip(axes[0], backbones, strict=True):
        part = probe[probe["backbone"] == backbone]
        grid = part.pivot(index="timestep", columns="block", values="dev_auc")
        sns.heatmap(
            grid, annot=True, fmt=".2f", vmin=0.5, vmax=1, cmap="viridis", cbar=False, ax=axis
        )
        chosen = part[part["chosen"]].iloc[0]
        row = list(grid.index).index(chosen["timestep"])
        column = list(grid.columns).index(chosen["block"])
        axis.add_patch(plt.Rectangle((column, row), 1, 1, fill=False, edgecolor="red", lw=2))
        axis.set(xlabel="decoder block", ylabel="timestep", title=f"{backbone} backbone")
    figure.suptitle(title)
    return _save(figure, path)
