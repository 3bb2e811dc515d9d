"""Presentation-attack-detection metrics (ISO/IEC 30107-3, IARPA ODIN) in plain numpy.

Conventions used throughout:

* ``scores`` are detector outputs ``P(real)``; higher means more likely bona fide.
* ``labels`` are 1 for bona fide (live, the positive class) and 0 for attacks.
* A sample is *accepted* as bona fide when ``score >= threshold``.
* APCER = share of attacks accepted; BPCER = share of bona fide rejected;
  ACER = (APCER + BPCER) / 2. ISO/IEC 30107-3 takes the APCER as the maximum over attack
  species (presentation-attack-instrument types); the pooled value is reported alongside.
* ODIN wording: FDR = share of bona fide falsely flagged (= BPCER), TDR = share of attacks
  detected (= 1 - APCER).

Thresholds must be chosen on a development split (:func:`choose_threshold`) and applied
unchanged to the test split (:func:`evaluate`). :func:`oracle_threshold` exists only for
explicitly requested, clearly labelled optimistic numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MetricsError",
    "Report",
    "apcer_bpcer",
    "auc",
    "bootstrap_ci",
    "choose_threshold",
    "eer",
    "evaluate",
    "oracle_threshold",
    "paired_bootstrap_diff",
    "per_type_apcer",
    "roc_curve",
    "tdr_at_fdr",
    "threshold_at_bpcer",
]

_RULE_FORMS = "'eer', 'bpcer=<float in [0, 1)>' or 'fixed=<float>'"
# Absorbs float error in ``target * n`` (e.g. 0.29 * 100 = 28.999999999999996).
_COUNT_EPS = 1e-9


class MetricsError(ValueError):
    """Invalid input to a metric (length mismatch, NaN scores, missing class, bad rule...)."""


# ----------------------------------------------------------------------------- validation


def _as_scores(scores: ArrayLike, name: str = "scores") -> NDArray[np.float64]:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"{name} must be numeric: {exc}") from exc
    if s.ndim != 1:
        raise MetricsError(f"{name} must be 1-D, got shape {s.shape}")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        value = s[bad[0]]
        shown = "NaN" if np.isnan(value) else str(value)
        raise MetricsError(f"{name} contain {shown} at index {bad[0]}")
    return s


def _as_labels(labels: ArrayLike) -> NDArray[np.int64]:
    raw = np.asarray(labels)
    if raw.ndim != 1:
        raise MetricsError(f"labels must be 1-D, got shape {raw.shape}")
    try:
        y = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"labels must be 0 (attack) or 1 (bona fide): {exc}") from exc
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise MetricsError(
            f"labels must be 0 (attack) or 1 (bona fide); got {raw.tolist()[bad[0]]!r} "
            f"at index {bad[0]}"
        )
    return y.astype(np.int64)


def _check_pair(
    scores: ArrayLike, labels: ArrayLike, *, need: str = "both", name: str = "scores"
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Validate ``scores``/``labels``; ``need`` is "both", "bona_fide", "attack" or "none"."""
    s = _as_scores(scores, name)
    y = _as_labels(labels)
    if s.shape[0] != y.shape[0]:
        raise MetricsError(f"{name} and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    if s.shape[0] == 0:
        raise MetricsError(f"{name} and labels are empty")
    n_bona = int(y.sum())
    n_attack = y.shape[0] - n_bona
    if need == "both" and (n_bona == 0 or n_attack == 0):
        only = 1 if n_attack == 0 else 0
        raise MetricsError(
            f"labels must contain both bona fide (1) and attack (0) samples; got only {only}"
        )
    if need == "bona_fide" and n_bona == 0:
        raise MetricsError("labels must contain at least one bona fide (1) sample; got none")
    if need == "attack" and n_attack == 0:
        raise MetricsError("labels must contain at least one attack (0) sample; got none")
    return s, y


def _as_types(attack_types: ArrayLike, n: int) -> NDArray[np.str_]:
    t = np.asarray(attack_types).astype(str)
    if t.ndim != 1 or t.shape[0] != n:
        raise MetricsError(
            f"attack_types and labels differ in length: {t.reshape(-1).shape[0]} vs {n}"
        )
    return t


def _check_threshold(threshold: float) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"threshold must be a number, got {threshold!r}") from exc
    if math.isnan(t):
        raise MetricsError("threshold must be a number, got NaN")
    return t


