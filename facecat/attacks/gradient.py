"""White-box gradient attacks on an FR embedding: FGSM, PGD and DIM, run by torchattacks.

torchattacks 3.5.1 attacks classifiers: its loss is cross-entropy on logits. An FR model
outputs descriptors, so the attack runs on :class:`CosineLogits`, an adapter whose two
"logits" for an image x are ``(s, -s)`` with ``s = cos(f(x), r)`` the cosine similarity of
its descriptor to the reference descriptor r. Class 0 reads "is the reference identity", and
``CE(logits, 0) = softplus(-2 s)`` is strictly decreasing in s:

* dodging (r = source) runs torchattacks' default (untargeted) mode with label 0: it ascends
  CE, i.e. descends the similarity to the source;
* impersonation (r = target) runs its targeted mode with target label 0: it descends CE,
  i.e. ascends the similarity to the target.

The gradient of CE with respect to each image is the gradient of -s (dodging) or s
(impersonation) times a positive per-image factor, and every torchattacks update used here
is invariant to such factors (FGSM and PGD take the sign, DIM normalises by the mean absolute
gradient per image), so the attacks step exactly along the cosine objective of
:func:`facecat.attacks.base.attack_gain`.

torchattacks draws its random numbers (PGD's random start, DIM's resize and pad) from
torch's global generators; those draws are made reproducible by seeding the global
generators from the call's ``torch.Generator`` inside ``torch.random.fork_rng``, which
restores the global state afterwards, so attacks neither depend on nor disturb global
seeding. torchattacks is imported lazily: it is installed with ``pip install
torchattacks==3.5.1 --no-deps`` (its metadata pins ``requests~=2.25`` and asks for
torchvision, neither of which its code needs).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecat.attacks.base import AttackBase, AttackInputs, check_positive, check_probability
from facecat.attacks.registry import register_attack
from facecat.recognition.face_recognition import FaceRecognizer

__all__ = ["DIM", "FGSM", "PGD", "CosineLogits", "TorchattacksAttack", "seeded_global_rng"]


def _torchattacks() -> ModuleType:
    try:
        return importlib.import_module("torchattacks")
    except ImportError as error:
        raise ImportError(
            "the FGSM/PGD/DIM attacks run on torchattacks: "
            "pip install torchattacks==3.5.1 --no-deps"
        ) from error


class CosineLogits(nn.Module):
    """Two-class "logits" ``(s, -s)``, s = cosine similarity of the descriptor to a reference.

    Cross-entropy with label 0 is ``softplus(-2 s)``: classifier attacks that raise (lower)
    it lower (raise) the similarity to the reference.

    Args:
        model: the FR target.
        reference: reference descriptors, one row per image of the batches to come.

    Shape:
        (B, 3, H, W) -> (B, 2)
    """

    def __init__(self, model: FaceRecognizer, reference: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("reference", reference.detach())

    def forward(self, images: Tensor) -> Tensor:
        similarity = F.cosine_similarity(self.model(images), self.reference, dim=1)
        return torch.stack([similarity, -similarity], dim=1)


@contextmanager
def seeded_global_rng(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    """Seed torch's global CPU (and ``device``'s CUDA) generator from ``generator``.

    The global state is restored on exit (``torch.random.fork_rng``), so code that draws
    from the global generators (torchattacks) is reproducible without touching the
    caller's random state.
    """
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _check_step_budget(eps: float, alpha: float, steps: int) -> None:
    """Raise ValueError unless an iterative attack's budget, step size and step count are valid."""
    check_positive("eps", eps)
    check_positive("alpha", alpha)
    check_positive("steps", steps, integer=True)


class TorchattacksAttack(AttackBase):
    """A torchattacks attack run on :class:`CosineLogits` (see the module docstring)."""

    def build(self, classifier: nn.Module, torchattacks: ModuleType) -> Any:
        """The torchattacks attack object for ``classifier``; implemented by subclasses."""
        raise NotImplementedError

    def attack(self, inputs: AttackInputs) -> Tensor:
        images = inputs.images
        classifier = CosineLogits(self.model, inputs.reference).eval()
        attack = self.build(classifier, _torchattacks())
        attack.set_device(images.device)
        if self.mode == "impersonation":
            attack.set_mode_targeted_by_label(quiet=True)
        labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
        with seeded_global_rng(inputs.generator, images.device):
            return attack(images, labels)


