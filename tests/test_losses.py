"""Tests for facecat.training.losses: hand computations, limits, numerical safety and properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from facecat.training.losses import facecat_loss, focal_loss, triplet_loss

FAST = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------------------------
# focal loss


def test_focal_hand_computation() -> None:
    rows = [(2.0, -1.0), (0.5, 1.5), (-3.0, 0.2), (1.0, 1.0)]
    labels = [0, 1, 1, 0]
    alpha, gamma = 0.75, 2.0
    expected = 0.0
    for (fake, real), label in zip(rows, labels, strict=True):
        p_real = math.exp(real) / (math.exp(fake) + math.exp(real))
        p_t = p_real if label == 1 else 1 - p_real
        alpha_t = alpha if label == 1 else 1 - alpha
        expected += -alpha_t * (1 - p_t) ** gamma * math.log(p_t)
    expected /= len(rows)
    got = focal_loss(torch.tensor(rows), torch.tensor(labels), alpha=alpha, gamma=gamma)
    assert got.ndim == 0
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_focal_reduces_to_half_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 2, generator=generator) * 3
    labels = torch.randint(0, 2, (16,), generator=generator)
    got = focal_loss(logits, labels, alpha=0.5, gamma=0.0)
    torch.testing.assert_close(got, 0.5 * F.cross_entropy(logits, labels))


def test_focal_alpha_weights_real_class() -> None:
    logits = torch.tensor([[0.0, 0.0]])
    real = focal_loss(logits, torch.tensor([1]), alpha=0.75, gamma=0.0)
    fake = focal_loss(logits, torch.tensor([0]), alpha=0.75, gamma=0.0)
    assert real.item() == pytest.approx(0.75 * math.log(2))
    assert fake.item() == pytest.approx(0.25 * math.log(2))


def test_focal_down_weights_easy_examples() -> None:
    labels = torch.tensor([1])
    easy = torch.tensor([[-2.0, 2.0]])
    ce = focal_loss(easy, labels, gamma=0.0)
    focal = focal_loss(easy, labels, gamma=2.0)
    p_t = torch.sigmoid(torch.tensor(4.0)).item()
    assert focal.item() == pytest.approx(ce.item() * (1 - p_t) ** 2, rel=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
def test_focal_extreme_logits_numerically_safe(gamma: float) -> None:
    logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4], [1e4, -1e4], [-1e4, 1e4]], requires_grad=True)
    labels = torch.tensor([0, 1, 1, 0])  # two confidently right, two confidently wrong
    loss = focal_loss(logits, labels, gamma=gamma)
    assert torch.isfinite(loss)
    # wrong real: 0.75 * 2e4; wrong fake: 0.25 * 2e4; right ones: 0; mean over 4.
    assert loss.item() == pytest.approx((0.75 + 0.25) * 2e4 / 4, rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[2].abs().sum() > 0  # the wrong ones are pushed


def test_focal_half_precision_input() -> None:
    logits = torch.tensor([[3.0, -2.0], [0.1, 0.4]], dtype=torch.float16)
    labels = torch.tensor([0, 1])
    got = focal_loss(logits, labels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, focal_loss(logits.float(), labels))


@FAST
@given(
    st.lists(
        st.tuples(
            st.floats(-1e4, 1e4, allow_nan=False),
            st.floats(-1e4, 1e4, allow_nan=False),
            st.integers(0, 1),
        ),
        min_size=1,
        max_size=16,
    ),
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, 1.0, 2.0, 3.0]),
)
def test_focal_non_negative_finite(rows: list, alpha: float, gamma: float) -> None:
    logits = torch.tensor([[a, b] for a, b, _ in rows], requires_grad=True)
    labels = torch.tensor([y for _, _, y in rows])
    loss = focal_loss(logits, labels, alpha=alpha, gamma=gamma)
    assert torch.isfinite(loss)
    assert loss.item() >= 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@FAST
@given(st.floats(-100, 100, allow_nan=False), st.integers(0, 2**31 - 1))
def test_focal_shift_invariant(shift: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, 2, generator=generator, dtype=torch.float64) * 5
    labels = torch.randint(0, 2, (8,), generator=generator)
    a = focal_loss(logits, labels)
    b = focal_loss(logits + shift, labels)
    assert a.item() == pytest.approx(b.item(), rel=1e-4, abs=1e-6)


# --------------------------------------------------------------------------------------------
# triplet loss


def _at(*degrees: float) -> torch.Tensor:
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1).float()


def _d(a: float, b: float) -> float:
    """Squared Euclidean distance between unit vectors at angles a and b (degrees)."""
    return 2 - 2 * math.cos(math.radians(a - b))


def test_triplet_picks_semi_hard_negative() -> None:
    # reals at 0 and 40 degrees; fakes at 20 (harder than the positive), 75 and 150.
    embeddings = torch.cat([_at(0, 40), _at(20, 75, 150)])
    labels = torch.tensor([1, 1, 0, 0, 0])
    margin = 2.0
    # anchor 0: positive 40, semi-hard negative 75 (the closest fake farther than 40).
    # anchor 40: positive 0 (d = d(0,40)); fakes at 20 and 75 are closer; semi-hard is 150.
    expected = (
        max(_d(0, 40) - _d(0, 75) + margin, 0) + max(_d(40, 0) - _d(40, 150) + margin, 0)
    ) / 2
    hardest = (max(_d(0, 40) - _d(0, 20) + margin, 0) + max(_d(40, 0) - _d(40, 20) + margin, 0)) / 2
    got = triplet_loss(embeddings, labels, margin=margin)
    assert got.item() == pytest.approx(expected, abs=1e-5)
    assert abs(expected - hardest) > 0.5  # the case does discriminate


def test_triplet_falls_back_to_farthest_negative() -> None:
    # reals at 0 and 90 (d_ap = 2); both fakes (30, 60) are closer than the positive.
    embeddings = torch.cat([_at(0, 90), _at(30, 60)])
    labels = torch.tensor([1, 1, 0, 0])
    got = triplet_loss(embeddings, labels, margin=1.0)
    # anchor 0 -> farthest fake is 60 (d = 1); anchor 90 -> farthest fake is 30 (d = 1).
    expected = (_d(0, 90) - _d(0, 60) + 1.0 + _d(90, 0) - _d(90, 30) + 1.0) / 2
    assert got.item() == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(2.0)


@pytest.mark.parametrize("labels", [[1, 0, 0], [0, 0, 0], [1, 1, 1], [1]])
def test_triplet_zero_with_graph(labels: list[int]) -> None:
    embeddings = torch.randn(len(labels), 4, requires_grad=True)
    loss = triplet_loss(embeddings, torch.tensor(labels))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert embeddings.grad is not None
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))


def test_triplet_margin_respected() -> None:
    embeddings = torch.cat([_at(0, 90), _at(30, 60)])
    labels = torch.tensor([1, 1, 0, 0])
    # Every triplet active: the loss grows exactly with the margin.
    one = triplet_loss(embeddings, labels, margin=1.0)
    three = triplet_loss(embeddings, labels, margin=3.0)
    assert (three - one).item() == pytest.approx(2.0, abs=1e-5)
    # Semi-hard negatives are farther than the positive: no loss without a margin ...
    near = torch.cat([_at(0, 10), _at(25, 180)])
    assert triplet_loss(near, labels, margin=0.0).item() == 0.0
    # ... and with a margin the semi-hard fake (at 25 for both anchors) gives
    # margin - (d_an - d_ap) per anchor.
    expected = ((1.0 - (_d(0, 25) - _d(0, 10))) + (1.0 - (_d(10, 25) - _d(10, 0)))) / 2
    assert triplet_loss(near, labels, margin=1.0).item() == pytest.approx(expected, abs=1e-5)
    assert triplet_loss(near, labels, margin=0.01).item() == pytest.approx(
        max(0.01 - (_d(10, 25) - _d(10, 0)), 0) / 2, abs=1e-5
    )


def test_triplet_gradients_finite_with_duplicates() -> None:
    embeddings = torch.tensor([[1.0, 0], [1.0, 0], [0.9, 0.1], [0, 1.0]], requires_grad=True)
    loss = triplet_loss(embeddings, torch.tensor([1, 1, 0, 0]))
    loss.backward()
    assert loss.item() > 0
    assert torch.isfinite(embeddings.grad).all()
    assert embeddings.grad.abs().sum() > 0


def _reference_triplet(embeddings: torch.Tensor, labels: list[int], margin: float) -> float:
    """Plain-loop semi-hard triplet loss on L2-normalised embeddings."""
    unit = [e / e.norm() for e in embeddings.double()]
    real = [u for u, y in zip(unit, labels, strict=True) if y == 1]
    fake = [u for u, y in zip(unit, labels, strict=True) if y == 0]
    losses = []
    for i, anchor in enumerate(real):
        for j, positive in enumerate(real):
            if i == j:
                continue
            ap = float((anchor - positive).square().sum())
            negatives = [float((anchor - n).square().sum()) for n in fake]
            farther = [d for d in negatives if d > ap]
            an = min(farther) if farther else max(negatives)
            losses.append(max(ap - an + margin, 0.0))
    return sum(losses) / len(losses)


@FAST
@given(
    st.lists(st.integers(0, 1), min_size=3, max_size=10).filter(
        lambda ys: sum(ys) >= 2 and len(ys) - sum(ys) >= 1
    ),
    st.integers(0, 2**31 - 1),
    st.floats(0.0, 2.0),
)
def test_triplet_matches_reference(labels: list[int], seed: int, margin: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(len(labels), 5, generator=generator)
    got = triplet_loss(embeddings, torch.tensor(labels), margin=margin)
    expected = _reference_triplet(embeddings, labels, margin)
    assert got.item() == pytest.approx(expected, abs=1e-4)
    assert got.item() >= 0
    # scale invariance (distances are on L2-normalised embeddings)
    scaled = triplet_loss(embeddings * 7.5, torch.tensor(labels), margin=margin)
    assert scaled.item() == pytest.approx(got.item(), abs=1e-4)


# --------------------------------------------------------------------------------------------
# total loss


def test_facecat_loss_is_focal_plus_weighted_triplet() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 2, generator=generator)
    embeddings = torch.randn(6, 8, generator=generator)
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    focal = focal_loss(logits, labels)
    triplet = triplet_loss(embeddings, labels)
    assert triplet.item() > 0
    total = facecat_loss(logits, embeddings, labels)
    torch.testing.assert_close(total, focal + 0.1 * triplet)
    weighted = facecat_loss(logits, embeddings, labels, triplet_weight=0.5, margin=2.0)
    torch.testing.assert_close(weighted, focal + 0.5 * triplet_loss(embeddings, labels, 2.0))
    torch.testing.assert_close(facecat_loss(logits, embeddings, labels, triplet_weight=0), focal)


def test_facecat_loss_backward() -> None:
    logits = torch.randn(6, 2, requires_grad=True)
    embeddings = torch.randn(6, 8, requires_grad=True)
    facecat_loss(logits, embeddings, torch.tensor([1, 1, 1, 0, 0, 0])).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0
