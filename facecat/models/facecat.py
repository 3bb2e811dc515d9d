"""The FaceCat detector: frozen diffusion features -> fusion -> head -> text-aligned logits."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facecat.core.checkpoints import (
    CheckpointError,
    load_state_dict_file,
    load_strict,
    state_digest,
)
from facecat.core.device import pick_device
from facecat.core.images import check_image_batch
from facecat.models.config import FaceCatConfig
from facecat.models.diffusion import GaussianDiffusion
from facecat.models.features import DiffusionFeatureExtractor, unflatten_features
from facecat.models.fusion import create_fusion
from facecat.models.head import EmbeddingHead, create_head
from facecat.models.registry import register_kind
from facecat.models.text import class_weights, cosine_logits, create_text_encoder, load_prompt_set
from facecat.models.unet import UNet

log = logging.getLogger(__name__)

REAL = 1
FAKE = 0
RANDOM_BACKBONE = "random"


class FaceCat(nn.Module):
    """Unified face anti-spoofing and adversarial-face detector.

    Args:
        config: the detector configuration.
        class_weights: (2, D) unit text embeddings, rows [fake, real]; required when
            ``config.text_guided``. Without text guidance a linear classifier over a 512-d
            embedding is used instead (the "w/o TG" ablation).

    Example:
        >>> detector = create_detector("facecat-tiny")  # doctest: +SKIP
        >>> detector.scores(torch.rand(4, 3, 32, 32)).shape  # doctest: +SKIP
        torch.Size([4])
    """

    #: State-dict prefix of the frozen diffusion UNet (left out of shipped detector files).
    BACKBONE_PREFIX = "extractor.unet."

    def __init__(self, config: FaceCatConfig, class_weights: Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        unet = UNet(config.unet)
        self.extractor = DiffusionFeatureExtractor(
            unet, GaussianDiffusion(config.diffusion_steps), config.features
        )
        self.fusion = create_fusion(config.fusion, self.extractor.block_shapes())
        if config.text_guided:
            if class_weights is None or class_weights.ndim != 2 or class_weights.shape[0] != 2:
                raise ValueError(
                    "a text-guided FaceCat needs class_weights of shape (2, D), rows [fake, real]"
                )
            embed_dim = class_weights.shape[1]
            self.register_buffer("class_weights", class_weights.float().clone())
            self.classifier = None
        else:
            embed_dim = 512
            self.class_weights = None
            self.classifier = nn.Linear(embed_dim, 2)
        self.head = create_head(config.head, self.fusion.out_channels, embed_dim)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def provenance(self) -> dict[str, Any]:
        """Where the backbone came from and its digest, stored in saved detector files."""
        return {
            "backbone_source": getattr(self, "backbone_source", "unknown"),
            "backbone_sha256": self.backbone_digest(),
        }

    def backbone_digest(self) -> str:
        """SHA-256 of the frozen UNet's weights (computed once; the backbone never changes)."""
        if getattr(self, "_backbone_digest", None) is None:
            self._backbone_digest = state_digest(self.extractor.unet.state_dict())
        return self._backbone_digest

    def trainable_modules(self) -> nn.ModuleDict:
        """The parts that training updates (the diffusion backbone stays frozen)."""
        parts = {"fusion": self.fusion, "head": self.head}
        if self.classifier is not None:
            parts["classifier"] = self.classifier
        return nn.ModuleDict(parts)

    def logits_from_features(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Logits and embeddings from extracted block features.

        Returns:
            ``(logits (B, 2) with columns [fake, real], embeddings (B, D))``.
        """
        embeddings = self.head(self.fusion(features))
        if self.classifier is not None:
            return self.classifier(embeddings), embeddings
        return cosine_logits(
            embeddings, self.class_weights, self.config.text.logit_scale
        ), embeddings

    def logits_from_rows(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Like :meth:`logits_from_features` for flattened cache rows (B, D_features)."""
        return self.logits_from_features(unflatten_features(rows, self.extractor.block_shapes()))

    def forward(self, images: Tensor, differentiable: bool = False) -> Tensor:
        """Two-class logits [fake, real] for images in [0, 1].

        Shape:
            (B, 3, S, S) -> (B, 2)
        """
        features = self.extractor(images, differentiable=differentiable)
        return self.logits_from_features(features)[0]

    def differentiable_scores(self, images: Tensor) -> Tensor:
        """P(real) with gradients with respect to the images (for adaptive attackers).

        The backbone stays frozen and in its current mode; only the input gets gradients.

        Shape:
            (B, 3, S, S) -> (B,)
        """
        check_image_batch(images)
        return self(images, differentiable=True).softmax(dim=1)[:, REAL]

    def scores(self, images: Tensor) -> Tensor:
        """P(real) for a batch of RGB images in [0, 1].

        Shape:
            (B, 3, S, S) -> (B,)
        """
        check_image_batch(images)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self(images).softmax(dim=1)[:, REAL]
        finally:
            self.train(was_training)


@functools.lru_cache(maxsize=8)
def _text_class_weights(backend: str, model: str, prompts: str, weights: str | None) -> Tensor:
    options = {"model_name": model, "weights": weights} if backend == "clip" else {}
    encoder = create_text_encoder(backend, **options)
    return class_weights(encoder, load_prompt_set(prompts))


def backbone_source(config: FaceCatConfig, unet_weights: str | Path | None) -> str | Path:
    """The UNet weights a detector of ``config`` loads: ``unet_weights`` when given, else the
    config's packaged file, else ``"random"`` (an untrained backbone)."""
    if unet_weights is not None:
        return unet_weights
    if config.default_unet_weights:
        return Path(str(resources.files("facecat") / "data" / "fdm" / config.default_unet_weights))
    return RANDOM_BACKBONE


@register_kind("facecat")
class FaceCatKind:
    """Builds :class:`FaceCat` detectors for the registry."""

    options = frozenset({"unet_weights", "text_weights", "resnet_weights", "seed", "device"})

    def create(
        self,
        config: dict[str, Any],
        *,
        unet_weights: str | Path | None = None,
        text_weights: str | Path | None = None,
        resnet_weights: str | Path | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> FaceCat:
        """A fresh detector; class weights come from the configured text encoder.

        Args:
            config: config dict (see ``facecat/configs/detectors``).
            unet_weights: guided-diffusion UNet checkpoint, loaded strictly; "random" for a
                randomly initialised backbone; default: the config's packaged weights, if any.
            text_weights: CLIP weights file (clip backend only).
            resnet_weights: torchvision ResNet-18 ImageNet state dict for the head.
            seed: seed of the head's random initialisation.
            device: where the detector lives.
        """
        cfg = FaceCatConfig.from_dict(config)
        weights = None
        if cfg.text_guided:
            text = cfg.text
            weights = _text_class_weights(
                text.backend,
                text.model,
                text.prompts,
                None if text_weights is None else str(text_weights),
            )
        target = pick_device(device)
        if target.type == "meta":  # shape inference without allocating memory
            with torch.device("meta"):
                return FaceCat(cfg, None if weights is None else weights.to("meta"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            detector = FaceCat(cfg, weights)
        source = backbone_source(cfg, unet_weights)
        if source == RANDOM_BACKBONE:
            log.warning("%s: the diffusion backbone is randomly initialised", cfg.name)
        else:
            state = load_state_dict_file(source, what=f"UNet weights for {cfg.name}")
            load_strict(detector.extractor.unet, state, source=f"{source} (config {cfg.name})")
        detector.backbone_source = str(source)
        if resnet_weights is not None:
            if not isinstance(detector.head, EmbeddingHead):
                raise ValueError(
                    f"resnet_weights: config {cfg.name} uses the {cfg.head!r} head; ImageNet "
                    "ResNet-18 weights only fit the 'resnet18' head"
                )
            detector.head.load_resnet18(resnet_weights)
        return detector.to(target)

    def restore(
        self,
        config: dict[str, Any],
        tensors: dict[str, Tensor],
        *,
        device: str | torch.device | None = None,
    ) -> FaceCat:
        """A detector rebuilt from a saved file's config and tensors (strict)."""
        cfg = FaceCatConfig.from_dict(config)
        detector = FaceCat(cfg, tensors.get("class_weights"))
        source: str | Path = "file"
        if not any(k.startswith(FaceCat.BACKBONE_PREFIX) for k in tensors):
            source = backbone_source(cfg, None)
            if source == RANDOM_BACKBONE:
                raise CheckpointError(
                    f"the file holds no backbone weights and config {cfg.name} packages none"
                )
            backbone = load_state_dict_file(source, what=f"UNet weights for {cfg.name}")
            tensors = {f"{FaceCat.BACKBONE_PREFIX}{k}": v for k, v in backbone.items()} | tensors
        load_strict(detector, tensors, source=f"detector tensors (config {cfg.name})")
        detector.backbone_source = str(source)
        return detector.to(pick_device(device))
