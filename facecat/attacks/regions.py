"""Patch regions from five facial landmarks: eyeglass frame, sticker, face mask.

Pure functions over batched landmarks (B, 5, 2) in pixel coordinates (left eye, right eye,
nose, left mouth corner, right mouth corner; "left" = the image's left) returning binary
masks (B, 1, H, W) with pixel centres at integer coordinates. Shapes are laid out in a face
frame attached to the eyes, so they follow the face's position, scale and in-plane rotation:
the origin is the midpoint of the eyes, ``u`` runs from the left to the right eye and ``v``
downwards, both in units of the inter-ocular distance d.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "REGIONS",
    "STICKER_PLACES",
    "eyeglass_mask",
    "face_frame",
    "facemask_mask",
    "sticker_mask",
]

#: Sticker rectangles in the face frame: (u_min, u_max, v_min, v_max), units of d.
STICKER_PLACES: dict[str, tuple[float, float, float, float]] = {
    "forehead": (-0.7, 0.7, -0.95, -0.25),
    "left_cheek": (-0.8, -0.35, 0.45, 0.85),
    "right_cheek": (0.35, 0.8, 0.45, 0.85),
}


def _check(landmarks: Tensor, size: tuple[int, int]) -> None:
    if not isinstance(landmarks, Tensor) or landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        shape = tuple(landmarks.shape) if isinstance(landmarks, Tensor) else type(landmarks)
        raise ValueError(f"landmarks must be a (B, 5, 2) tensor, got {shape}")
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be (H, W) with H, W > 0, got {size}")
    eyes = landmarks[:, 1] - landmarks[:, 0]
    if (eyes.norm(dim=-1) < 1e-6).any():
        raise ValueError("landmarks: the two eyes coincide, cannot place a region")


def face_frame(landmarks: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Face-frame coordinates of every pixel, and the landmarks in that frame.

    Args:
        landmarks: (B, 5, 2) pixel coordinates (x, y).
        size: (H, W) of the masks.

    Returns:
        ``u`` and ``v`` (B, H, W) per pixel, and the landmarks (B, 5, 2) as (u, v).
    """
    _check(landmarks, size)
    landmarks = landmarks.float()
    centre = (landmarks[:, 0] + landmarks[:, 1]) / 2
    axis = landmarks[:, 1] - landmarks[:, 0]
    d = axis.norm(dim=-1, keepdim=True)
    along = axis / d
    down = torch.stack([-along[:, 1], along[:, 0]], dim=-1)  # (1, 0) -> (0, 1): image down
    ys, xs = torch.meshgrid(
        torch.arange(size[0], device=landmarks.device, dtype=landmarks.dtype),
        torch.arange(size[1], device=landmarks.device, dtype=landmarks.dtype),
        indexing="ij",
    )
    offset = torch.stack([xs, ys], dim=-1)[None] - centre[:, None, None]  # (B, H, W, 2)
    scale = d[:, :, None]
    u = (offset * along[:, None, None]).sum(-1) / scale
    v = (offset * down[:, None, None]).sum(-1) / scale
    points = landmarks - centre[:, None]
    local = torch.stack([(points * along[:, None]).sum(-1), (points * down[:, None]).sum(-1)], -1)
    return u, v, local / d[:, None]


def _mask(inside: Tensor) -> Tensor:
    return inside.float()[:, None]


def eyeglass_mask(landmarks: Tensor, size: tuple[int, int], *, thickness: float = 0.14) -> Tensor:
    """An eyeglass frame: two elliptical rims around the eyes, a bridge and short temples.

    Args:
        landmarks: (B, 5, 2) pixel coordinates.
        size: (H, W).
        thickness: rim width in units of the inter-ocular distance.

    Returns:
        Binary mask (B, 1, H, W).
    """
    u, v, _ = face_frame(landmarks, size)
    half_width, half_height, lift = 0.42, 0.3, -0.03  # a lens, in units of d
    frame = torch.zeros_like(u, dtype=torch.bool)
    for centre in (-0.5, 0.5):
        outer = ((u - centre) / half_width) ** 2 + ((v - lift) / half_height) ** 2 <= 1
        inner = ((u - centre) / (half_width - thickness)) ** 2 + (
            (v - lift) / (half_height - thickness)
        ) ** 2 <= 1
        frame |= outer & ~inner
    bar = (v - (lift - half_height / 2)).abs() <= thickness / 2
    bridge = bar & (u.abs() <= 0.5 - half_width + thickness)
    temples = bar & (u.abs() >= 0.5 + half_width - thickness) & (u.abs() <= 1.25)
    return _mask(frame | bridge | temples)


def sticker_mask(landmarks: Tensor, size: tuple[int, int], *, place: str = "forehead") -> Tensor:
    """A rectangular sticker aligned with the eyes.

    Args:
        landmarks: (B, 5, 2) pixel coordinates.
        size: (H, W).
        place: a key of :data:`STICKER_PLACES` ("forehead", "left_cheek", "right_cheek").

    Returns:
        Binary mask (B, 1, H, W).
    """
    if place not in STICKER_PLACES:
        raise ValueError(f"place must be one of {sorted(STICKER_PLACES)}, got {place!r}")
    u_min, u_max, v_min, v_max = STICKER_PLACES[place]
    u, v, _ = face_frame(landmarks, size)
    return _mask((u >= u_min) & (u <= u_max) & (v >= v_min) & (v <= v_max))


def facemask_mask(landmarks: Tensor, size: tuple[int, int]) -> Tensor:
    """A face mask over the nose and mouth down to the chin.

    The top edge runs across the nose bridge (40% of the way from the eyes to the nose tip),
    the sides are 0.9 d from the face's midline, and below the mouth the sides close in an
    ellipse at the chin, estimated 0.7 of the eye-to-mouth distance below the mouth.

    Args:
        landmarks: (B, 5, 2) pixel coordinates.
        size: (H, W).

    Returns:
        Binary mask (B, 1, H, W).
    """
    u, v, local = face_frame(landmarks, size)
    nose = local[:, 2, 1][:, None, None]
    mouth = ((local[:, 3, 1] + local[:, 4, 1]) / 2)[:, None, None]
    chin = mouth + 0.7 * mouth
    top = 0.4 * nose
    half_width = 0.9
    below = ((v - mouth).clamp_min(0) / (chin - mouth)).clamp(max=1)
    width = half_width * (1 - below**2).clamp_min(0).sqrt()
    return _mask((v >= top) & (v <= chin) & (u.abs() <= width))


#: Region builders by patch name: (landmarks (B, 5, 2), (H, W), **options) -> (B, 1, H, W).
REGIONS: dict[str, Callable[..., Tensor]] = {
    "eyeglass": eyeglass_mask,
    "sticker": sticker_mask,
    "facemask": facemask_mask,
}
