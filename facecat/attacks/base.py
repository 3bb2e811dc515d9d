"""The one attack base class, the attack objective and the success criterion.

Every adversarial-face attack is an :class:`AttackBase`: it is built around a
:class:`~facecat.recognition.face_recognition.FaceRecognizer` and a mode, and called on a
batch of aligned face crops in [0, 1]. The base class does what every attack needs and none
should repeat, in the manner of torchattacks' ``Attack``:

* validates the batch (shape, dtype, range), the landmarks and the targets;
* computes the reference descriptors: the clean images' own descriptors for dodging (unless
  ``sources`` are given), the target identity's descriptors for impersonation;
* puts the FR model in eval mode with its parameters frozen (no gradient ever accumulates on
  them) and restores every submodule's train/eval mode and every ``requires_grad`` flag
  afterwards, also when the attack raises;
* draws every random number from one ``torch.Generator`` seeded from ``seed`` at each call,
  so the same inputs give the same adversarial images;
* returns detached images clamped to [0, 1].

The objective is the cosine similarity of unit embeddings: dodging minimises the similarity
to the source, impersonation maximises the similarity to the target (:func:`attack_gain` is
the quantity an attack maximises). Success is judged by the FR model's own metric and
threshold (:func:`attack_success`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecat.recognition.face_recognition import FaceRecognizer, check_face_batch

__all__ = [
    "MODES",
    "AttackBase",
    "AttackInputs",
    "attack_gain",
    "attack_success",
    "check_mode",
    "check_positive",
    "check_probability",
    "frozen",
    "reference_descriptors",
]

#: Attack modes: push away from the source identity, or pull towards a target identity.
MODES: tuple[str, ...] = ("dodging", "impersonation")


def check_mode(mode: str) -> str:
    """Normalise a mode name ("Dodging", "impersonation", ...) to one of :data:`MODES`.

    Raises:
        ValueError: For any other name.
    """
    normalised = mode.lower() if isinstance(mode, str) else mode
    if normalised not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return normalised


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a finite number > 0.

    Args:
        name: argument name used in the message.
        value: the value.
        integer: also require an integer (steps, queries).
    """
    if integer and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_probability(name: str, value: float) -> None:
    """Raise ValueError naming ``name`` unless ``0 <= value <= 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters inside the block; the previous state restored after.

    Every submodule's own ``training`` flag and every parameter's ``requires_grad`` are saved
    and restored (also on error), so a model with mixed train/eval submodules comes back as it
    was and no gradient accumulates on its parameters during an attack.
    """
    modes = [(module, module.training) for module in model.modules()]
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    model.eval()
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def reference_descriptors(
    model: FaceRecognizer, reference: Tensor, batch_size: int, *, name: str
) -> Tensor:
    """Native descriptors of reference images or descriptors, one row per attacked image.

    Args:
        model: the FR target.
        reference: images (B or 1, 3, H, W) in [0, 1], or the model's native descriptors
            (B or 1, D).
        batch_size: B, the number of attacked images; a single reference is broadcast.
        name: argument name used in messages ("sources", "targets").

    Returns:
        Descriptors (B, D), detached.

    Raises:
        ValueError: If ``reference`` is neither images nor (N, D) descriptors, or N is not B
            or 1.
    """
    if not isinstance(reference, Tensor) or reference.ndim not in (2, 4):
        shape = tuple(reference.shape) if isinstance(reference, Tensor) else type(reference)
        raise ValueError(f"{name} must be images (B, 3, H, W) or descriptors (B, D), got {shape}")
    if reference.shape[0] not in (batch_size, 1):
        raise ValueError(
            f"{name} holds {reference.shape[0]} rows for {batch_size} images; give one per "
            "image or a single one for all"
        )
    if reference.ndim == 4:
        check_face_batch(reference)
        with torch.no_grad():
            reference = model(reference)
    return reference.detach().expand(batch_size, -1)


def attack_gain(descriptors: Tensor, reference: Tensor, mode: str) -> Tensor:
    """What an attack maximises: the cosine similarity to the reference, signed by mode.

    Args:
        descriptors: descriptors of the adversarial images (B, D).
        reference: reference descriptors (B, D): the source's for dodging, the target's for
            impersonation.
        mode: "dodging" (gain = -cos) or "impersonation" (gain = cos).

    Returns:
        Per-image gain (B,).
    """
    similarity = F.cosine_similarity(descriptors, reference, dim=1)
    return -similarity if check_mode(mode) == "dodging" else similarity


def attack_success(
    model: FaceRecognizer,
    adversarial: Tensor,
    sources: Tensor | None,
    targets: Tensor | None,
    mode: str,
) -> Tensor:
    """Whether each adversarial image fools the FR model, by its own metric and threshold.

    Dodging succeeds when the model does NOT verify the adversarial image as the source;
    impersonation succeeds when it verifies it as the target.

    Args:
        model: the FR target.
        adversarial: adversarial images (B, 3, H, W) in [0, 1].
        sources: source images or native descriptors (B or 1 rows); needed for dodging.
        targets: target images or native descriptors (B or 1 rows); needed for impersonation.
        mode: "dodging" or "impersonation".

    Returns:
        Bool tensor (B,).

    Raises:
        ValueError: If the reference the mode needs is missing or malformed.
    """
    mode = check_mode(mode)
    check_face_batch(adversarial)
    reference, name = (sources, "sources") if mode == "dodging" else (targets, "targets")
    if reference is None:
        raise ValueError(f"{mode} success is judged against {name}; pass {name}=")
    with frozen(model), torch.no_grad():
        wanted = reference_descriptors(model, reference, len(adversarial), name=name)
        same = model.same_identity(model(adversarial), wanted)
    return ~same if mode == "dodging" else same


