"""Robustness results on disk: the checks table, FaceCat-vs-CDCN comparison and curves.

:func:`write_results` merges a session's records into ``checks.csv`` (a later run of the
same check replaces its row, other checks' rows are kept, so ``-k jpeg`` and ``-k
gaussian_blur`` sessions add up), then rebuilds from that table the AUC comparison per
transformation and severity (with the relative improvement of the first detector over the
second) and one degradation-curve figure per transformation. Every file is written
atomically.
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

from facecat.checkpoints import atomic_write

CHECKS_NAME = "checks.csv"
COMPARISON_NAME = "auc_comparison.csv"


def merge_records(existing: pd.DataFrame | None, records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """``existing`` rows with the rows of re-run checks replaced by the new ``records``."""
    new = pd.DataFrame(list(records))
    if existing is None or existing.empty:
        return new.reset_index(drop=True)
    kept = existing[~existing["id"].isin(new["id"])]
    return pd.concat([kept, new], ignore_index=True)


def auc_comparison(checks: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """AUC of two detectors per transformation and severity, and the relative improvement.

    Returns:
        Columns case, severity, ``auc_<first>``, its CI, ``auc_<second>``, its CI, and
        ``relative_improvement`` = (AUC first - AUC second) / AUC second.
    """
    transform = checks[checks["suite"] == "transform"]
    columns = ["case", "severity", "auc", "auc_ci_low", "auc_ci_high"]
    a = transform[transform["detector"] == first][columns]
    b = transform[transform["detector"] == second][columns]
    table = a.merge(b, on=["case", "severity"], suffixes=(f"_{first}", f"_{second}"))
    table = table.rename(
        columns={
            f"{stat}_{name}": f"{stat.replace('auc', f'auc_{name}', 1)}"
            for stat in ("auc", "auc_ci_low", "auc_ci_high")
            for name in (first, second)
        }
    )
    table["relative_improvement"] = (table[f"auc_{first}"] - table[f"auc_{second}"]) / table[
        f"auc_{second}"
    ]
    return table.sort_values(["case", "severity"]).reset_index(drop=True)


def plot_curve(checks: pd.DataFrame, case: str, path: Path) -> Path:
    """AUC vs severity of every detector under one transformation, with CI bands."""
    data = checks[(checks["suite"] == "transform") & (checks["case"] == case)]
    data = data.sort_values("severity")
    figure, axis = plt.subplots(figsize=(5.5, 4))
    palette = sns.color_palette(n_colors=data["detector"].nunique())
    for colour, (detector, part) in zip(palette, data.groupby("detector", sort=True), strict=True):
        axis.plot(part["severity"], part["auc"], marker="o", color=colour, label=detector)
        axis.fill_between(
            part["severity"], part["auc_ci_low"], part["auc_ci_high"], color=colour, alpha=0.2
        )
    axis.set(
        xlabel="severity (0 = clean)",
        ylabel="AUC (test split)",
        ylim=(0, 1.02),
        title=f"{case}: AUC under increasing severity",
    )
    axis.set_xticks(range(int(data["severity"].max()) + 1))
    axis.legend(loc="lower left")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return path


def plot_adaptive(checks: pd.DataFrame, path: Path) -> Path:
    """Detection rate of adaptive adversarial faces vs the attacker's L-inf budget."""
    data = checks[checks["suite"] == "adaptive"].sort_values("severity")
    figure, axis = plt.subplots(figsize=(5.5, 4))
    sns.lineplot(data=data, x="severity", y="detection_rate", hue="detector", marker="o", ax=axis)
    axis.set(
        xlabel="attacker budget (L-inf, x/255)",
        ylabel="adversarial faces detected (dev threshold)",
        ylim=(0, 1.02),
        title="adaptive attacker with EOT",
    )
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return path


def write_results(
    records: Sequence[dict[str, Any]], out_dir: str | Path, *, compare: tuple[str, str]
) -> list[Path]:
    """Merge ``records`` into ``out_dir/checks.csv`` and rebuild the comparison and curves.

    Args:
        records: this session's check records.
        out_dir: the results folder (``results/robustness``).
        compare: the two detectors of the AUC comparison (first vs second).

    Returns:
        The files written.
    """
    out_dir = Path(out_dir)
    if not records:
        return []
    path = out_dir / CHECKS_NAME
    existing = pd.read_csv(path) if path.is_file() else None
    checks = merge_records(existing, records)
    checks = checks.sort_values(["suite", "case", "severity", "detector"]).reset_index(drop=True)
    atomic_write(path, lambda tmp: checks.to_csv(tmp, index=False))
    written = [path]
    comparison = auc_comparison(checks, *compare)
    if not comparison.empty:
        target = out_dir / COMPARISON_NAME
        atomic_write(target, lambda tmp: comparison.to_csv(tmp, index=False))
        written.append(target)
    for case in sorted(set(checks.loc[checks["suite"] == "transform", "case"])):
        written.append(plot_curve(checks, case, out_dir / f"curve_{case}.png"))
    if (checks["suite"] == "adaptive").any():
        written.append(plot_adaptive(checks, out_dir / "adaptive.png"))
    return written
