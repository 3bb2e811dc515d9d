"""An adaptive attacker who knows the detector: adversarial faces that also fool it.

Beyond the paper: the attacker starts from adversarial faces that already fool the FR model
and adds an L-inf perturbation of at most ``eps`` (around the adversarial face) that
maximises the detector's log P(real) while keeping the FR objective (the same cosine gain
the FR attack maximised). Each step averages the gradient over random differentiable input
transformations (expectation over transformation, EOT), so the perturbation survives the
pre-processing a defender might apply. Signed-gradient steps with a cosine step schedule,
random restarts inside the budget and a per-face early stop once the face is accepted and
still fools the FR model (:class:`AttackSettings`: 100 steps, 8 EOT samples, 2 restarts by
default, as attack-library evaluations use hundreds of steps and many EOT samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from facecat.attacks.base import attack_gain
from facecat.recognition.face_recognition import FaceRecognizer
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


@dataclass(frozen=True)
class AttackSettings:
    """How hard the adaptive attacker tries.

    Args:
        steps: signed-gradient steps per restart.
        eot_samples: random transformations averaged per step (expectation over
            transformation).
        restarts: runs per face; the first starts at the adversarial face, the others at a
            uniformly random point of the budget's L-inf ball.
        first_step: the first step size as a fraction of the budget; it decays to 0 along a
            cosine schedule.
        fr_weight: weight of the FR gain against the detector's log P(real).
        transforms: transformation names the attacker averages over.
    """

    steps: int = 100
    eot_samples: int = 8
    restarts: int = 2
    first_step: float = 0.25
    fr_weight: float = 1.0
    transforms: tuple[str, ...] = EOT_TRANSFORMS

    def __post_init__(self) -> None:
        if self.steps < 1 or self.eot_samples < 1 or self.restarts < 1:
            raise ValueError(
                f"steps, eot_samples and restarts must be >= 1, got {self.steps}, "
                f"{self.eot_samples}, {self.restarts}"
            )
        if not 0 < self.first_step <= 1:
            raise ValueError(f"first_step must be in (0, 1], got {self.first_step}")

    def describe(self) -> str:
        """One line for a results row, e.g. "100 steps x 8 EOT, 2 restarts"."""
        return f"{self.steps} steps x {self.eot_samples} EOT, {self.restarts} restarts"


def adaptive_attack(
    score: ScoreFn,
    recognizer: FaceRecognizer,
    images: Tensor,
    references: Tensor,
    modes: Sequence[str],
    *,
    eps: float,
    threshold: float | None = None,
    settings: AttackSettings | None = None,
    seed: int = 0,
) -> Tensor:
    """Perturb adversarial faces to be scored real while staying adversarial to the FR model.

    A face is done once the detector accepts it untransformed (P(real) >= ``threshold``)
    while it still fools the FR model; it then keeps that perturbation and leaves the batch.
    Otherwise every restart runs all its steps, and the face keeps the candidate with the
    highest P(real) among those fooling the FR model (the last one when none does).

    Args:
        score: differentiable P(real) of the detector.
        recognizer: the FR target.
        images: adversarial faces (B, 3, H, W) in [0, 1].
        references: FR descriptors (B, D): the source's for dodging, the target's for
            impersonation.
        modes: "dodging" or "impersonation" per image.
        eps: L-inf budget around ``images`` (0 returns them unchanged).
        threshold: the detector's decision threshold (None: no early stop).
        settings: steps, EOT samples, restarts and schedule (default :class:`AttackSettings`).
        seed: seed of the random starts and the transformation draws.

    Returns:
        The perturbed faces, same shape, in [0, 1].
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if eps == 0:
        return images.clone()
    settings = settings or AttackSettings()
    generator = torch.Generator().manual_seed(seed)
    impersonation = torch.tensor([m == "impersonation" for m in modes], device=images.device)
    signs = impersonation.float() * 2 - 1
    best = images.clone()
    best_score = torch.full((len(images),), -math.inf, device=images.device)
    done = torch.zeros(len(images), dtype=torch.bool, device=images.device)
    for restart in range(settings.restarts):
        active = torch.nonzero(~done).flatten()
        if not len(active):
            break
        view_seed = seed * 1_000_003 + restart * 100_003
        delta = torch.zeros_like(images[active])
        if restart:
            noise = torch.rand(delta.shape, generator=generator).to(images.device)
            delta = (noise * 2 - 1) * eps
        for step in range(settings.steps + 1):
            delta.requires_grad_(True)
            candidate = (images[active] + delta).clamp(0, 1)
            views = [candidate] + [
                _random_view(candidate, settings.transforms, generator, view_seed + step * 101 + k)
                for k in range(settings.eot_samples)
            ]
            p_real = score(torch.cat(views)).view(len(views), len(active))
            descriptors = recognizer(candidate)
            with torch.no_grad():
                same = recognizer.same_identity(descriptors, references[active])
                fooled = same == impersonation[active]
                clean = p_real[0].detach()
                better = fooled & (clean > best_score[active])
                best[active[better]] = candidate.detach()[better]
                best_score[active[better]] = clean[better]
                if threshold is not None:
                    done[active] |= fooled & (clean >= threshold)
                if step == settings.steps:
                    unfooled = ~fooled & (best_score[active] == -math.inf)
                    best[active[unfooled]] = candidate.detach()[unfooled]
            keep = ~done[active]
            if step == settings.steps or not keep.any():
                break
            objective = p_real[1:].clamp_min(torch.finfo(p_real.dtype).tiny).log().mean(dim=0)
            gains = signs[active] * attack_gain(descriptors, references[active], "impersonation")
            (gradient,) = torch.autograd.grad((objective + settings.fr_weight * gains).sum(), delta)
            size = settings.first_step * eps * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
            delta = (delta.detach() + size * gradient.sign()).clamp(-eps, eps)
            active, delta = active[keep], delta[keep]
    return best.detach()


def _random_view(
    images: Tensor, transforms: Sequence[str], generator: torch.Generator, seed: int
) -> Tensor:
    """``images`` through one randomly drawn transformation and severity (0 = none)."""
    name = transforms[int(torch.randint(len(transforms), (1,), generator=generator))]
    severity = EOT_SEVERITIES[int(torch.randint(len(EOT_SEVERITIES), (1,), generator=generator))]
    return apply_transform(name, images, severity, seed=seed)
