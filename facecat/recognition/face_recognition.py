"""Face-recognition (FR) targets that adversarial faces are crafted against.

Every target is a :class:`FaceRecognizer`: an ``nn.Module`` whose ``forward`` takes aligned
face crops (BCHW RGB in [0, 1], any size: each target resizes to its own input convention)
and returns its native descriptors; ``embed`` returns them L2-normalised; ``distance`` and
``same_identity`` apply the target's own verification metric and threshold. Implementations:
the dlib ResNet port (:mod:`facecat.recognition.dlib_resnet`), user ONNX models
(:class:`OnnxRecognizer`) and any torch module wrapped by :class:`TorchRecognizer`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

METRICS = ("euclidean", "cosine")


class FaceRecognitionError(ValueError):
    """An FR model or its input does not follow the FR target interface."""


class FaceRecognizer(nn.Module):
    """Base class of FR targets.

    Attributes:
        name: short name used in tables.
        metric: "euclidean" (on raw descriptors) or "cosine" (1 - cosine similarity).
        threshold: same identity when ``distance < threshold``.
        input_size: side length the crops are resized to before the network.
    """

    name: str = "fr"
    metric: str = "cosine"
    threshold: float = 0.5
    input_size: int = 112

    def descriptors(self, images: Tensor) -> Tensor:
        """Native descriptors of images already at ``input_size``; implemented by subclasses."""
        raise NotImplementedError

    def forward(self, images: Tensor) -> Tensor:
        """Native descriptors of aligned crops in [0, 1].

        Shape:
            (B, 3, H, W) -> (B, D)
        """
        check_face_batch(images)
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(
                images,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=images.shape[-1] > self.input_size,
            )
        out = self.descriptors(images)
        if out.ndim != 2 or out.shape[0] != images.shape[0]:
            raise FaceRecognitionError(
                f"{self.name}: expected (B, D) descriptors for B={images.shape[0]}, got "
                f"{tuple(out.shape)}; is this a face-recognition embedding model?"
            )
        return out

    def embed(self, images: Tensor) -> Tensor:
        """L2-normalised descriptors, (B, D)."""
        return F.normalize(self(images), dim=1)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """Per-row verification distance between native descriptors ``a`` and ``b``."""
        if self.metric == "euclidean":
            return (a - b).norm(dim=1)
        return 1 - F.cosine_similarity(a, b, dim=1)

    def same_identity(self, a: Tensor, b: Tensor) -> Tensor:
        """Boolean per row: the target verifies ``a`` and ``b`` as the same person."""
        return self.distance(a, b) < self.threshold


def check_face_batch(images: Tensor) -> None:
    """Raise :class:`FaceRecognitionError` unless a (B, 3, H, W) float batch in [0, 1]."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise FaceRecognitionError(f"FR input must be (B, 3, H, W) images, got {shape}")
    if not images.is_floating_point():
        raise FaceRecognitionError(f"FR input must be float in [0, 1], got {images.dtype}")
    if images.numel() and (images.min() < 0 or images.max() > 1 or images.isnan().any()):
        raise FaceRecognitionError(
            f"FR input must lie in [0, 1] without NaN; got min {images.min().item():.3f}, "
            f"max {images.max().item():.3f}"
        )


class TorchRecognizer(FaceRecognizer):
    """Wraps any torch module mapping (B, 3, S, S) images in [0, 1] to (B, D) descriptors.

    Args:
        model: the network (its own normalisation included).
        input_size: S.
        metric: "euclidean" or "cosine".
        threshold: verification threshold for ``metric``.
        name: table name.
        mean: per-channel mean subtracted before the network (after scaling by ``scale``).
        std: per-channel divisor.
        scale: factor applied to [0, 1] inputs first (e.g. 255).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_size: int,
        metric: str = "cosine",
        threshold: float = 0.5,
        name: str = "torch-fr",
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        if metric not in METRICS:
            raise FaceRecognitionError(f"metric must be one of {METRICS}, got {metric!r}")
        self.model = model.eval()
        self.input_size = input_size
        self.metric = metric
        self.threshold = threshold
        self.name = name
        self.scale = scale
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def descriptors(self, images: Tensor) -> Tensor:
        return self.model((images * self.scale - self.mean) / self.std)


class OnnxRecognizer(TorchRecognizer):
    """A user-supplied ONNX FR model (e.g. ArcFace) converted with onnx2torch.

    ArcFace-style defaults: 112x112 input, (255 x - 127.5) / 127.5, cosine metric.

    Args:
        path: the ``.onnx`` file.
        threshold: cosine-distance threshold (1 - cosine similarity).
        **options: forwarded to :class:`TorchRecognizer` (input_size, mean, std, scale, ...).
    """

    def __init__(self, path: str | Path, *, threshold: float = 0.7, **options: object) -> None:
        path = Path(path)
        if not path.is_file():
            raise FaceRecognitionError(f"ONNX face-recognition model not found: {path}")
        try:
            from onnx2torch import convert
        except ImportError as error:
            raise FaceRecognitionError(
                "loading ONNX models needs onnx2torch: pip install onnx2torch"
            ) from error
        try:
            model = convert(str(path))
        except Exception as error:  # onnx and onnx2torch raise many types
            raise FaceRecognitionError(f"{path}: cannot convert to torch: {error}") from error
        defaults = {
            "input_size": 112,
            "metric": "cosine",
            "name": path.stem,
            "mean": (127.5, 127.5, 127.5),
            "std": (127.5, 127.5, 127.5),
            "scale": 255.0,
        }
        super().__init__(model, threshold=threshold, **(defaults | options))
