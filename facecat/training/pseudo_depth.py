"""Pseudo-depth supervision for bona fide faces when a data set has no depth maps.

CDCN regresses a face depth map for live faces and an all-zero map for attacks; its authors
rendered the live maps with PRNet. Without a 3D face model, :func:`pseudo_depth` renders the
template face surface of :mod:`facecat.core.face_surface` (the surface the physical suite
wears its prints on), put on each face by the least-squares similarity transform of its five
landmarks: the template depth inside the face oval, 0 outside, divided by the depth at the
template's nose tip (the highest point) and clipped to [0, 1]. A turned face's nose lies off
the template's, so the surface around the nose is shifted onto the face's own nose tip
(the shift fades with a Gaussian of :data:`NOSE_FOLLOW` inter-ocular distances), and the
nose peak stays on the nose. Maps are rendered at the depth-map resolution with 4x4
supersampling per depth pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from facecat.core.face_surface import UV_LANDMARKS, face_depth, face_oval, uv_transform

#: Raise when the rendered maps change for the same landmarks; part of CDCN's run key.
VERSION = 2
SUPERSAMPLING = 4
NOSE_FOLLOW = 0.6
NOSE_TIP_DEPTH = float(face_depth(UV_LANDMARKS[2]))


def pseudo_depth(landmarks: Tensor, image_size: int, depth_size: int) -> Tensor:
    """Render the template face surface onto faces given by their 5 landmarks.

    Args:
        landmarks: (x, y) pixel coordinates in an ``image_size`` x ``image_size`` image (left
            eye, right eye, nose, left and right mouth corner), pixel centres at integers.
        image_size: side length of the images the landmarks refer to.
        depth_size: side length of the rendered depth maps.

    Shape:
        (B, 5, 2) -> (B, depth_size, depth_size)

    Returns:
        Depth maps in [0, 1], 0 outside the face (float32, on the landmarks' device).

    Example:
        >>> from facecat.core.landmarks import template
        >>> pseudo_depth(template(64)[None], 64, 8).shape
        torch.Size([1, 8, 8])
    """
    for name, value in (("image_size", image_size), ("depth_size", depth_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if landmarks.ndim != 3 or tuple(landmarks.shape[1:]) != (5, 2):
        raise ValueError(f"landmarks must have shape (B, 5, 2), got {tuple(landmarks.shape)}")
    if not bool(torch.isfinite(landmarks).all()):
        raise ValueError("landmarks hold non-finite values")
    landmarks = landmarks.float()
    fine = depth_size * SUPERSAMPLING
    centres = (torch.arange(fine, device=landmarks.device) + 0.5) * (image_size / fine) - 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([xs, ys], dim=-1)
    to_uv = uv_transform(landmarks)
    uv = points @ to_uv[:, None, :, :2].transpose(-1, -2) + to_uv[:, None, None, :, 2]
    nose = torch.einsum("bij,bj->bi", to_uv[:, :, :2], landmarks[:, 2]) + to_uv[:, :, 2]
    shift = (nose - UV_LANDMARKS[2].to(nose))[:, None, None]
    reach = torch.exp(-(uv - nose[:, None, None]).pow(2).sum(-1, keepdim=True) / NOSE_FOLLOW**2 / 2)
    uv = uv - reach * shift
    depth = (face_depth(uv) * face_oval(uv) / NOSE_TIP_DEPTH).clamp(0, 1)
    return torch.nn.functional.avg_pool2d(depth[:, None], SUPERSAMPLING)[:, 0]


def depth_targets(
    labels: Tensor,
    landmarks: Tensor | None,
    image_size: int,
    depth_size: int,
    depth_maps: Sequence[Tensor | None] | None = None,
) -> Tensor:
    """CDCN depth supervision: a depth map for bona fide faces, zeros for attacks.

    Args:
        labels: 1 = bona fide, 0 = attack.
        landmarks: 5-point landmarks in pixels of the ``image_size`` images; needed for the
            bona fide rows without a depth map.
        image_size: side length of the images.
        depth_size: side length of the targets.
        depth_maps: per row, a measured (depth_size, depth_size) depth map in [0, 1] or None;
            bona fide rows with one use it, the others get :func:`pseudo_depth`.

    Shape:
        labels (B,), landmarks (B, 5, 2) -> (B, depth_size, depth_size)

    Returns:
        The float32 targets, on the labels' device.
    """
    count = len(labels)
    if depth_maps is not None and len(depth_maps) != count:
        raise ValueError(f"depth_maps has {len(depth_maps)} entries for {count} labels")
    if landmarks is not None and len(landmarks) != count:
        raise ValueError(f"landmarks has {len(landmarks)} rows for {count} labels")
    targets = torch.zeros(count, depth_size, depth_size, device=labels.device)
    live = (labels == 1).tolist()
    has_map = [depth_maps is not None and depth_maps[i] is not None for i in range(count)]
    measured = [i for i in range(count) if live[i] and has_map[i]]
    rendered = [i for i in range(count) if live[i] and not has_map[i]]
    for i in measured:
        depth = depth_maps[i]
        if tuple(depth.shape) != (depth_size, depth_size):
            raise ValueError(
                f"depth map of row {i} has shape {tuple(depth.shape)}; expected "
                f"({depth_size}, {depth_size})"
            )
        targets[i] = depth.to(targets)
    if rendered:
        if landmarks is None:
            raise ValueError(
                f"{len(rendered)} bona fide row(s) have no depth map and no landmarks were "
                "given for pseudo-depth"
            )
        targets[rendered] = pseudo_depth(landmarks[rendered], image_size, depth_size).to(targets)
    return targets
