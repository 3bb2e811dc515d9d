"""A template face surface in a canonical UV frame, aligned to a wearer by five landmarks.

No morphable model (BFM, FLAME) is available here, so the 3D face is an analytic template:
a depth map ``z(u, v)`` over the canonical face frame, in which the eyes sit at
``(-0.5, 0)`` and ``(0.5, 0)``, ``v`` runs down the face and the unit is the inter-ocular
distance d (the nose tip and the mouth corners follow ArcFace's five-point template). The
depth is the sum of a few smooth parts with average adult proportions (face width about
2.3 d, eyes to chin about 2 d, nose protrusion about 0.5 d):

* a half-ellipsoid skull cap over the face oval (half-width 1.15 d, half-height 1.5 d,
  depth 1.2 d), centred 0.5 d below the eyes;
* a nose ridge rising from the bridge to the tip, with a rounded tip and narrow wings;
* two eye sockets (shallow Gaussian dips) under a brow ridge;
* lips and a chin (small Gaussian bumps).

A wearer's face is put in this frame by the least-squares similarity transform from its
landmarks to the template's (:func:`uv_coordinates`), so the template follows the face's
position, scale and in-plane rotation; its depth and normals are then evaluated per pixel.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from facecat.core.landmarks import TEMPLATE_112, similarity_transform

__all__ = [
    "FACE_OVAL",
    "UV_BOX",
    "UV_LANDMARKS",
    "face_depth",
    "face_oval",
    "pixel_grid",
    "surface_normals",
    "uv_coordinates",
    "uv_transform",
]

#: The five landmarks in the canonical frame (units of d, eyes at v = 0, v down).
UV_LANDMARKS: Tensor = (TEMPLATE_112 - (TEMPLATE_112[0] + TEMPLATE_112[1]) / 2) / (
    TEMPLATE_112[1] - TEMPLATE_112[0]
).norm()

#: The face oval: (centre v, half-width, half-height) in units of d.
FACE_OVAL = (0.5, 1.15, 1.5)

#: Extent of the texture in the canonical frame: (u_min, u_max, v_min, v_max).
UV_BOX = (-1.4, 1.4, -1.1, 2.1)


def _check_landmarks(landmarks: Tensor) -> None:
    if not isinstance(landmarks, Tensor) or landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        shape = tuple(landmarks.shape) if isinstance(landmarks, Tensor) else type(landmarks)
        raise ValueError(f"landmarks must be a (B, 5, 2) tensor, got {shape}")
    if ((landmarks[:, 1] - landmarks[:, 0]).norm(dim=-1) < 1e-6).any():
        raise ValueError("landmarks: the two eyes coincide, cannot align the face template")


def pixel_grid(size: tuple[int, int], like: Tensor) -> Tensor:
    """Pixel centres (H, W, 2) as (x, y), on ``like``'s device and dtype."""
    ys, xs = torch.meshgrid(
        torch.arange(size[0], device=like.device, dtype=like.dtype),
        torch.arange(size[1], device=like.device, dtype=like.dtype),
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=-1)


def uv_transform(landmarks: Tensor) -> Tensor:
    """Similarity transforms (B, 2, 3) from pixel (x, y) to canonical (u, v) coordinates.

    Args:
        landmarks: (B, 5, 2) pixel coordinates (x, y) of the eyes, nose tip and mouth corners.
    """
    _check_landmarks(landmarks)
    return torch.stack(
        [similarity_transform(points.detach().cpu().float(), UV_LANDMARKS) for points in landmarks]
    ).to(landmarks.device)


def uv_coordinates(landmarks: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Canonical-frame coordinates of every pixel of faces with the given landmarks.

    Args:
        landmarks: (B, 5, 2) pixel coordinates (x, y) of the eyes, nose tip and mouth corners.
        size: (H, W) of the images.

    Returns:
        ``uv`` (B, H, W, 2) per pixel and the scale (B,) in pixels per unit d.
    """
    to_uv = uv_transform(landmarks)
    landmarks = landmarks.float()
    grid = pixel_grid(size, landmarks)
    uv = grid @ to_uv[:, None, :, :2].transpose(-1, -2) + to_uv[:, None, None, :, 2]
    scale = 1 / to_uv[:, :, :2].det().abs().sqrt()
    return uv, scale


def _gauss(x: Tensor, centre: float, width: float) -> Tensor:
    return torch.exp(-0.5 * ((x - centre) / width) ** 2)


def face_oval(uv: Tensor, margin: float = 0.0) -> Tensor:
    """Inside-ness of the face oval, 1 inside, falling to 0 over ``margin`` (units of d).

    Shape:
        uv (..., 2) -> (...)
    """
    centre, half_width, half_height = FACE_OVAL
    radius = ((uv[..., 0] / half_width) ** 2 + ((uv[..., 1] - centre) / half_height) ** 2).sqrt()
    if margin <= 0:
        return (radius <= 1).to(uv.dtype)
    return ((1 + margin - radius) / margin).clamp(0, 1)


def face_depth(uv: Tensor) -> Tensor:
    """Template depth toward the camera, in units of d, at canonical coordinates ``uv``.

    Shape:
        uv (..., 2) -> (...)
    """
    u, v = uv[..., 0], uv[..., 1]
    centre, half_width, half_height = FACE_OVAL
    cap = (1 - (u / half_width) ** 2 - ((v - centre) / half_height) ** 2).clamp_min(0)
    depth = 1.2 * cap.sqrt()
    nose_tip = float(UV_LANDMARKS[2, 1])
    rise = ((v - 0.05) / (nose_tip - 0.05)).clamp(0, 1) ** 1.5
    below = torch.where(v > nose_tip, _gauss(v, nose_tip, 0.1), torch.ones_like(v))
    depth = depth + 0.45 * rise * below * _gauss(u, 0.0, 0.11 + 0.08 * rise)
    depth = depth + 0.08 * _gauss(v, nose_tip - 0.02, 0.08) * _gauss(u.abs(), 0.17, 0.07)
    for side in (-0.5, 0.5):
        depth = depth - 0.14 * _gauss(u, side, 0.2) * _gauss(v, 0.02, 0.16)
    depth = depth + 0.06 * _gauss(v, -0.32, 0.1) * (u.abs() < 1.0).to(uv.dtype)
    mouth = float(UV_LANDMARKS[3:, 1].mean())
    depth = depth + 0.07 * _gauss(u, 0.0, 0.35) * _gauss(v, mouth, 0.12)
    return depth + 0.08 * _gauss(u, 0.0, 0.35) * _gauss(v, mouth + 0.6, 0.15)


def surface_normals(depth: Tensor) -> Tensor:
    """Unit normals of a depth map (camera looks down -z; x right, y down).

    Args:
        depth: (B, 1, H, W) depth toward the camera, in pixels.

    Returns:
        (B, 3, H, W) unit normals pointing toward the camera.
    """
    gradient = kornia.filters.spatial_gradient(depth, mode="diff", normalized=False)[:, 0]
    dz_dx, dz_dy = gradient[:, 0:1] / 2, gradient[:, 1:2] / 2
    return F.normalize(torch.cat([-dz_dx, -dz_dy, torch.ones_like(depth)], dim=1), dim=1)
