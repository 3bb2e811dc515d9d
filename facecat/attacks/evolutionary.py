"""Decision-based black-box evolutionary attack (Dong et al., CVPR 2019).

"Efficient Decision-based Black-box Adversarial Attacks on Face Recognition": the attacker
sees only the FR model's decision (``same_identity`` yes / no) and looks for the adversarial
image closest (L2) to the original. This implementation, batched over images (each image
keeps its own state; one model call answers one query of every image still searching):

1. **Start adversarial.** Dodging: uniform noise images, redrawn until the model no longer
   verifies them as the source (``init_tries``). Impersonation: the target image. A binary
   search on the segment from the original to that start (``init_search_steps`` queries)
   moves the start as close to the original as the decision allows.
2. **Search a low-dimensional space.** Perturbations live on a grid ``reduction`` times
   coarser than the image (3 x H/r x W/r values) and are upsampled bilinearly.
3. **(1+1)-CMA-ES step.** With a diagonal covariance C (initially I): pick k coordinates
   (``coordinate_fraction`` of them) with probability proportional to diag(C), draw
   ``z ~ N(0, C)`` on them (zero elsewhere), upsample it and scale it to ``sigma`` times the
   current distance to the original (the noise scale thus follows the distortion down).
   Add it to the current best moved ``mu`` of the way towards the original, and put the sum
   back at that distance from the original (a step along the sphere, as in the thu-ml ARES
   implementation, so every candidate is closer by the factor 1 - mu). A
   candidate is kept when it is still adversarial and closer than the current best; then
   the evolution path ``p = (1 - cc) p + sqrt(cc (2 - cc)) z`` and the covariance
   ``C = (1 - ccov) C + ccov p^2`` are updated.
4. **Success-rate adaptation.** Every ``window`` trials ``mu`` is multiplied by
   ``exp(P_success - 1/5)`` (the 1/5th success rule): larger steps while candidates keep
   succeeding, smaller ones near the decision boundary. (Scaling ``sigma`` by the same
   factor would leave the success rate unchanged near a locally flat boundary, where it
   depends on the ratio of the two, and stalls the search.)
5. **Stop** when ``max_queries`` decisions (start and binary search included) were asked for
   an image. The result is the best (smallest L2 distortion) adversarial image found: the
   best only ever changes to an adversarial candidate with a smaller distortion.

After a call, :attr:`Evolutionary.queries` (decisions asked per image),
:attr:`Evolutionary.distortion` (L2 distance of each result to its original) and
:attr:`Evolutionary.found` (an adversarial start was found; otherwise the original image is
returned unchanged) describe the run.

Against dlib's ResNet on the bundled 64x64 faces the defaults (1000 queries, ``sigma`` 0.1)
end at a root-mean-square distortion of about 0.022 for dodging and 0.007 for impersonation
(per pixel and channel, images in [0, 1]); ``sigma`` 0.03 or 0.4 converged more slowly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from facecat.attacks.base import AttackBase, AttackInputs, check_positive, check_probability
from facecat.attacks.registry import register_attack
from facecat.recognition.face_recognition import FaceRecognizer

__all__ = ["Evolutionary"]

#: The decision oracle: (candidates (B, 3, H, W), rows to ask (B,) bool) -> adversarial (B,).
Decide = Callable[[Tensor, Tensor], Tensor]
#: Which images still have queries left: () -> (B,) bool.
Budget = Callable[[], Tensor]

_MU_RANGE = (1e-5, 0.5)


def _flat_norm(x: Tensor) -> Tensor:
    return x.flatten(1).norm(dim=1)


def _per_image(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


@register_attack("Evolutionary")
class Evolutionary(AttackBase):
    """Dong et al. (2019) evolutionary attack; the model is used only through its decision.

    Args:
        model: the FR target.
        mode: "dodging" or "impersonation" (impersonation needs target images, not
            descriptors: the target image is the starting point).
        max_queries: decisions allowed per image, everything included.
        reduction: the search space is (3, ceil(H / reduction), ceil(W / reduction)).
        sigma: noise scale, relative to the current distance to the original.
        mu: initial step towards the original, relative to that distance.
        cc: evolution-path learning rate.
        ccov: covariance learning rate.
        coordinate_fraction: fraction k / m of the search coordinates perturbed per step.
        window: trials between success-rate adaptations of mu.
        init_tries: noise images tried as a dodging start.
        init_search_steps: binary-search steps from the start towards the original
            (0 keeps the start as it is).
        seed: seed of every random draw.

    Attributes:
        queries: (B,) int64, decisions asked per image in the last call.
        distortion: (B,) L2 distance of each returned image to its original.
        found: (B,) bool, whether an adversarial start was found (the attack succeeded).
    """

    def __init__(
        self,
        model: FaceRecognizer,
        mode: str = "dodging",
        *,
        max_queries: int = 1000,
        reduction: int = 4,
        sigma: float = 0.1,
        mu: float = 0.01,
        cc: float = 0.01,
        ccov: float = 0.001,
        coordinate_fraction: float = 0.05,
        window: int = 30,
        init_tries: int = 10,
        init_search_steps: int = 10,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, mode, seed=seed)
        check_positive("max_queries", max_queries, integer=True)
        check_positive("reduction", reduction, integer=True)
        check_positive("sigma", sigma)
        check_positive("mu", mu)
        check_positive("cc", cc)
        check_positive("ccov", ccov)
        check_positive("coordinate_fraction", coordinate_fraction)
        check_probability("cc", cc)
        check_probability("ccov", ccov)
        check_probability("coordinate_fraction", coordinate_fraction)
        check_positive("window", window, integer=True)
        check_positive("init_tries", init_tries, integer=True)
        if isinstance(init_search_steps, bool) or not isinstance(init_search_steps, int):
            raise ValueError(f"init_search_steps must be an int >= 0, got {init_search_steps!r}")
        if init_search_steps < 0:
            raise ValueError(f"init_search_steps must be >= 0, got {init_search_steps}")
        self.max_queries, self.reduction = max_queries, reduction
        self.sigma, self.mu, self.cc, self.ccov = sigma, mu, cc, ccov
        self.coordinate_fraction, self.window = coordinate_fraction, window
        self.init_tries, self.init_search_steps = init_tries, init_search_steps
        self.queries: Tensor | None = None
        self.distortion: Tensor | None = None
        self.found: Tensor | None = None

    def attack(self, inputs: AttackInputs) -> Tensor:
        images, generator = inputs.images, inputs.generator
        queries = torch.zeros(len(images), dtype=torch.long, device=images.device)

        def adversarial(candidates: Tensor, ask: Tensor) -> Tensor:
            """The model's decision for the rows in ``ask``; False elsewhere."""
            answer = torch.zeros_like(ask)
            rows = ask.nonzero().squeeze(1)
            if len(rows):
                with torch.no_grad():
                    descriptors = self.model(candidates[rows])
                same = self.model.same_identity(descriptors, inputs.reference[rows])
                answer[rows] = ~same if self.mode == "dodging" else same
                queries[rows] += 1
            return answer

        def budget_left() -> Tensor:
            return queries < self.max_queries

        start, found = self._start(inputs, adversarial, budget_left)
        best = self._line_search(images, start, found, adversarial, budget_left)
        best = self._evolve(images, best, found, generator, adversarial, budget_left)
        self.queries = queries
        self.found = found
        self.distortion = _flat_norm(best - images)
        return best

    def _start(
        self, inputs: AttackInputs, adversarial: Decide, budget_left: Budget
    ) -> tuple[Tensor, Tensor]:
        images = inputs.images
        if self.mode == "impersonation":
            if inputs.target_images is None:
                raise ValueError(
                    "Evolutionary impersonation starts from the target image: pass targets= "
                    "as images (B, 3, H, W), not descriptors"
                )
            start = inputs.target_images.to(images)
            if start.shape[-2:] != images.shape[-2:]:
                start = F.interpolate(
                    start,
                    size=images.shape[-2:],
                    mode="bilinear",
                    align_corners=False,
                    antialias=start.shape[-1] > images.shape[-1],
                ).clamp(0, 1)
            return start, adversarial(start, budget_left())
        start = images.clone()
        found = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        for _ in range(self.init_tries):
            ask = ~found & budget_left()
            if not ask.any():
                break
            noise = torch.rand(
                images.shape, generator=inputs.generator, device=images.device, dtype=images.dtype
            )
            start = torch.where(_per_image(ask), noise, start)
            found |= adversarial(start, ask)
        return start, found

    def _line_search(
        self,
        images: Tensor,
        start: Tensor,
        found: Tensor,
        adversarial: Decide,
        budget_left: Budget,
    ) -> Tensor:
        """Binary search for the adversarial point closest to the original on the segment."""
        low = torch.zeros(len(images), device=images.device, dtype=images.dtype)
        high = torch.ones_like(low)
        for _ in range(self.init_search_steps):
            ask = found & budget_left()
            if not ask.any():
                break
            middle = (low + high) / 2
            is_adversarial = adversarial(images + _per_image(middle) * (start - images), ask)
            high = torch.where(ask & is_adversarial, middle, high)
            low = torch.where(ask & ~is_adversarial, middle, low)
        best = images + _per_image(high) * (start - images)
        return torch.where(_per_image(found), best.clamp(0, 1), images)

    def _evolve(
        self,
        images: Tensor,
        best: Tensor,
        found: Tensor,
        generator: torch.Generator,
        adversarial: Decide,
        budget_left: Budget,
    ) -> Tensor:
        batch, channels, height, width = images.shape
        small = (channels, math.ceil(height / self.reduction), math.ceil(width / self.reduction))
        dims = math.prod(small)
        k = max(1, round(self.coordinate_fraction * dims))
        options = {"device": images.device, "dtype": images.dtype}
        covariance = torch.ones(batch, dims, **options)
        path = torch.zeros(batch, dims, **options)
        mu = torch.full((batch,), self.mu, **options)
        successes = torch.zeros(batch, **options)
        trials = torch.zeros(batch, **options)
        path_rate = math.sqrt(self.cc * (2 - self.cc))
        while True:
            active = found & budget_left()
            if not active.any():
                return best
            towards = images - best
            distance = _flat_norm(towards)
            chosen = torch.multinomial(covariance, k, replacement=False, generator=generator)
            draws = torch.randn(batch, k, generator=generator, **options)
            z = torch.zeros_like(covariance).scatter_(
                1, chosen, draws * covariance.gather(1, chosen).sqrt()
            )
            noise = F.interpolate(
                z.view(batch, *small), size=(height, width), mode="bilinear", align_corners=False
            )
            noise = noise * _per_image(self.sigma * distance / _flat_norm(noise).clamp_min(1e-12))
            offset = best + noise + _per_image(mu) * towards - images
            radius = (1 - mu) * distance / _flat_norm(offset).clamp_min(1e-12)
            candidate = (images + offset * _per_image(radius)).clamp(0, 1)
            closer = _flat_norm(candidate - images) < distance
            accept = adversarial(candidate, active) & closer
            best = torch.where(_per_image(accept), candidate, best)
            path = torch.where(accept[:, None], (1 - self.cc) * path + path_rate * z, path)
            covariance = torch.where(
                accept[:, None], (1 - self.ccov) * covariance + self.ccov * path**2, covariance
            )
            successes += accept.to(successes)
            trials += active.to(trials)
            due = trials >= self.window
            factor = torch.exp(successes / self.window - 0.2)
            mu = torch.where(due, (mu * factor).clamp(*_MU_RANGE), mu)
            successes = torch.where(due, 0, successes)
            trials = torch.where(due, 0, trials)
