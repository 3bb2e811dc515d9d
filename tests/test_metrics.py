"""Tests for facecat.evaluation.metrics: sklearn cross-checks, hand cases, brute force and
properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from facecat.evaluation.metrics import (
    MetricsError,
    Report,
    apcer_bpcer,
    auc,
    bootstrap_ci,
    choose_threshold,
    eer,
    evaluate,
    oracle_threshold,
    paired_bootstrap_diff,
    per_type_apcer,
    roc_curve,
    tdr_at_fdr,
    threshold_at_bpcer,
)

FAST = settings(max_examples=60, deadline=None)


@st.composite
def scored_labels(draw, min_size: int = 2, max_size: int = 40, ties: bool | None = None):
    """(scores, labels) with both classes; scores on a coarse grid (many ties) or floats."""
    n = draw(st.integers(min_size, max_size))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    labels[0], labels[1] = 0, 1
    use_grid = draw(st.booleans()) if ties is None else ties
    if use_grid:
        scores = [k / 10 for k in draw(st.lists(st.integers(0, 10), min_size=n, max_size=n))]
    else:
        unit = st.floats(0, 1, allow_nan=False, allow_infinity=False)
        scores = draw(st.lists(unit, min_size=n, max_size=n))
    return np.array(scores), np.array(labels)


def _rates(s: np.ndarray, y: np.ndarray, t: float) -> tuple[float, float]:
    """Independent APCER/BPCER with plain Python loops."""
    attacks = [a for a, lab in zip(s, y, strict=True) if lab == 0]
    bona = [b for b, lab in zip(s, y, strict=True) if lab == 1]
    return sum(a >= t for a in attacks) / len(attacks), sum(b < t for b in bona) / len(bona)


def _sweep(s: np.ndarray, y: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, APCER, BPCER) on a dense grid: every score, midpoints, and above the max."""
    u = np.unique(s)
    grid = np.concatenate((u, (u[1:] + u[:-1]) / 2, [u[-1] + 1.0]))
    return [(t, *_rates(s, y, t)) for t in sorted(grid, reverse=True)]


def brute_eer(s: np.ndarray, y: np.ndarray) -> float:
    """EER where the piecewise-linear DET path first meets APCER = BPCER."""
    pts = _sweep(s, y)
    for (_, a0, b0), (_, a1, b1) in itertools.pairwise(pts):
        g0, g1 = a0 - b0, a1 - b1
        if g0 < 0 <= g1:
            lam = -g0 / (g1 - g0)
            return a0 + lam * (a1 - a0)
    raise AssertionError("no crossing found")


# ----------------------------------------------------------------------------- sklearn checks


@FAST
@given(scored_labels())
def test_roc_curve_matches_sklearn(data):
    s, y = data
    fpr, tpr, thr = roc_curve(s, y)
    ref_fpr, ref_tpr, ref_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_array_equal(thr, ref_thr)


@FAST
@given(scored_labels())
def test_auc_matches_sklearn(data):
    s, y = data
    assert auc(s, y) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_auc_matches_sklearn_large_random():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounding forces many ties
    assert auc(s, y) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


# ----------------------------------------------------------------------------- hand cases


def test_hand_four_samples():
    s, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    # Points (APCER, BPCER) from t=inf down: (0,1) (0,.5) (.5,.5) (.5,0) (1,0).
    assert auc(s, y) == pytest.approx(0.75)
    value, thr = eer(s, y)
    assert value == pytest.approx(0.5)
    assert thr == pytest.approx(0.4)
    assert apcer_bpcer(s, y, 0.4) == (0.5, 0.5)


def test_hand_eer_interpolated_on_vertical_segment():
    # bona fide 0.9, 0.8, 0.4; attacks 0.85, 0.3, 0.1, 0.05.
    # t=0.8: (APCER, BPCER) = (1/4, 1/3); t=0.4: (1/4, 0). Gap -1/12 -> 1/4, weight 1/4.
    s = [0.9, 0.8, 0.4, 0.85, 0.3, 0.1, 0.05]
    y = [1, 1, 1, 0, 0, 0, 0]
    value, thr = eer(s, y)
    assert value == pytest.approx(0.25)
    assert thr == pytest.approx(0.8 + 0.25 * (0.4 - 0.8))


def test_perfectly_separable():
    s, y = [0.1, 0.2, 0.3, 0.7, 0.8], [0, 0, 0, 1, 1]
    assert auc(s, y) == 1.0
    value, thr = eer(s, y)
    assert value == 0.0
    assert thr == pytest.approx(0.7)  # lowest bona fide score: accepts all bona fide only
    assert apcer_bpcer(s, y, thr) == (0.0, 0.0)


def test_perfectly_inverted():
    s, y = [0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]
    assert auc(s, y) == 0.0
    assert eer(s, y)[0] == pytest.approx(1.0)


