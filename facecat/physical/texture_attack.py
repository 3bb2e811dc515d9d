"""Adversarial face textures for 3D printing, optimised with expectation over the physical chain.

After AT3D (Yang et al., CVPR 2023): each wearer gets a texture over the canonical face frame,
restricted to one region (:mod:`facecat.physical.regions`), that is optimised so the photographs of
the wearer wearing its print fool the FR target: dodging (not verified as the wearer) or
impersonation (verified as a target person). Every step renders the whole batch through the
physical chain (:func:`facecat.physical.render.render`) under freshly drawn capture
conditions (pose, light, re-capture: expectation over transformation) and takes a signed
step along momentum-accumulated, L1-normalised gradients of the cosine objective
(:func:`facecat.attacks.base.attack_gain`; MI-FGSM, cosine-decayed step size), as the patch
attacks do. The texture starts as the wearer's own face (:func:`facecat.physical.render.unwrap`)
and only texels inside the region move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from facecat.attacks.base import attack_gain, check_mode, frozen
from facecat.physical.regions import region_mask
from facecat.physical.render import Capture, render, unwrap
from facecat.recognition.face_recognition import FaceRecognizer

__all__ = ["TextureAttack"]


@dataclass(frozen=True)
class TextureAttack:
    """EOT optimisation of region-restricted printable textures against an FR target.

    Args:
        steps: optimisation steps (one capture per wearer and step).
        alpha: initial step size of the signed updates (cosine-decayed to 0).
        decay: momentum of the L1-normalised gradients.
        texture_size: side of the texture over the canonical frame.
    """

    steps: int = 30
    alpha: float = 10 / 255
    decay: float = 0.9
    texture_size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        if not self.alpha > 0 or not self.decay >= 0 or self.texture_size < 8:
            raise ValueError(
                f"need alpha > 0, decay >= 0 and texture_size >= 8, got {self.alpha}, "
                f"{self.decay}, {self.texture_size}"
            )

    def __call__(
        self,
        recognizer: FaceRecognizer,
        faces: Tensor,
        landmarks: Tensor,
        references: Tensor,
        *,
        region: str,
        mode: str,
        generator: torch.Generator,
    ) -> Tensor:
        """Optimise one texture per wearer.

        Args:
            recognizer: the FR target.
            faces: (B, 3, H, W) wearers' photographs in [0, 1].
            landmarks: (B, 5, 2) their landmarks in pixels.
            references: (B, D) native descriptors: the wearers' (dodging) or the targets'
                (impersonation).
            region: a key of :data:`facecat.physical.regions.REGIONS`.
            mode: "dodging" or "impersonation".
            generator: the only source of randomness (captures, noise).

        Returns:
            (B, 3, T, T) textures in [0, 1]; equal to the wearer's own face outside the
            region.

        Shape:
            faces (B, 3, H, W), landmarks (B, 5, 2), references (B, D) -> (B, 3, T, T)
        """
        mode = check_mode(mode)
        if references.ndim != 2 or len(references) != len(faces):
            raise ValueError(
                f"references must be (B, D) with B = {len(faces)}, got {tuple(references.shape)}"
            )
        start = unwrap(faces, landmarks, self.texture_size).detach()
        mask = region_mask(region, self.texture_size, faces)
        movable = (mask > 0).to(faces.dtype)
        texture = start.clone()
        momentum = torch.zeros_like(texture)
        with frozen(recognizer):
            for step in range(self.steps):
                texture.requires_grad_(True)
                capture = Capture.sample(len(faces), generator, device=faces.device)
                photos, _ = render(faces, landmarks, texture, mask, capture, generator=generator)
                gain = attack_gain(recognizer(photos), references, mode).sum()
                (gradient,) = torch.autograd.grad(gain, texture)
                gradient = gradient * movable
                scale = gradient.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
                momentum = self.decay * momentum + gradient / scale
                size = self.alpha * 0.5 * (1 + math.cos(math.pi * step / self.steps))
                texture = (texture.detach() + size * momentum.sign() * movable).clamp(0, 1)
        return texture.detach()