def _n_accepted(sorted_scores: NDArray[np.float64], thresholds: ArrayLike) -> NDArray[np.int64]:
    """Number of ``sorted_scores`` (ascending) that are ``>= threshold``, per threshold."""
    return sorted_scores.shape[0] - np.searchsorted(sorted_scores, thresholds, side="left")


# ----------------------------------------------------------------------------- ROC family


def roc_curve(
    scores: ArrayLike, labels: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """ROC with bona fide (label 1) as the positive class, one point per distinct score.

    Matches ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``.

    Args:
        scores: Detector scores ``P(real)``, shape ``(n,)``.
        labels: 1 = bona fide, 0 = attack, shape ``(n,)``.

    Returns:
        ``(fpr, tpr, thresholds)`` with ``fpr = APCER`` and ``tpr = 1 - BPCER`` at each
        threshold (accept when ``score >= threshold``). ``thresholds`` is decreasing and starts
        at ``inf`` (reject everything). In ODIN terms FDR = ``1 - tpr`` and TDR = ``1 - fpr``.
    """
    s, y = _check_pair(scores, labels)
    thresholds = np.concatenate(([np.inf], np.unique(s)[::-1]))
    bona = np.sort(s[y == 1])
    attack = np.sort(s[y == 0])
    tpr = _n_accepted(bona, thresholds) / bona.shape[0]
    fpr = _n_accepted(attack, thresholds) / attack.shape[0]
    return fpr, tpr, thresholds


def auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC with bona fide as positive; ties count half, as in scikit-learn.

    Args:
        scores: Detector scores ``P(real)``.
        labels: 1 = bona fide, 0 = attack.

    Returns:
        AUC in ``[0, 1]``.
    """
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def apcer_bpcer(scores: ArrayLike, labels: ArrayLike, threshold: float) -> tuple[float, float]:
    """APCER and BPCER at a fixed threshold (accept as bona fide when ``score >= threshold``).

    Args:
        scores: Detector scores ``P(real)``.
        labels: 1 = bona fide, 0 = attack; both classes required.
        threshold: Decision threshold.

    Returns:
        ``(apcer, bpcer)``: share of attacks accepted, share of bona fide rejected.
    """
    s, y = _check_pair(scores, labels)
    t = _check_threshold(threshold)
    accepted = s >= t
    return float(accepted[y == 0].mean()), float((~accepted[y == 1]).mean())


def eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate, linearly interpolated on the ROC where APCER = BPCER.

    Operating points are visited from the strictest threshold down; between the last point
    with APCER < BPCER and the first with APCER >= BPCER, the crossing is interpolated
    linearly, and the threshold is interpolated with the same weight (the ``inf``
    "reject all" point uses the highest score instead, to stay finite).

    Args:
        scores: Detector scores ``P(real)``.
        labels: 1 = bona fide, 0 = attack; both classes required.

    Returns:
        ``(eer_value, threshold)``.
    """
    fpr, tpr, thresholds = roc_curve(scores, labels)
    apcer, bpcer = fpr, 1.0 - tpr
    gap = apcer - bpcer  # non-decreasing from -1 (reject all) to +1 (accept all)
    k = int(np.argmax(gap >= 0))
    w = -gap[k - 1] / (gap[k] - gap[k - 1])
    value = apcer[k - 1] + w * (apcer[k] - apcer[k - 1])
    upper = thresholds[k - 1] if k > 1 else thresholds[1]
    return float(value), float(upper + w * (thresholds[k] - upper))


def threshold_at_bpcer(scores: ArrayLike, labels: ArrayLike, bpcer: float) -> float:
    """Strictest (largest) threshold whose BPCER does not exceed ``bpcer``.

    Args:
        scores: Detector scores ``P(real)``.
        labels: 1 = bona fide, 0 = attack; at least one bona fide sample required.
        bpcer: Target BPCER in ``[0, 1)``.

    Returns:
        A bona fide score ``t`` such that at most ``floor(bpcer * n_bona_fide)`` bona fide
        samples score below ``t``; any larger threshold would exceed the target.
    """
    s, y = _check_pair(scores, labels, need="bona_fide")
    if not 0.0 <= bpcer < 1.0:
        raise MetricsError(f"target BPCER must be in [0, 1), got {bpcer}")
    bona = np.sort(s[y == 1])
    allowed = math.floor(bpcer * bona.shape[0] + _COUNT_EPS)
    return float(bona[allowed])


def tdr_at_fdr(scores: ArrayLike, labels: ArrayLike, fdr: float = 0.002) -> float:
    """ODIN true detection rate at a false detection rate (TDR = 1 - APCER, FDR = BPCER).

    Uses :func:`threshold_at_bpcer`, i.e. the best TDR with FDR at most ``fdr``.

    Args:
        scores: Detector scores ``P(real)``.
        labels: 1 = bona fide, 0 = attack; both classes required.
        fdr: Allowed share of bona fide falsely flagged, in ``[0, 1)``.

    Returns:
        TDR in ``[0, 1]``.
    """
    t = threshold_at_bpcer(scores, labels, fdr)
    apcer, _ = apcer_bpcer(scores, labels, t)
    return 1.0 - apcer


def choose_threshold(scores: ArrayLike, labels: ArrayLike, rule: str) -> float:
    """Pick a threshold on a development split by a named rule.

    Args:
        scores: Development-split scores ``P(real)``.
        labels: Development-split labels (1 = bona fide, 0 = attack).
        rule: ``"eer"``, ``"bpcer=<x>"`` (see :func:`threshold_at_bpcer`) or ``"fixed=<x>"``
            (returns ``x``; the data are not used).

    Returns:
        The threshold.
    """
    name, sep, arg = str(rule).strip().partition("=")
    name = name.strip().lower()
    if name == "eer" and not sep:
        return eer(scores, labels)[1]
    if name in ("bpcer", "fixed") and sep:
        try:
            value = float(arg)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and (name == "fixed" or 0.0 <= value < 1.0):
            if name == "fixed":
                return value
            return threshold_at_bpcer(scores, labels, value)
    raise MetricsError(f"invalid threshold rule {rule!r}; expected {_RULE_FORMS}")


# ----------------------------------------------------------------------------- per type / ACER


def per_type_apcer(
    scores: ArrayLike, labels: ArrayLike, attack_types: ArrayLike, threshold: float
) -> dict[str, float]:
    """APCER per attack species (ISO/IEC 30107-3 presentation-attack-instrument species).

    Args:
        scores: Detector scores ``P(real)``.
        labels: 1 = bona fide, 0 = attack; at least one attack required.
        attack_types: Per-sample species names, same length (entries of bona fide samples are
            ignored); converted with ``str``.
        threshold: Decision threshold (accept when ``score >= threshold``).

    Returns:
        ``{species: APCER}``, keys sorted.
    """
    s, y = _check_pair(scores, labels, need="attack")
    types = _as_types(attack_types, s.shape[0])
    t = _check_threshold(threshold)
    attack = y == 0
    return {
        str(kind): float((s[attack & (types == kind)] >= t).mean())
        for kind in np.unique(types[attack])
    }


def oracle_threshold(
    scores: ArrayLike, labels: ArrayLike, attack_types: ArrayLike | None = None
) -> float:
    """Threshold minimising ACER on the given set. OPTIMISTIC: for explicit requests only.

    Choosing the threshold on the test set leaks test labels, so results obtained with it
    overestimate real performance and must be labelled "oracle" (e.g.
    ``threshold_source="oracle-test-acer"``). Use :func:`choose_threshold` on a development
    split for honest numbers.

    Args:
        scores: Detector scores ``P(real)``.
        labels: 1 = bona fide, 0 = attack; both classes required.
        attack_types: Optional per-sample species; when given, ACER uses the ISO maximum
            APCER over species, otherwise the pooled APCER.

    Returns:
        The largest score value attaining the minimum ACER.
    """
    s, y = _check_pair(scores, labels)
    candidates = np.unique(s)[::-1]
    bona = np.sort(s[y == 1])
    bpcer = 1.0 - _n_accepted(bona, candidates) / bona.shape[0]
    attack = y == 0
    if attack_types is None:
        groups = [np.sort(s[attack])]
    else:
        types = _as_types(attack_types, s.shape[0])
        groups = [np.sort(s[attack & (types == kind)]) for kind in np.unique(types[attack])]
    apcer = np.max([_n_accepted(g, candidates) / g.shape[0] for g in groups], axis=0)
    return float(candidates[int(np.argmin(apcer + bpcer))])


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Report:
    """Test-split metrics at a threshold fixed beforehand.

    Attributes:
        threshold: Decision threshold (accept as bona fide when ``score >= threshold``).
        threshold_source: Where the threshold came from, e.g. ``"dev-eer"``,
            ``"dev-bpcer=0.05"``, ``"fixed=0.5"``, ``"oracle-test-acer"``.
        apcer_max: ISO APCER, the maximum over attack species.
        apcer_pooled: APCER over all attacks together.
        apcer_per_type: ``{species: APCER}``.
        bpcer: Share of bona fide rejected.
        acer: ISO ACER, ``(apcer_max + bpcer) / 2``.
        hter: HTER, the half total error rate of FAS benchmarks (Replay-Attack, OULU-NPU):
            ``(apcer_pooled + bpcer) / 2`` at the same threshold.
        eer: Threshold-free EER on the test split.
        auc: Threshold-free AUC on the test split.
        tdr_at_fdr: ODIN TDR at ``fdr`` (threshold-free: picked on the test bona fide).
        fdr: The FDR used for ``tdr_at_fdr``.
        n_bona_fide: Number of bona fide samples.
        n_attack: Number of attack samples.
    """

    threshold: float
    threshold_source: str
    apcer_max: float
    apcer_pooled: float
    apcer_per_type: dict[str, float] = field(hash=False)
    bpcer: float
    acer: float
    hter: float
    eer: float
    auc: float
    tdr_at_fdr: float
    fdr: float
    n_bona_fide: int
    n_attack: int

    def to_dict(self) -> dict[str, Any]:
        """Flat key/value view for one row of a tidy (wide) CSV.

        Returns:
            All scalar fields in declaration order, with ``apcer_per_type`` expanded into one
            ``"apcer[SPECIES]"`` column per species (sorted).
        """
        row: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "apcer_per_type":
                row.update({f"apcer[{k}]": v for k, v in sorted(self.apcer_per_type.items())})
            else:
                row[name] = getattr(self, name)
        return row


def evaluate(
    test_scores: ArrayLike,
    test_labels: ArrayLike,
    test_types: ArrayLike,
    threshold: float,
    *,
    threshold_source: str,
    fdr: float = 0.002,
) -> Report:
    """Compute the full :class:`Report` on a test split at a pre-chosen threshold.

    Args:
        test_scores: Test-split scores ``P(real)``.
        test_labels: Test-split labels (1 = bona fide, 0 = attack); both classes required.
        test_types: Per-sample attack species (bona fide entries ignored).
        threshold: Threshold chosen on a development split (or explicitly an oracle).
        threshold_source: Non-empty label recording how ``threshold`` was chosen.
        fdr: FDR for the ODIN ``tdr_at_fdr`` column.

    Returns:
        The report.
    """
    if not str(threshold_source).strip():
        raise MetricsError("threshold_source must be a non-empty label, e.g. 'dev-eer'")
    s, y = _check_pair(test_scores, test_labels)
    t = _check_threshold(threshold)
    per_type = per_type_apcer(s, y, test_types, t)
    apcer_pooled, bpcer = apcer_bpcer(s, y, t)
    apcer_max = max(per_type.values())
    return Report(
        threshold=t,
        threshold_source=str(threshold_source),
        apcer_max=apcer_max,
        apcer_pooled=apcer_pooled,
        apcer_per_type=per_type,
        bpcer=bpcer,
        acer=(apcer_max + bpcer) / 2.0,
        hter=(apcer_pooled + bpcer) / 2.0,
        eer=eer(s, y)[0],
        auc=auc(s, y),
        tdr_at_fdr=tdr_at_fdr(s, y, fdr),
        fdr=float(fdr),
        n_bona_fide=int(y.sum()),
        n_attack=int((y == 0).sum()),
    )


# ----------------------------------------------------------------------------- bootstrap

MetricFn = Callable[..., float]


def _resample_indices(
    y: NDArray[np.int64], n_boot: int, seed: int, stratified: bool
) -> NDArray[np.intp]:
    """``(n_boot, n)`` bootstrap indices; stratified draws keep each class's count."""
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    if not stratified:
        return rng.integers(0, n, size=(n_boot, n))
    blocks = []
    for cls in (0, 1):
        members = np.flatnonzero(y == cls)
        if members.size:
            blocks.append(members[rng.integers(0, members.size, size=(n_boot, members.size))])
    return np.concatenate(blocks, axis=1)


def _check_boot_args(n_boot: int, alpha: float) -> None:
    if int(n_boot) < 1:
        raise MetricsError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise MetricsError(f"alpha must be in (0, 1), got {alpha}")


def _as_extra(extra: Sequence[ArrayLike] | None, n: int) -> list[NDArray[Any]]:
    arrays = [np.asarray(a) for a in (extra or ())]
    for i, a in enumerate(arrays):
        if a.ndim == 0 or a.shape[0] != n:
            raise MetricsError(
                f"extra[{i}] and labels differ in length: {a.reshape(-1).shape[0]} vs {n}"
            )
    return arrays


def _interval(stats: NDArray[np.float64], alpha: float) -> tuple[float, float]:
    low, high = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def bootstrap_ci(
    metric_fn: MetricFn,
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
    extra: Sequence[ArrayLike] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``metric_fn(scores, labels, *extra)``.

    Args:
        metric_fn: Called as ``metric_fn(scores, labels, *extra)`` on each resample.
        scores: Detector scores ``P(real)``.
        labels: 1 = bona fide, 0 = attack.
        n_boot: Number of resamples.
        alpha: Two-sided level; the interval covers ``1 - alpha``.
        seed: Seed for ``numpy.random.default_rng``; equal seeds give equal intervals.
        stratified: Resample within each class, keeping class counts fixed (so both classes
            are always present). If ``False``, resamples may lose a class and class-dependent
            metrics then raise :class:`MetricsError`.
        extra: Per-sample arrays (e.g. attack types) resampled with the same indices.

    Returns:
        ``(low, high)``.
    """
    _check_boot_args(n_boot, alpha)
    s, y = _check_pair(scores, labels, need="none")
    arrays = _as_extra(extra, s.shape[0])
    idx = _resample_indices(y, int(n_boot), seed, stratified)
    stats = np.array([metric_fn(s[i], y[i], *(a[i] for a in arrays)) for i in idx], dtype=float)
    return _interval(stats, alpha)


def paired_bootstrap_diff(
    metric_fn: MetricFn,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    labels: ArrayLike,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
    extra: Sequence[ArrayLike] | None = None,
) -> tuple[float, float, float]:
    """Paired bootstrap of ``metric(a) - metric(b)`` for two detectors on the same samples.

    Both detectors are scored on the same resampled indices, so sample difficulty cancels.

    Args:
        metric_fn: Called as ``metric_fn(scores, labels, *extra)``.
        scores_a: Scores of detector A.
        scores_b: Scores of detector B, aligned with ``scores_a``.
        labels: 1 = bona fide, 0 = attack.
        n_boot: Number of resamples.
        alpha: Two-sided level; the interval covers ``1 - alpha``.
        seed: Seed for ``numpy.random.default_rng``.
        stratified: Resample within each class (see :func:`bootstrap_ci`).
        extra: Per-sample arrays resampled with the same indices.

    Returns:
        ``(diff, low, high)``: the full-sample difference and its percentile interval.
    """
    _check_boot_args(n_boot, alpha)
    a, y = _check_pair(scores_a, labels, need="none", name="scores_a")
    b, _ = _check_pair(scores_b, labels, need="none", name="scores_b")
    arrays = _as_extra(extra, a.shape[0])
    diff = float(metric_fn(a, y, *arrays) - metric_fn(b, y, *arrays))
    idx = _resample_indices(y, int(n_boot), seed, stratified)
    stats = np.array(
        [
            metric_fn(a[i], y[i], *(x[i] for x in arrays))
            - metric_fn(b[i], y[i], *(x[i] for x in arrays))
            for i in idx
        ],
        dtype=float,
    )
    return (diff, *_interval(stats, alpha))
