"""FaceCat detector configurations: JSON data in the package, parsed into dataclasses."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from facecat.models.features import FeatureConfig
from facecat.models.unet import UNetConfig

CONFIG_PACKAGE = "facecat.configs"
DETECTOR_CONFIG_DIR = "detectors"


class ConfigError(ValueError):
    """A configuration is unknown, malformed or has unknown fields."""


@dataclass(frozen=True)
class TextConfig:
    """Text-guided alignment settings.

    Attributes:
        backend: "clip" (open_clip, user-supplied weights) or "minilm" (ships offline).
        model: open_clip model name for the clip backend (the release used ViT-B-16).
        prompts: prompt-set name in ``prompts.json`` or a path to a JSON file.
        logit_scale: temperature of the cosine logits (CLIP's 100 by default).
    """

    backend: str = "minilm"
    model: str = "ViT-B-16"
    prompts: str = "paper"
    logit_scale: float = 100.0


@dataclass(frozen=True)
class LossConfig:
    """Focal (alpha on the real class, gamma) + triplet_weight x semi-hard triplet(margin)."""

    alpha: float = 0.75
    gamma: float = 2.0
    triplet_weight: float = 0.1
    margin: float = 1.0


OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and augmentation of FaceCat's head training.

    Attributes:
        epochs: most epochs to train (the dev split picks the epoch kept).
        batch_size: samples per step.
        lr: peak learning rate.
        momentum: SGD momentum (unused by AdamW).
        weight_decay: SGD's L2 penalty or AdamW's decoupled decay.
        optimizer: "sgd" (the paper) or "adamw".
        warmup_epochs: linear warm-up to ``lr`` over this many epochs, then cosine decay.
        patience: stop when the dev EER has not improved for this many epochs (0: never).
        hflip: mirror the cached feature maps of a random half of every batch (the cached
            counterpart of horizontal-flip augmentation).
        jpeg_copies: add this many JPEG re-encodings of every training image to the
            training set (:func:`facecat.training.augment.jpeg_copies`; 0: none).
        jpeg_quality: inclusive range the copies' JPEG quality is drawn from.
        posterize_copies: add this many posterized versions of every training image
            (:func:`facecat.training.augment.posterize_copies`; 0: none).
        posterize_bits: inclusive range the posterized copies' bits per channel are drawn from.
        min_source_rows: repeat the training rows of every ``source`` (manifest column) with
            fewer rows than this until it has at least this many (0: none), so that a rare
            source (three real colour photographs among hundreds of generated faces) and
            the attacks simulated from it weigh in.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    warmup_epochs: int = 0
    patience: int = 0
    hflip: bool = False
    jpeg_copies: int = 0
    jpeg_quality: tuple[int, int] = (10, 50)
    posterize_copies: int = 0
    posterize_bits: tuple[int, int] = (2, 6)
    min_source_rows: int = 0

    def __post_init__(self) -> None:
        quality = self.jpeg_quality
        quality = tuple(quality) if isinstance(quality, list | tuple) else (quality,)
        object.__setattr__(self, "jpeg_quality", quality)
        if len(quality) != 2 or not 1 <= quality[0] <= quality[1] <= 95 or self.jpeg_copies < 0:
            raise ValueError(
                f"jpeg_copies must be >= 0 and jpeg_quality a range [low, high] with "
                f"1 <= low <= high <= 95, got {self.jpeg_copies}, {list(self.jpeg_quality)}"
            )
        bits = tuple(self.posterize_bits)
        object.__setattr__(self, "posterize_bits", bits)
        if len(bits) != 2 or not 1 <= bits[0] <= bits[1] <= 8 or self.posterize_copies < 0:
            raise ValueError(
                f"posterize_copies must be >= 0 and posterize_bits a range [low, high] with "
                f"1 <= low <= high <= 8, got {self.posterize_copies}, {list(bits)}"
            )
        if self.min_source_rows < 0:
            raise ValueError(f"min_source_rows must be >= 0, got {self.min_source_rows}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} not one of {list(OPTIMIZERS)}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(
                f"epochs must be >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}"
            )
        if not 0 <= self.warmup_epochs < self.epochs or self.patience < 0:
            raise ValueError(
                f"warmup_epochs must lie in [0, epochs) and patience be >= 0, got "
                f"{self.warmup_epochs}, {self.patience}"
            )


@dataclass(frozen=True)
class FaceCatConfig:
    """Everything needed to rebuild a FaceCat detector (weights aside).

    ``fusion`` is "strided" (release) or "pooling" (paper Eq. 9); ``head`` is "resnet18"
    (the paper's) or "conv" (a small head for few training images, see
    :class:`facecat.models.head.ConvHead`). ``default_unet_weights`` names a UNet weights file
    shipped in ``facecat/data/fdm`` that is loaded when no other weights are given (the
    embedded face diffusion model).
    """

    name: str
    unet: UNetConfig
    features: FeatureConfig
    diffusion_steps: int = 1000
    fusion: str = "strided"
    head: str = "resnet18"
    text_guided: bool = True
    text: TextConfig = field(default_factory=TextConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""
    kind: str = "facecat"
    default_unet_weights: str = ""

    @property
    def image_size(self) -> int:
        return self.unet.image_size

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unet"] = self.unet.to_dict()
        data["features"] = self.features.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaceCatConfig:
        """Parse a config dict, rejecting unknown fields with their names."""
        data = dict(data)
        nested = {
            "unet": UNetConfig,
            "features": FeatureConfig,
            "text": TextConfig,
            "loss": LossConfig,
            "train": TrainConfig,
        }
        for key, kind in nested.items():
            if key in data:
                data[key] = parse_dataclass(kind, data[key], key)
        return parse_dataclass(cls, data, "detector config")


def parse_dataclass(kind: type, values: Any, where: str) -> Any:
    """Build the dataclass ``kind`` from a dict, naming unknown fields and bad values.

    Args:
        kind: the (config) dataclass.
        values: its fields as a dict.
        where: what is parsed, used in messages (e.g. "detector config").

    Returns:
        The dataclass instance.

    Raises:
        ConfigError: when ``values`` is not a dict, has unknown fields, or is rejected.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected an object, got {type(values).__name__}")
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown fields {unknown}; known: {sorted(known)}")
    try:
        return kind(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from error


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``overrides`` into a copy of ``base`` (dicts merge, values replace)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def packaged_config_names() -> list[str]:
    """Names of the detector configs shipped in the package."""
    folder = resources.files(CONFIG_PACKAGE) / DETECTOR_CONFIG_DIR
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


def read_config_dict(name_or_path: str | Path) -> dict[str, Any]:
    """Raw dict of a packaged config (by name) or a user JSON file (by path)."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        text = path.read_text()
        name = path.stem
    else:
        name = str(name_or_path)
        if name not in packaged_config_names():
            raise ConfigError(
                f"unknown detector config {name!r}; available: {packaged_config_names()}"
            )
        resource = resources.files(CONFIG_PACKAGE) / DETECTOR_CONFIG_DIR / f"{name}.json"
        text = resource.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"config {name_or_path}: invalid JSON: {error}") from error
    data.setdefault("name", name)
    return data