def test_apcer_bpcer_hand_and_boundary_is_accept():
    s, y = [0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1]
    assert apcer_bpcer(s, y, 0.5) == (0.5, 0.0)  # score == threshold is accepted
    assert apcer_bpcer(s, y, 0.51) == (0.0, 0.5)


def test_tdr_at_fdr_hand():
    bona = [0.1, 0.5, 0.6, 0.7, 0.9]
    attacks = [0.05, 0.2, 0.55, 0.95]
    s, y = bona + attacks, [1] * 5 + [0] * 4
    # FDR 20%: one bona fide may be flagged -> t=0.5; attacks >= 0.5: 0.55, 0.95.
    assert threshold_at_bpcer(s, y, 0.2) == 0.5
    assert tdr_at_fdr(s, y, fdr=0.2) == pytest.approx(0.5)
    assert tdr_at_fdr(s, y, fdr=0.39) == pytest.approx(0.5)
    assert tdr_at_fdr(s, y, fdr=0.4) == pytest.approx(0.75)  # t=0.6
    assert tdr_at_fdr(s, y, fdr=0.0) == pytest.approx(0.25)  # t=0.1
    assert tdr_at_fdr(s, y) == pytest.approx(0.25)  # 0.2% of 5 -> no bona fide flagged


def test_threshold_at_bpcer_float_rounding():
    s = np.arange(100) / 100.0
    y = np.ones(100, dtype=int)
    # 0.29 * 100 == 28.999999999999996 in floating point; 29 rejections are allowed.
    t = threshold_at_bpcer(s, y, 0.29)
    assert t == pytest.approx(0.29)
    assert np.mean(s < t) == pytest.approx(0.29)


@FAST
@given(scored_labels(), st.floats(0, 0.99))
def test_threshold_at_bpcer_is_strictest(data, target):
    s, y = data
    t = threshold_at_bpcer(s, y, target)
    bona = s[y == 1]
    assert np.mean(bona < t) <= target + 1e-12
    assert np.mean(bona < np.nextafter(t, np.inf)) > target  # any larger threshold fails


def test_per_type_apcer_and_evaluate_hand():
    s = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.7, 0.1, 0.4])
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    types = np.array(["live", "live", "live", "print", "print", "replay", "replay", "replay"])
    per_type = per_type_apcer(s, y, types, 0.5)
    assert per_type == {"print": 0.5, "replay": pytest.approx(1 / 3)}

    rep = evaluate(s, y, types, 0.5, threshold_source="dev-eer")
    assert isinstance(rep, Report)
    assert rep.apcer_max == 0.5
    assert rep.apcer_pooled == pytest.approx(2 / 5)
    assert rep.bpcer == pytest.approx(1 / 3)
    assert rep.acer == pytest.approx((0.5 + 1 / 3) / 2)
    assert rep.hter == pytest.approx((2 / 5 + 1 / 3) / 2)
    assert (rep.n_bona_fide, rep.n_attack) == (3, 5)
    assert rep.auc == pytest.approx(skm.roc_auc_score(y, s))
    assert rep.eer == pytest.approx(eer(s, y)[0])
    assert rep.tdr_at_fdr == pytest.approx(tdr_at_fdr(s, y, 0.002))

    row = rep.to_dict()
    assert row["threshold_source"] == "dev-eer"
    assert row["apcer[print]"] == 0.5
    assert "apcer_per_type" not in row
    assert all(not isinstance(v, dict) for v in row.values())
    assert list(row)[:2] == ["threshold", "threshold_source"]


def test_choose_threshold_rules():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.normal(y, 1.0)
    assert choose_threshold(s, y, "eer") == eer(s, y)[1]
    assert choose_threshold(s, y, "bpcer=0.05") == threshold_at_bpcer(s, y, 0.05)
    assert choose_threshold(s, y, " BPCER = 0.1 ") == threshold_at_bpcer(s, y, 0.1)
    assert choose_threshold(s, y, "fixed=0.37") == 0.37


# ------------------------------------------------------------------ brute force / properties


@FAST
@given(scored_labels())
def test_eer_matches_brute_force_and_bounds(data):
    s, y = data
    value, _ = eer(s, y)
    assert value == pytest.approx(brute_eer(s, y), abs=1e-12)
    rates = [(a, b) for _, a, b in _sweep(s, y)]
    # The interpolated crossing lies between min HTER and min max(APCER, BPCER).
    assert min((a + b) / 2 for a, b in rates) - 1e-12 <= value
    assert value <= min(max(a, b) for a, b in rates) + 1e-12


