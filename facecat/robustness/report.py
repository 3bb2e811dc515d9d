"""Robustness results on disk: the checks table, FaceCat-vs-CDCN comparison and curves.

:func:`write_results` merges a session's records into ``checks.csv``: rows are keyed by
(protocol, check id), so a later run of the same check on the same protocol replaces its row
while other checks' rows and other protocols' rows are kept (``-k jpeg`` and ``-k
gaussian_blur`` sessions add up; a run on your own manifest sits beside the embedded one).
From the session protocol's rows it then rebuilds the AUC comparison per transformation and
severity (with the relative improvement of the first detector over the second), the mean AUC
over severities 1-5 per transformation (the summary robustness benchmarks report) and one
degradation-curve figure per transformation. Every file is written atomically.
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
from facecat.datasets.protocol import attack_family

CHECKS_NAME = "checks.csv"
COMPARISON_NAME = "auc_comparison.csv"
SUMMARY_NAME = "severity_summary.csv"
TRANSFER_NAME = "adaptive_transfer.csv"
UNSEEN_NAME = "unseen_summary.csv"
#: Records of older versions carry no protocol column.
UNKNOWN_PROTOCOL = "unknown"
SORT_COLUMNS = ["protocol", "suite", "case", "severity", "detector"]


def _record_keys(frame: pd.DataFrame) -> pd.Series:
    return frame["protocol"].astype(str) + "\x00" + frame["id"].astype(str)


def merge_records(existing: pd.DataFrame | None, records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """``existing`` rows with the rows of re-run (protocol, check) pairs replaced by
    ``records``, sorted by protocol, suite, case, severity and detector."""
    new = pd.DataFrame(list(records))
    if "protocol" not in new:
        new.insert(0, "protocol", UNKNOWN_PROTOCOL)
    if existing is not None and not existing.empty:
        if "protocol" not in existing:
            existing = existing.assign(protocol=UNKNOWN_PROTOCOL)
        kept = existing[~_record_keys(existing).isin(_record_keys(new))]
        new = pd.concat([kept, new], ignore_index=True)
    return new.sort_values(SORT_COLUMNS).reset_index(drop=True)


def session_rows(checks: pd.DataFrame, records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The rows of ``checks`` on the protocol of this session's ``records``."""
    protocol = records[0].get("protocol", UNKNOWN_PROTOCOL)
    return checks[checks["protocol"] == protocol]


def severity_summary(checks: pd.DataFrame) -> pd.DataFrame:
    """Mean AUC over severities 1-5 per detector and transformation, next to the clean AUC.

    Returns:
        Columns detector, case, ``auc_clean``, ``mean_auc_sev1_5``, ``min_auc_sev1_5`` and
        the number of severities averaged.
    """
    transform = checks[checks["suite"] == "transform"]
    rows = []
    for (detector, case), part in transform.groupby(["detector", "case"], sort=True):
        graded = part[part["severity"] > 0]["auc"]
        clean = part[part["severity"] == 0]["auc"]
        rows.append(
            {
                "detector": detector,
                "case": case,
                "auc_clean": float(clean.iloc[0]) if len(clean) else float("nan"),
                "mean_auc_sev1_5": float(graded.mean()) if len(graded) else float("nan"),
                "min_auc_sev1_5": float(graded.min()) if len(graded) else float("nan"),
                "n_severities": len(graded),
            }
        )
    return pd.DataFrame(rows)


def auc_comparison(checks: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """AUC of two detectors per transformation and severity, and the relative improvement.

    Returns:
        Columns case, severity, ``auc_<first>``, its CI, ``auc_<second>``, its CI, and
        ``relative_improvement`` = (AUC first - AUC second) / AUC second.
    """
    if first == second:
        raise ValueError(f"an AUC comparison needs two different detectors, got {first!r} twice")
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


def auc_axis_label(checks: pd.DataFrame) -> str:
    """Title of an AUC axis, naming the split(s) the checks were scored on."""
    splits = sorted(checks["split"].dropna().unique()) if "split" in checks else []
    return f"AUC ({' + '.join(splits)} split)" if splits else "AUC"


def plot_curve(checks: pd.DataFrame, case: str, path: Path) -> Path:
    """AUC vs severity of every detector under one transformation, with CI bands; the axis
    names the split the checks were scored on."""
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
        ylabel=auc_axis_label(data),
        ylim=(0, 1.02),
        title=f"{case}: AUC under increasing severity",
    )
    axis.set_xticks(range(int(data["severity"].max()) + 1))
    axis.legend(loc="lower left")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return path


