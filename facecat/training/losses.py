"""FaceCat's training losses: alpha-balanced focal loss and semi-hard triplet loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def focal_loss(logits: Tensor, labels: Tensor, alpha: float = 0.75, gamma: float = 2.0) -> Tensor:
    """Alpha-balanced binary focal loss over two-class logits, computed in log space.

    Args:
        logits: (B, 2) logits, column 0 = fake, column 1 = real.
        labels: (B,) with 1 = real, 0 = fake.
        alpha: weight of the real class (fake gets ``1 - alpha``).
        gamma: focusing parameter.

    Returns:
        Scalar mean loss.
    """
    log_probs = F.log_softmax(logits.float(), dim=1)
    log_pt = log_probs.gather(1, labels.long()[:, None]).squeeze(1)
    # 1 - p_t via expm1, floored so that d/dx x**gamma stays finite for gamma < 1.
    one_minus_pt = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny)
    alpha_t = torch.where(labels == 1, alpha, 1.0 - alpha).to(log_pt.dtype)
    return (-alpha_t * one_minus_pt.pow(gamma) * log_pt).mean()


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float = 1.0) -> Tensor:
    """Semi-hard triplet loss: anchors and positives real, negatives fake (paper Eq. 8).

    Distances are squared Euclidean between L2-normalised embeddings. For each
    (anchor, positive) pair the negative is the closest fake farther than the positive
    (semi-hard); when none exists, the farthest fake is used. Batches without two real
    samples and one fake give a zero loss that still carries a gradient graph.

    Args:
        embeddings: (B, D).
        labels: (B,) with 1 = real, 0 = fake.
        margin: triplet margin.

    Returns:
        Scalar mean over valid (anchor, positive) pairs.
    """
    normalised = F.normalize(embeddings.float(), dim=1)
    real = normalised[labels == 1]
    fake = normalised[labels == 0]
    if len(real) < 2 or len(fake) < 1:
        return normalised.sum() * 0.0
    d_pos = torch.cdist(real, real).pow(2)
    d_neg = torch.cdist(real, fake).pow(2)
    pairs = ~torch.eye(len(real), dtype=torch.bool, device=real.device)
    anchor, positive = pairs.nonzero(as_tuple=True)
    ap = d_pos[anchor, positive]
    an = d_neg[anchor]
    farther = an > ap[:, None]
    semi_hard = torch.where(farther, an, torch.full_like(an, float("inf"))).min(dim=1).values
    hardest_fallback = an.max(dim=1).values
    negative = torch.where(farther.any(dim=1), semi_hard, hardest_fallback)
    return F.relu(ap - negative + margin).mean()


def facecat_loss(
    logits: Tensor,
    embeddings: Tensor,
    labels: Tensor,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    triplet_weight: float = 0.1,
    margin: float = 1.0,
) -> Tensor:
    """Total loss: focal(logits) + triplet_weight * triplet(embeddings)."""
    focal = focal_loss(logits, labels, alpha, gamma)
    if triplet_weight == 0:
        return focal
    return focal + triplet_weight * triplet_loss(embeddings, labels, margin)