@dataclass
class AttackInputs:
    """What an attack's :meth:`AttackBase.attack` receives for one call.

    Attributes:
        images: clean images (B, 3, H, W) in [0, 1].
        reference: native descriptors (B, D) to move away from (dodging: the sources) or
            towards (impersonation: the targets).
        generator: the only source of randomness, seeded for this call.
        landmarks: (B, 5, 2) pixel coordinates in the images' frame, or None.
        target_images: target images (B, 3, H, W) when impersonation targets were given as
            images, else None.
    """

    images: Tensor
    reference: Tensor
    generator: torch.Generator
    landmarks: Tensor | None = None
    target_images: Tensor | None = None


class AttackBase:
    """Base class of adversarial-face attacks against an FR model.

    Subclasses implement :meth:`attack`; they are registered by name with
    :func:`facecat.attacks.registry.register_attack`.

    Args:
        model: the FR target.
        mode: "dodging" or "impersonation" (case-insensitive).
        seed: seed of the generator used for every random draw (re-seeded at each call, so a
            call is reproducible); None draws a fresh seed at each call.

    Attributes:
        name: registry name of the attack ("PGD", ...).
        needs_landmarks: whether calls must pass ``landmarks``.
    """

    name: ClassVar[str] = "attack"
    needs_landmarks: ClassVar[bool] = False

    def __init__(self, model: FaceRecognizer, mode: str = "dodging", *, seed: int | None = 0):
        if not isinstance(model, FaceRecognizer):
            raise TypeError(
                f"model must be a facecat FaceRecognizer (wrap torch modules with "
                f"TorchRecognizer), got {type(model).__name__}"
            )
        self.model = model
        self.mode = check_mode(mode)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model.name!r}, mode={self.mode!r})"

    def __call__(
        self,
        images: Tensor,
        *,
        sources: Tensor | None = None,
        targets: Tensor | None = None,
        landmarks: Tensor | np.ndarray | None = None,
    ) -> Tensor:
        """Adversarial versions of ``images``.

        Args:
            images: clean aligned face crops in [0, 1].
            sources: dodging reference, images or native descriptors (B or 1 rows); default:
                the descriptors of ``images`` themselves. Ignored for impersonation.
            targets: impersonation target identity, images or native descriptors (B or 1
                rows); required for impersonation, ignored for dodging.
            landmarks: five landmarks per image in the images' pixel coordinates (left eye,
                right eye, nose, left and right mouth corners); required by patch attacks.

        Shape:
            images: (B, 3, H, W); landmarks: (B, 5, 2); returns (B, 3, H, W).

        Returns:
            Adversarial images in [0, 1], detached, same dtype and device as ``images``.

        Raises:
            ValueError: On a malformed batch, a missing target (impersonation) or missing
                landmarks (patch attacks).
        """
        check_face_batch(images)
        batch = len(images)
        if self.mode == "impersonation" and targets is None:
            raise ValueError(
                f"{self.name} impersonation needs targets= (target identity images or "
                "descriptors, one per image or one for all)"
            )
        landmarks = self._landmarks(landmarks, images)
        if batch == 0:
            return images.detach().clone()
        with frozen(self.model):
            if self.mode == "dodging":
                given = images if sources is None else sources
                reference = reference_descriptors(self.model, given, batch, name="sources")
                target_images = None
            else:
                reference = reference_descriptors(self.model, targets, batch, name="targets")
                target_images = targets.expand(batch, -1, -1, -1) if targets.ndim == 4 else None
            inputs = AttackInputs(
                images=images.detach(),
                reference=reference,
                generator=self._generator(images.device),
                landmarks=landmarks,
                target_images=target_images,
            )
            adversarial = self.attack(inputs)
        if adversarial.shape != images.shape:
            raise RuntimeError(
                f"{self.name} returned {tuple(adversarial.shape)} for {tuple(images.shape)}"
            )
        return adversarial.detach().clamp(0, 1).to(images.dtype)

    def attack(self, inputs: AttackInputs) -> Tensor:
        """Craft the adversarial batch; the model is frozen and in eval mode here.

        Args:
            inputs: the validated call (images, reference descriptors, generator, ...).

        Returns:
            Adversarial images (B, 3, H, W).
        """
        raise NotImplementedError

    def gain(self, images: Tensor, reference: Tensor) -> Tensor:
        """Per-image objective to maximise for images (B, 3, H, W): see :func:`attack_gain`."""
        return attack_gain(self.model(images), reference, self.mode)

    def _generator(self, device: torch.device) -> torch.Generator:
        generator = torch.Generator(device=device)
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        return generator

    def _landmarks(self, landmarks: Tensor | np.ndarray | None, images: Tensor) -> Tensor | None:
        if landmarks is None:
            if self.needs_landmarks:
                raise ValueError(
                    f"{self.name} places its patch from facial landmarks; pass landmarks= "
                    "(B, 5, 2) pixel coordinates (left eye, right eye, nose, left and right "
                    "mouth corners), e.g. Manifest.landmarks"
                )
            return None
        landmarks = torch.as_tensor(landmarks, dtype=images.dtype, device=images.device)
        if landmarks.shape != (len(images), 5, 2):
            raise ValueError(
                f"landmarks must be ({len(images)}, 5, 2) for {len(images)} images, got "
                f"{tuple(landmarks.shape)}"
            )
        if not torch.isfinite(landmarks).all():
            raise ValueError("landmarks must be finite")
        return landmarks