def transfer_table(checks: pd.DataFrame) -> pd.DataFrame:
    """Detection of adaptive adversarial faces by the detector they were crafted against and
    by every other detector of the session (transfer), per budget.

    Returns:
        Columns crafted_against, scored_by, budget (x/255), detection_rate, fr_success_kept.
    """
    adaptive = checks[checks["suite"] == "adaptive"]
    prefix = "transfer_detection_"
    rows = []
    for _, row in adaptive.iterrows():
        scored = {row["detector"]: row["detection_rate"]}
        scored |= {
            column.removeprefix(prefix): row[column]
            for column in adaptive.columns
            if column.startswith(prefix) and pd.notna(row[column])
        }
        rows += [
            {
                "crafted_against": row["detector"],
                "scored_by": name,
                "budget": int(row["severity"]),
                "detection_rate": float(rate),
                "fr_success_kept": float(row["fr_success_kept"]),
            }
            for name, rate in scored.items()
        ]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values(["crafted_against", "scored_by", "budget"])


def unseen_summary(checks: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-type-out AUC per detector and family: presentation attacks (the paper's
    protocol 2) and adversarial faces (protocol 3), over the held-out types run so far.

    Returns:
        Columns detector, family, n_types, mean_auc, min_auc, worst_type.
    """
    unseen = checks[checks["suite"] == "unseen"]
    rows = []
    for (detector, family), part in unseen.groupby(
        ["detector", unseen["case"].map(attack_family)], sort=True
    ):
        worst = part.loc[part["auc"].idxmin()]
        rows.append(
            {
                "detector": detector,
                "family": family,
                "n_types": len(part),
                "mean_auc": float(part["auc"].mean()),
                "min_auc": float(worst["auc"]),
                "worst_type": worst["case"],
            }
        )
    return pd.DataFrame(rows)


def plot_unseen(checks: pd.DataFrame, path: Path) -> Path:
    """Heat map of the leave-one-type-out AUC: held-out type x detector."""
    unseen = checks[checks["suite"] == "unseen"]
    grid = unseen.pivot_table(index="case", columns="detector", values="auc")
    figure, axis = plt.subplots(figsize=(2.5 + 1.2 * grid.shape[1], 0.3 * len(grid) + 1.5))
    sns.heatmap(grid, annot=True, fmt=".2f", vmin=0.5, vmax=1, cmap="rocket", ax=axis)
    axis.set(xlabel="detector", ylabel="held-out type", title="unseen attack types: test AUC")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return path


def plot_adaptive(checks: pd.DataFrame, path: Path) -> Path:
    """Detection rate and FR success of adaptive adversarial faces vs the L-inf budget."""
    data = checks[checks["suite"] == "adaptive"].sort_values("severity")
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, column, label in (
        (axes[0], "detection_rate", "adversarial faces detected (dev threshold)"),
        (axes[1], "fr_success_kept", "faces still fooling the FR model"),
    ):
        sns.lineplot(data=data, x="severity", y=column, hue="detector", marker="o", ax=axis)
        axis.set(xlabel="attacker budget (L-inf, x/255)", ylabel=label, ylim=(0, 1.02))
        axis.set_xscale("symlog", linthresh=1)
        budgets = sorted(data["severity"].unique())
        axis.set_xticks(budgets, [str(b) for b in budgets])
    attacks = data["attack"].dropna() if "attack" in data else pd.Series(dtype=str)
    settings = f" ({attacks.iloc[0]})" if len(attacks) else ""
    figure.suptitle(f"adaptive attacker with EOT{settings}")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return path


def write_results(
    records: Sequence[dict[str, Any]], out_dir: str | Path, *, compare: tuple[str, str] | None
) -> list[Path]:
    """Merge ``records`` into ``out_dir/checks.csv`` and rebuild the comparison and curves.

    Args:
        records: this session's check records.
        out_dir: the results folder (``results/robustness``).
        compare: the two detectors of the AUC comparison (first vs second); None for no
            comparison (a session of one detector).

    Returns:
        The files written.
    """
    out_dir = Path(out_dir)
    if not records:
        return []
    path = out_dir / CHECKS_NAME
    existing = pd.read_csv(path) if path.is_file() else None
    checks = merge_records(existing, records)
    atomic_write(path, lambda tmp: checks.to_csv(tmp, index=False))
    written = [path]
    current = session_rows(checks, records)
    tables = {
        COMPARISON_NAME: auc_comparison(current, *compare) if compare else pd.DataFrame(),
        SUMMARY_NAME: severity_summary(current),
        TRANSFER_NAME: transfer_table(current),
        UNSEEN_NAME: unseen_summary(current),
    }
    for name, table in tables.items():
        if not table.empty:
            atomic_write(out_dir / name, lambda tmp, t=table: t.to_csv(tmp, index=False))
            written.append(out_dir / name)
    for case in sorted(set(current.loc[current["suite"] == "transform", "case"])):
        written.append(plot_curve(current, case, out_dir / f"curve_{case}.png"))
    if (current["suite"] == "unseen").any():
        written.append(plot_unseen(current, out_dir / "unseen.png"))
    if (current["suite"] == "adaptive").any():
        written.append(plot_adaptive(current, out_dir / "adaptive.png"))
    return written