@FAST
@given(scored_labels(ties=True))
def test_reversed_scores_give_one_minus_auc_with_ties(data):
    # Ties stay ties under 1 - s (each counts 1/2 either way); on a 0.1 grid 1 - s is
    # injective, so no new ties appear.
    s, y = data
    assert auc(1.0 - s, y) == pytest.approx(1.0 - auc(s, y), abs=1e-12)


@FAST
@given(scored_labels(ties=False))
def test_negated_scores_give_one_minus_auc(data):
    # Negation is exact; 1 - s could merge tiny distinct floats into new ties.
    s, y = data
    assert auc(-s, y) == pytest.approx(1.0 - auc(s, y), abs=1e-12)


@FAST
@given(scored_labels(), st.floats(-0.5, 1.5))
def test_acer_in_unit_interval(data, thr):
    s, y = data
    types = np.where(np.arange(s.size) % 3 == 0, "print", "replay")
    rep = evaluate(s, y, types, thr, threshold_source="fixed")
    assert 0.0 <= rep.hter <= rep.acer <= 1.0
    assert 0.0 <= rep.apcer_pooled <= rep.apcer_max <= 1.0


@FAST
@given(scored_labels(), st.lists(st.floats(-0.5, 1.5), min_size=2, max_size=10))
def test_apcer_nonincreasing_bpcer_nondecreasing(data, thresholds):
    s, y = data
    rates = np.array([apcer_bpcer(s, y, t) for t in sorted(thresholds)])
    assert np.all(np.diff(rates[:, 0]) <= 0)
    assert np.all(np.diff(rates[:, 1]) >= 0)


@FAST
@given(scored_labels())
def test_oracle_threshold_minimises_pooled_acer(data):
    s, y = data
    best = min(sum(_rates(s, y, t)) / 2 for t, *_ in _sweep(s, y))
    assert sum(_rates(s, y, oracle_threshold(s, y))) / 2 == pytest.approx(best, abs=1e-12)


@FAST
@given(scored_labels(min_size=4), st.lists(st.sampled_from("abc"), min_size=40, max_size=40))
def test_oracle_threshold_minimises_iso_acer(data, kinds):
    s, y = data
    types = np.array(kinds[: s.size])

    def iso_acer(t: float) -> float:
        apcer = max(per_type_apcer(s, y, types, t).values())
        return (apcer + _rates(s, y, t)[1]) / 2

    best = min(iso_acer(t) for t, *_ in _sweep(s, y))
    assert iso_acer(oracle_threshold(s, y, types)) == pytest.approx(best, abs=1e-12)


def test_oracle_threshold_uses_iso_max_with_types():
    # Pooled ACER prefers t=0.7 (APCER 1/5, BPCER 0); ISO ACER must also reject the
    # lone high "mask" attack, whose APCER would otherwise be 1.
    s = np.array([0.9, 0.85, 0.7, 0.1, 0.2, 0.3, 0.4, 0.8])
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    types = np.array(["", "", "", "print", "print", "print", "print", "mask"])
    assert oracle_threshold(s, y) == 0.7
    assert oracle_threshold(s, y, types) == 0.85


def test_oracle_threshold_tie_takes_largest():
    # ACER is 0.5 at both t=0.6 and t=0.2; the strictest (largest) threshold is returned.
    assert oracle_threshold([0.2, 0.4, 0.6, 0.8], [1, 0, 1, 0]) == 0.6


# ----------------------------------------------------------------------------- bootstrap


def _separable_data(n: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    return rng.normal(y * 1.5, 1.0), y


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    s, y = _separable_data()
    low, high = bootstrap_ci(auc, s, y, n_boot=300, seed=7)
    assert low < auc(s, y) < high
    assert high - low < 0.2
    assert bootstrap_ci(auc, s, y, n_boot=300, seed=7) == (low, high)
    assert bootstrap_ci(auc, s, y, n_boot=300, seed=8) != (low, high)


@settings(max_examples=25, deadline=None)
@given(scored_labels(min_size=4, max_size=30), st.integers(0, 2**32 - 1))
def test_bootstrap_ci_low_le_high(data, seed):
    s, y = data
    low, high = bootstrap_ci(auc, s, y, n_boot=40, seed=seed)
    assert 0.0 <= low <= high <= 1.0


def test_bootstrap_stratified_keeps_class_counts_and_aligns_extra():
    s, y = _separable_data(60)
    ids = np.arange(s.size)
    seen: list[tuple[int, int]] = []

    def probe(bs, by, bids):
        np.testing.assert_array_equal(bs, s[bids])  # extra resampled with the same indices
        np.testing.assert_array_equal(by, y[bids])
        seen.append((int(by.sum()), int((by == 0).sum())))
        return float(bs.mean())

    bootstrap_ci(probe, s, y, n_boot=50, extra=[ids])
    assert len(seen) == 50
    assert set(seen) == {(int(y.sum()), int((y == 0).sum()))}


def test_bootstrap_unstratified_varies_class_counts():
    s, y = _separable_data(40)
    counts: set[int] = set()

    def probe(bs, by):
        counts.add(int(by.sum()))
        return 0.0

    bootstrap_ci(probe, s, y, n_boot=50, stratified=False)
    assert len(counts) > 1


def test_bootstrap_with_attack_types_for_iso_acer():
    s = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.7, 0.1, 0.4] * 5)
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0] * 5)
    types = np.array(["", "", "", "print", "print", "replay", "replay", "replay"] * 5)

    def acer(bs, by, bt):
        return evaluate(bs, by, bt, 0.5, threshold_source="fixed=0.5").acer

    low, high = bootstrap_ci(acer, s, y, n_boot=100, extra=[types])
    assert low <= acer(s, y, types) <= high
    assert low < high


