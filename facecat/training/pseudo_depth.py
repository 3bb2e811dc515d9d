"""Pseudo-depth supervision for bona fide faces when a data set has no depth maps.

CDCN regresses a face depth map for live faces and an all-zero map for attacks; its authors
rendered the live maps with PRNet. Without a 3D face model, :func:`pseudo_depth` renders a
canonical face-shaped surface instead. The surface is defined once, in the aligned-face frame
of :data:`facecat.core.landmarks.TEMPLATE_112` (the 5-point template of a 112x112 crop):

* an ellipsoidal cap over the face oval (centre :data:`OVAL_CENTRE`, semi-axes
  :data:`OVAL_AXES`), 0 on the oval's border and outside it;
* a nose ridge running from between the eyes to the nose tip, rising towards the tip and
  falling off around it (Gaussian cross-section of width :data:`NOSE_SIGMA`);
* shallow eye sockets (Gaussian dips at the two eyes).

The three are mixed with the weights below and clipped to [0, 1]; the highest point is the
nose tip. Per image, the least-squares similarity transform (rotation, uniform scale,
translation) that maps the template's 5 landmarks onto the image's places the face oval;
the nose ridge and eye sockets follow the image's own eye and nose landmarks (mapped back
into the template frame), so a turned face keeps its nose peak on its nose. The surface is
rendered at the depth-map resolution with 4x4 supersampling per depth pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from facecat.core.landmarks import TEMPLATE_112

OVAL_CENTRE = (56.0, 64.0)
OVAL_AXES = (40.0, 50.0)
NOSE_SIGMA = 7.0
EYE_SIGMA = 6.0
OVAL_WEIGHT = 0.75
NOSE_WEIGHT = 0.25
EYE_WEIGHT = 0.08
SUPERSAMPLING = 4


def template_depth(points: Tensor, landmarks: Tensor | None = None) -> Tensor:
    """The canonical face depth surface at points of the 112x112 template frame.

    Args:
        points: (x, y) coordinates in the frame of :data:`facecat.core.landmarks.TEMPLATE_112`.
        landmarks: the face's 5 landmarks in that frame, placing the nose ridge and the eye
            sockets (default: the template's own); the face oval stays where it is.

    Shape:
        points (B, N, 2), landmarks (B, 5, 2) -> (B, N)

    Returns:
        Depth in [0, 1]: 0 outside the face oval, highest at the nose tip.
    """
    if landmarks is None:
        landmarks = TEMPLATE_112.to(points).expand(len(points), 5, 2)
    centre = points.new_tensor(OVAL_CENTRE)
    axes = points.new_tensor(OVAL_AXES)
    radius2 = ((points - centre) / axes).pow(2).sum(-1)
    oval = (1 - radius2).clamp(min=0).sqrt()

    bridge = landmarks[:, :2].mean(1, keepdim=True)
    direction = landmarks[:, 2:3] - bridge
    along = ((points - bridge) * direction).sum(-1) / direction.pow(2).sum(-1)
    along = along.clamp(0, 1)
    offset = points - (bridge + along[..., None] * direction)
    nose = along * torch.exp(-offset.pow(2).sum(-1) / (2 * NOSE_SIGMA**2))

    eyes = sum(
        torch.exp(-(points - landmarks[:, i : i + 1]).pow(2).sum(-1) / (2 * EYE_SIGMA**2))
        for i in (0, 1)
    )
    depth = OVAL_WEIGHT * oval + NOSE_WEIGHT * nose - EYE_WEIGHT * eyes
    return torch.where(radius2 < 1, depth.clamp(0, 1), torch.zeros_like(depth))


def _template_to_image(landmarks: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares similarity z -> a z + b (complex form) from the template to each face."""
    source = torch.view_as_complex(TEMPLATE_112.to(landmarks).contiguous())
    target = torch.view_as_complex(landmarks.contiguous())
    source_mean, target_mean = source.mean(), target.mean(-1, keepdim=True)
    centred = source - source_mean
    numerator = (centred.conj() * (target - target_mean)).sum(-1, keepdim=True)
    scale = numerator / centred.abs().pow(2).sum()
    return scale, target_mean - scale * source_mean


def pseudo_depth(landmarks: Tensor, image_size: int, depth_size: int) -> Tensor:
    """Render the canonical face depth surface onto faces given by their 5 landmarks.

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
    scale, shift = _template_to_image(landmarks)
    fine = depth_size * SUPERSAMPLING
    centres = (torch.arange(fine, device=landmarks.device) + 0.5) * (image_size / fine) - 0.5
    pixels = torch.complex(centres[None, :], centres[:, None]).reshape(1, -1)
    points = torch.view_as_real((pixels - shift) / scale)
    own = torch.view_as_real((torch.view_as_complex(landmarks.contiguous()) - shift) / scale)
    depth = template_depth(points, own).reshape(-1, 1, fine, fine)
    return torch.nn.functional.avg_pool2d(depth, SUPERSAMPLING)[:, 0]


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
