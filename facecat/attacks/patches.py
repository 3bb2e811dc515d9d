"""White-box patch attacks: adversarial eyeglasses, sticker and face mask.

A patch attack replaces the pixels of a landmark-placed region (:mod:`.regions`) with
free content: ``adversarial = images * (1 - mask) + patch * mask``, the patch unconstrained in
[0, 1] inside the mask. Starting from the clean pixels, the patch is optimised on the cosine
objective (:func:`facecat.attacks.base.attack_gain`) by signed steps along momentum-
accumulated, L1-normalised gradients (MI-FGSM) with a cosine-decayed step size, and with an
expectation over transformations: at each step the patch and its mask are moved together by
a random sub-pixel shift (up to ``max_shift`` pixels) and rescaled by up to ``max_scale``
about the image centre, so the result does not rely on exact placement. The returned images
apply the final patch through the untransformed mask: only pixels inside the mask change.

Against dlib's ResNet on the bundled 64x64 faces the defaults (100 steps) reach 94-100%
success in both modes; a clean-pixel start beat a uniform-noise start, and momentum helped
the smallest region (the sticker).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from facecat.attacks.base import AttackBase, AttackInputs, check_positive
from facecat.attacks.regions import REGIONS, STICKER_PLACES
from facecat.attacks.registry import register_attack
from facecat.recognition.face_recognition import FaceRecognizer

__all__ = ["PATCH_INITS", "Eyeglass", "Facemask", "PatchAttack", "Sticker", "random_placement"]


def _random_patch(images: Tensor, generator: torch.Generator) -> Tensor:
    return torch.rand(images.shape, generator=generator, device=images.device).to(images.dtype)


def _image_patch(images: Tensor, generator: torch.Generator) -> Tensor:
    return images.clone()


#: Initial patch content: (images, generator) -> patch (B, 3, H, W) in [0, 1].
PATCH_INITS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "random": _random_patch,
    "image": _image_patch,
}


def random_placement(
    batch: int,
    size: tuple[int, int],
    *,
    max_shift: float,
    max_scale: float,
    generator: torch.Generator,
    like: Tensor,
) -> Tensor:
    """Sampling grids (B, H, W, 2) for ``F.grid_sample`` that shift and rescale images.

    Each image gets its own shift, uniform in [-max_shift, max_shift] pixels per axis, and
    scale, uniform in [1 - max_scale, 1 + max_scale], about the image centre.
    """
    height, width = size
    options = {"generator": generator, "device": like.device, "dtype": like.dtype}
    scale = 1 + max_scale * (2 * torch.rand(batch, **options) - 1)
    shift = max_shift * (2 * torch.rand(batch, 2, **options) - 1)
    shift = shift * torch.tensor([2 / width, 2 / height], device=like.device, dtype=like.dtype)
    theta = torch.zeros(batch, 2, 3, device=like.device, dtype=like.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = -shift / scale[:, None]
    return F.affine_grid(theta, [batch, 1, height, width], align_corners=False)


class PatchAttack(AttackBase):
    """Optimises free patch content inside a landmark-placed region.

    Args:
        model: the FR target.
        mode: "dodging" or "impersonation".
        steps: optimisation steps.
        alpha: initial step size of the signed updates (decayed to 0 by a cosine schedule).
        max_shift: largest random shift of patch and mask per step, in pixels (0: none).
        max_scale: largest relative random rescaling per step (0: none).
        decay: momentum of the L1-normalised gradients (MI-FGSM style; 0: plain signed
            gradient steps).
        init: initial patch content, a key of :data:`PATCH_INITS`: "image" (the clean
            pixels: the search starts from the clean face; the random placements break the
            zero gradient of dodging at the clean image) or "random" (uniform noise).
        seed: seed of the initial patch and the random placements.

    Attributes:
        region: key of :data:`facecat.attacks.regions.REGIONS`.
    """

    needs_landmarks: ClassVar[bool] = True
    region: ClassVar[str] = ""

    def __init__(
        self,
        model: FaceRecognizer,
        mode: str = "dodging",
        *,
        steps: int = 100,
        alpha: float = 8 / 255,
        max_shift: float = 2.0,
        max_scale: float = 0.05,
        decay: float = 0.9,
        init: str = "image",
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, mode, seed=seed)
        if init not in PATCH_INITS:
            raise ValueError(f"init must be one of {sorted(PATCH_INITS)}, got {init!r}")
        self.init = init
        check_positive("steps", steps, integer=True)
        check_positive("alpha", alpha)
        for name, value in (("max_shift", max_shift), ("max_scale", max_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not decay >= 0:
            raise ValueError(f"decay must be >= 0, got {decay!r}")
        if max_scale >= 1:
            raise ValueError(f"max_scale must be < 1, got {max_scale}")
        self.steps, self.alpha = steps, alpha
        self.max_shift, self.max_scale = float(max_shift), float(max_scale)
        self.decay = decay

    def mask(self, landmarks: Tensor, size: tuple[int, int]) -> Tensor:
        """The binary region (B, 1, H, W) for landmarks (B, 5, 2) on images of ``size``."""
        return REGIONS[self.region](landmarks, size)

    def attack(self, inputs: AttackInputs) -> Tensor:
        images, generator = inputs.images, inputs.generator
        assert inputs.landmarks is not None  # the base class enforces needs_landmarks
        batch, _, height, width = images.shape
        mask = self.mask(inputs.landmarks, (height, width)).to(images)
        patch = PATCH_INITS[self.init](images, generator)
        jitter = self.max_shift > 0 or self.max_scale > 0
        momentum = torch.zeros_like(patch)
        for step in range(self.steps):
            patch.requires_grad_(True)
            placed_patch, placed_mask = patch, mask
            if jitter:
                grid = random_placement(
                    batch,
                    (height, width),
                    max_shift=self.max_shift,
                    max_scale=self.max_scale,
                    generator=generator,
                    like=images,
                )
                placed_patch = F.grid_sample(patch, grid, align_corners=False)
                placed_mask = F.grid_sample(mask, grid, align_corners=False)
            adversarial = (images * (1 - placed_mask) + placed_patch * placed_mask).clamp(0, 1)
            gain = self.gain(adversarial, inputs.reference).sum()
            (gradient,) = torch.autograd.grad(gain, patch)
            step_size = self.alpha * 0.5 * (1 + math.cos(math.pi * step / self.steps))
            scale = gradient.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            momentum = self.decay * momentum + gradient / scale
            patch = (patch.detach() + step_size * momentum.sign()).clamp(0, 1)
        return images * (1 - mask) + patch.detach() * mask


@register_attack("Eyeglass")
class Eyeglass(PatchAttack):
    """Adversarial eyeglass frame across both eyes (Sharif et al. 2016 style)."""

    region = "eyeglass"


@register_attack("Sticker")
class Sticker(PatchAttack):
    """Adversarial rectangular sticker on the forehead (default) or a cheek.

    Args:
        model: the FR target.
        mode: "dodging" or "impersonation".
        place: "forehead", "left_cheek" or "right_cheek" (image left / right).
        **options: :class:`PatchAttack` arguments (steps, alpha, max_shift, ...).
    """

    region = "sticker"

    def __init__(
        self,
        model: FaceRecognizer,
        mode: str = "dodging",
        *,
        place: str = "forehead",
        **options: float | int | None,
    ) -> None:
        super().__init__(model, mode, **options)
        if place not in STICKER_PLACES:
            raise ValueError(f"place must be one of {sorted(STICKER_PLACES)}, got {place!r}")
        self.place = place

    def mask(self, landmarks: Tensor, size: tuple[int, int]) -> Tensor:
        return REGIONS[self.region](landmarks, size, place=self.place)


@register_attack("Facemask")
class Facemask(PatchAttack):
    """Adversarial face mask over the nose and mouth down to the chin."""

    region = "facemask"
