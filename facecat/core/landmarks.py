"""Face detection, 5-point landmarks and similarity alignment to square crops.

Detection uses MTCNN with the P/R/O-net weights shipped in ``facenet-pytorch`` (MIT). Install
it with ``pip install --no-deps facenet-pytorch==2.6.0 requests``: its metadata pins an old
torch, but its MTCNN runs on current torch. Alignment is a least-squares similarity transform
(Umeyama) from the detected landmarks to a canonical template, applied with kornia.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia
import numpy as np
import torch
from PIL import Image
from torch import Tensor

# ArcFace's canonical 5-point template for 112x112 crops (left eye, right eye, nose, left and
# right mouth corners), used scaled to any crop size.
TEMPLATE_112 = torch.tensor(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)


class LandmarkError(RuntimeError):
    """No face found, or the detector is not installed."""


@dataclass(frozen=True)
class Detection:
    """One detected face: box (x1, y1, x2, y2), confidence, landmarks (5, 2) in pixels."""

    box: np.ndarray
    probability: float
    landmarks: np.ndarray


def template(size: int, scale: float = 1.0) -> Tensor:
    """The canonical landmark template for a ``size`` x ``size`` crop.

    Args:
        size: crop side length.
        scale: zoom around the crop centre (< 1 shows more context).

    Returns:
        (5, 2) pixel coordinates.
    """
    centre = torch.tensor([56.0, 56.0])
    return ((TEMPLATE_112 - centre) * scale + centre) * (size / 112.0)


class FaceDetector:
    """MTCNN face detector returning the most confident face per image.

    Args:
        min_face_size: smallest face (pixels, after upsampling) MTCNN looks for.
        upsample: small images are upscaled by this factor before detection.
        device: where MTCNN runs.
    """

    def __init__(self, min_face_size: int = 20, upsample: int = 2, device: str = "cpu") -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as error:
            raise LandmarkError(
                "face detection needs MTCNN from facenet-pytorch: "
                "pip install --no-deps facenet-pytorch==2.6.0 requests"
            ) from error
        self.upsample = upsample
        self.mtcnn = MTCNN(min_face_size=min_face_size, keep_all=True, device=device)

    def detect(self, image: np.ndarray) -> Detection | None:
        """Most confident face in an RGB uint8 image (H, W, 3), or None."""
        faces = self.detect_all(image)
        return faces[0] if faces else None

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        """Every face MTCNN finds in an RGB uint8 image (H, W, 3), most confident first."""
        pil = Image.fromarray(image)
        if self.upsample > 1:
            pil = pil.resize((pil.width * self.upsample, pil.height * self.upsample), Image.BICUBIC)
        boxes, probs, points = self.mtcnn.detect(pil, landmarks=True)
        if boxes is None:
            return []
        return [
            Detection(
                box=boxes[i] / self.upsample,
                probability=float(probs[i]),
                landmarks=points[i].astype(np.float32) / self.upsample,
            )
            for i in np.argsort(-np.asarray(probs), kind="stable")
        ]


def similarity_transform(source: Tensor, target: Tensor) -> Tensor:
    """Least-squares similarity (rotation, uniform scale, translation) mapping source to target.

    Args:
        source: (N, 2) points.
        target: (N, 2) points.

    Returns:
        (2, 3) affine matrix M with target ~ M @ [source, 1].
    """
    source, target = source.double(), target.double()
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    covariance = t.T @ s / len(source)
    u, sigma, vh = torch.linalg.svd(covariance)
    sign = torch.ones(2, dtype=torch.float64)
    if torch.det(u) * torch.det(vh) < 0:
        sign[-1] = -1
    rotation = u @ torch.diag(sign) @ vh
    scale = (sigma * sign).sum() / s.pow(2).sum(1).mean()
    translation = mu_t - scale * rotation @ mu_s
    return torch.cat([scale * rotation, translation[:, None]], dim=1).float()


def align_face(
    image: Tensor, landmarks: Tensor, size: int, scale: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Warp a face so its landmarks land on the template of a ``size`` crop.

    Args:
        image: (3, H, W) float in [0, 1].
        landmarks: (5, 2) pixel coordinates in ``image``.
        size: output side length.
        scale: template zoom (see :func:`template`).

    Returns:
        ``(crop (3, size, size), landmarks in the crop (5, 2))``.
    """
    matrix = similarity_transform(landmarks, template(size, scale))
    crop = kornia.geometry.transform.warp_affine(
        image[None].float(),
        matrix[None],
        (size, size),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )[0]
    moved = landmarks.float() @ matrix[:, :2].T + matrix[:, 2]
    return crop.clamp(0, 1), moved