def test_paired_bootstrap_diff():
    s, y = _separable_data(300)
    rng = np.random.default_rng(5)
    worse = s + rng.normal(0.0, 2.0, s.size)
    diff, low, high = paired_bootstrap_diff(auc, s, worse, y, n_boot=300, seed=2)
    assert diff == pytest.approx(auc(s, y) - auc(worse, y))
    assert 0.0 < low <= diff <= high
    assert paired_bootstrap_diff(auc, s, s, y, n_boot=50) == (0.0, 0.0, 0.0)


# ----------------------------------------------------------------------------- errors

GOOD_S = [0.1, 0.9, 0.4]
GOOD_Y = [0, 1, 1]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: auc([0.1, float("nan"), 0.3, 0.2], [0, 1, 0, 1]),
            r"scores contain NaN at index 1",
        ),
        (lambda: auc([0.1, math.inf], [0, 1]), r"scores contain inf at index 1"),
        (lambda: eer([0.1, 0.2], [1, 1]), r"both bona fide \(1\) and attack \(0\).*got only 1"),
        (lambda: auc([0.1, 0.2], [0, 0]), r"got only 0"),
        (lambda: apcer_bpcer(GOOD_S, [0, 1], 0.5), r"differ in length: 3 vs 2"),
        (lambda: auc([], []), r"empty"),
        (lambda: auc(GOOD_S, [0, 1, 2]), r"labels must be 0 \(attack\) or 1.*got 2 at index 2"),
        (lambda: auc(GOOD_S, ["a", "b", "c"]), r"labels must be 0 \(attack\) or 1"),
        (lambda: auc([[0.1, 0.2]], [[0, 1]]), r"scores must be 1-D"),
        (lambda: apcer_bpcer(GOOD_S, GOOD_Y, float("nan")), r"threshold must be a number"),
        (lambda: choose_threshold(GOOD_S, GOOD_Y, "acer"), r"'eer', 'bpcer=<float"),
        (lambda: choose_threshold(GOOD_S, GOOD_Y, "bpcer=abc"), r"invalid threshold rule"),
        (lambda: choose_threshold(GOOD_S, GOOD_Y, "bpcer=1.5"), r"invalid threshold rule"),
        (lambda: choose_threshold(GOOD_S, GOOD_Y, "eer=0.1"), r"invalid threshold rule"),
        (lambda: choose_threshold(GOOD_S, GOOD_Y, "fixed=nan"), r"invalid threshold rule"),
        (lambda: threshold_at_bpcer(GOOD_S, GOOD_Y, 1.0), r"target BPCER must be in \[0, 1\)"),
        (lambda: threshold_at_bpcer([0.1], [0], 0.05), r"at least one bona fide"),
        (lambda: per_type_apcer([0.1], [1], ["x"], 0.5), r"at least one attack"),
        (
            lambda: per_type_apcer(GOOD_S, GOOD_Y, ["x"], 0.5),
            r"attack_types and labels differ in length: 1 vs 3",
        ),
        (
            lambda: evaluate(GOOD_S, GOOD_Y, ["a"] * 3, 0.5, threshold_source=" "),
            r"threshold_source must be a non-empty",
        ),
        (lambda: bootstrap_ci(auc, GOOD_S, GOOD_Y, n_boot=0), r"n_boot must be >= 1"),
        (lambda: bootstrap_ci(auc, GOOD_S, GOOD_Y, alpha=1.0), r"alpha must be in \(0, 1\)"),
        (lambda: bootstrap_ci(auc, GOOD_S, GOOD_Y, extra=[[1, 2]]), r"extra\[0\] .*length"),
        (
            lambda: paired_bootstrap_diff(auc, GOOD_S, [0.1, 0.2], GOOD_Y),
            r"scores_b and labels differ in length: 2 vs 3",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_metrics_error(call, match):
    with pytest.raises(MetricsError, match=match):
        call()


def test_metrics_error_is_value_error():
    assert issubclass(MetricsError, ValueError)