@register_attack("FGSM")
class FGSM(TorchattacksAttack):
    """Fast gradient sign method (Goodfellow et al. 2015): one L-inf step of size ``eps``.

    Dodging away from the image's own descriptor starts at the maximum of the similarity,
    where its gradient vanishes; FGSM then takes R+FGSM's random start (Tramer et al. 2018;
    torchattacks' RFGSM with one step): a random signed step of ``eps / 2``, then a gradient
    signed step of ``eps / 2``, staying within ``eps``. One step from that point needs a
    larger budget (against dlib's ResNet on the bundled 64x64 faces: success 19% at 8/255,
    81% at 12/255, 100% at 16/255), hence the dodging default; dodging away from another
    image of the same person (``sources=``) has a gradient and succeeds at 8/255.
    Impersonation succeeds best at small budgets (88% at 6/255 and 8/255, 50% at 16/255:
    one linear step overshoots).

    Args:
        model: the FR target.
        mode: "dodging" or "impersonation".
        eps: L-inf budget; None: 16/255 for dodging, 8/255 for impersonation.
        random_start: take R+FGSM's random start; None: for dodging only.
        seed: seed of the random start.
    """

    def __init__(
        self,
        model: FaceRecognizer,
        mode: str = "dodging",
        *,
        eps: float | None = None,
        random_start: bool | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, mode, seed=seed)
        if eps is None:
            eps = 16 / 255 if self.mode == "dodging" else 8 / 255
        check_positive("eps", eps)
        self.eps = eps
        self.random_start = self.mode == "dodging" if random_start is None else random_start

    def build(self, classifier: nn.Module, torchattacks: ModuleType) -> Any:
        if self.random_start:
            return torchattacks.RFGSM(classifier, eps=self.eps, alpha=self.eps / 2, steps=1)
        return torchattacks.FGSM(classifier, eps=self.eps)


@register_attack("PGD")
class PGD(TorchattacksAttack):
    """Projected gradient descent (Madry et al. 2018), L-inf, with a uniform random start.

    Args:
        model: the FR target.
        mode: "dodging" or "impersonation".
        eps: L-inf budget.
        alpha: step size.
        steps: number of steps.
        random_start: start from a uniform point of the eps-ball.
        seed: seed of the random start.
    """

    def __init__(
        self,
        model: FaceRecognizer,
        mode: str = "dodging",
        *,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        random_start: bool = True,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, mode, seed=seed)
        _check_step_budget(eps, alpha, steps)
        self.eps, self.alpha, self.steps = eps, alpha, steps
        self.random_start = bool(random_start)

    def build(self, classifier: nn.Module, torchattacks: ModuleType) -> Any:
        return torchattacks.PGD(
            classifier,
            eps=self.eps,
            alpha=self.alpha,
            steps=self.steps,
            random_start=self.random_start,
        )


@register_attack("DIM")
class DIM(TorchattacksAttack):
    """Diverse-inputs momentum iterative FGSM (Xie et al. 2019; torchattacks' DIFGSM).

    Each step feeds the model, with probability ``diversity_prob``, a randomly shrunk (to
    ``resize_rate`` .. 1 of the side) and randomly zero-padded copy of the batch, and
    accumulates L1-normalised gradients with momentum ``decay``.

    Args:
        model: the FR target.
        mode: "dodging" or "impersonation".
        eps: L-inf budget.
        alpha: step size.
        steps: number of steps.
        decay: momentum decay factor (MI-FGSM's mu).
        resize_rate: smallest resize factor of the input diversity.
        diversity_prob: probability of applying the input diversity at a step.
        random_start: start from a uniform point of the eps-ball; None: for dodging only
            (the similarity to the image's own descriptor has no gradient at the image).
        seed: seed of the input diversity (and random start).
    """

    def __init__(
        self,
        model: FaceRecognizer,
        mode: str = "dodging",
        *,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        decay: float = 1.0,
        resize_rate: float = 0.9,
        diversity_prob: float = 0.5,
        random_start: bool | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, mode, seed=seed)
        _check_step_budget(eps, alpha, steps)
        if not decay >= 0:
            raise ValueError(f"decay must be >= 0, got {decay!r}")
        check_positive("resize_rate", resize_rate)
        check_probability("diversity_prob", diversity_prob)
        if resize_rate == 1:
            raise ValueError("resize_rate must differ from 1 (1 would not resize the input)")
        self.eps, self.alpha, self.steps, self.decay = eps, alpha, steps, decay
        self.resize_rate, self.diversity_prob = resize_rate, diversity_prob
        self.random_start = self.mode == "dodging" if random_start is None else random_start

    def build(self, classifier: nn.Module, torchattacks: ModuleType) -> Any:
        return torchattacks.DIFGSM(
            classifier,
            eps=self.eps,
            alpha=self.alpha,
            steps=self.steps,
            decay=self.decay,
            resize_rate=self.resize_rate,
            diversity_prob=self.diversity_prob,
            random_start=self.random_start,
        )
