"""An adaptive attacker who knows the detector: adversarial faces that also fool it.

Beyond the paper: the attacker starts from adversarial faces that already fool the FR model
and adds an L-inf perturbation of at most ``eps`` (around the adversarial face) that
maximises the detector's log P(real) while keeping the FR objective (the same cosine gain
the FR attack maximised). Each step averages the gradient over random differentiable input
transformations (expectation over transformation, EOT), so the perturbation survives the
pre-processing a defender might apply. Signed-gradient steps with a cosine step schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from facecat.attacks.base import attack_gain
from facecat.face_recognition import FaceRecognizer
from facecat.robustness.transforms import apply_transform

#: Transformations and severities the attacker averages over (severity 0 = none).
EOT_TRANSFORMS = ("jpeg", "gaussian_blur", "bit_depth", "downscale")
EOT_SEVERITIES = (0, 1, 2)

#: A differentiable P(real) for images in [0, 1]: (B, 3, S, S) -> (B,).
ScoreFn = Callable[[Tensor], Tensor]


def differentiable_scores(detector: torch.nn.Module) -> ScoreFn:
    """The detector's differentiable P(real), or a clear error when it has none."""
    method = getattr(detector, "differentiable_scores", None)
    if method is None:
        raise TypeError(
            f"{type(detector).__name__} has no differentiable_scores(images); the adaptive "
            "suite needs gradients of P(real) with respect to the input"
        )
    return method


def adaptive_attack(
    score: ScoreFn,
    recognizer: FaceRecognizer,
    images: Tensor,
    references: Tensor,
    modes: Sequence[str],
    *,
    eps: float,
    steps: int = 10,
    fr_weight: float = 1.0,
    eot_samples: int = 2,
    transforms: Sequence[str] = EOT_TRANSFORMS,
    seed: int = 0,
) -> Tensor:
    """Perturb adversarial faces to be scored real while staying adversarial to the FR model.

    Args:
        score: differentiable P(real) of the detector.
        recognizer: the FR target.
        images: adversarial faces (B, 3, H, W) in [0, 1].
        references: FR descriptors (B, D): the source's for dodging, the target's for
            impersonation.
        modes: "dodging" or "impersonation" per image.
        eps: L-inf budget around ``images`` (0 returns them unchanged).
        steps: signed-gradient steps.
        fr_weight: weight of the FR gain against the detector's log P(real).
        eot_samples: random transformations averaged per step.
        transforms: transformation names the attacker averages over.
        seed: seed of the transformation draws.

    Returns:
        The perturbed faces, same shape, in [0, 1].
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if eps == 0:
        return images.clone()
    generator = torch.Generator().manual_seed(seed)
    signs = torch.tensor(
        [1.0 if m == "impersonation" else -1.0 for m in modes], device=images.device
    )
    delta = torch.zeros_like(images)
    for step in range(steps):
        delta.requires_grad_(True)
        candidate = (images + delta).clamp(0, 1)
        objective = torch.zeros((), device=images.device)
        for sample in range(eot_samples):
            name = transforms[int(torch.randint(len(transforms), (1,), generator=generator))]
            severity = EOT_SEVERITIES[
                int(torch.randint(len(EOT_SEVERITIES), (1,), generator=generator))
            ]
            seen = apply_transform(name, candidate, severity, seed=seed * 1000 + step + sample)
            objective = objective + score(seen).clamp_min(1e-6).log().sum()
        objective = objective / eot_samples
        gains = _gains(recognizer(candidate), references, signs)
        (gradient,) = torch.autograd.grad(objective + fr_weight * gains.sum(), delta)
        step_size = eps / 4 * 0.5 * (1 + math.cos(math.pi * step / steps))
        delta = (delta.detach() + step_size * gradient.sign()).clamp(-eps, eps)
    return (images + delta).clamp(0, 1).detach()


def _gains(descriptors: Tensor, references: Tensor, signs: Tensor) -> Tensor:
    """Per-image FR gain: +cos for impersonation, -cos for dodging (see ``attack_gain``)."""
    return signs * attack_gain(descriptors, references, "impersonation")
