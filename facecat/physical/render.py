"""Differentiable rendering of a printed 3D face texture worn, posed, lit and photographed.

The chain, every step differentiable with respect to the texture:

1. **print** (:func:`print_texture`): the texture's colours are compressed into a printer's
   gamut (desaturated, black and white points lifted / lowered) and half-toned: a soft
   clustered-dot screen per channel (a sigmoid of colour minus screen, the differentiable
   surrogate of the hard threshold), integrated by ink spread (a Gaussian blur);
2. **wear** (:func:`render`): the printed texture is mapped on the wearer's face through the
   template surface aligned to the landmarks (:mod:`facecat.core.face_surface`), restricted to a
   region (:mod:`facecat.physical.regions`) and the face oval, and shaded (Lambertian, ambient plus
   diffuse from the posed surface normals and a light direction) before it replaces the
   wearer's pixels;
3. **pose**: the worn face is re-projected under a head rotation (yaw, pitch, roll about a
   pivot behind the face) with the template's depth: every pixel moves by the displacement of
   its surface point under the rotation (orthographic camera), the image is resampled with
   the first-order inverse of that displacement (kornia's ``remap``); self-occlusion is
   ignored, which is fair within the +-20 degrees used;
4. **re-capture**: exposure gain, Gaussian optical blur, sensor noise and JPEG compression
   (kornia's differentiable codec), each per image.

:class:`Capture` holds the conditions of a batch and draws them from :data:`CAPTURE_RANGES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import kornia
import torch
import torch.nn.functional as F
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from torch import Tensor

from facecat.core.face_surface import (
    UV_BOX,
    face_depth,
    face_oval,
    surface_normals,
    uv_coordinates,
    uv_transform,
)
from facecat.datasets.presentation_attacks.halftone import clustered_dot_screen
from facecat.physical.regions import texture_grid

__all__ = [
    "CAPTURE_RANGES",
    "PRINT_GAMUT",
    "Capture",
    "print_texture",
    "recapture",
    "render",
    "rotation",
    "unwrap",
]

#: Printable range of each channel and the saturation a print keeps.
PRINT_GAMUT = {"black": 0.07, "white": 0.93, "saturation": 0.85}
_SCREEN_PERIOD = 4.0  # half-tone cell, in texels of the 2x upsampled texture
_SCREEN_ANGLES = (15.0, 75.0, 45.0)  # degrees, per channel
_SCREEN_SOFTNESS = 0.08
_INK_SPREAD = 1.2  # Gaussian sigma in upsampled texels

#: Uniform ranges of the capture conditions (angles in degrees, blur in pixels).
CAPTURE_RANGES: dict[str, tuple[float, float]] = {
    "yaw": (-20.0, 20.0),
    "pitch": (-12.0, 12.0),
    "roll": (-8.0, 8.0),
    "light_azimuth": (-40.0, 40.0),
    "light_elevation": (-30.0, 30.0),
    "ambient": (0.45, 0.75),
    "exposure": (0.85, 1.15),
    "blur": (0.2, 0.9),
    "noise": (0.0, 0.02),
    "quality": (55.0, 95.0),
}


@dataclass(frozen=True)
class Capture:
    """The conditions of one photograph per image; every field is a (B,) tensor.

    Attributes:
        yaw, pitch, roll: head rotation in degrees.
        light_azimuth, light_elevation: light direction in degrees from the camera axis.
        ambient: share of ambient light (1: no shading).
        exposure: gain on the whole photograph.
        blur: Gaussian blur sigma in pixels (0: none).
        noise: standard deviation of the sensor noise.
        quality: JPEG quality (100: no compression).
    """

    yaw: Tensor
    pitch: Tensor
    roll: Tensor
    light_azimuth: Tensor
    light_elevation: Tensor
    ambient: Tensor
    exposure: Tensor
    blur: Tensor
    noise: Tensor
    quality: Tensor

    @classmethod
    def sample(
        cls,
        batch: int,
        generator: torch.Generator,
        *,
        ranges: dict[str, tuple[float, float]] | None = None,
        device: torch.device | str = "cpu",
    ) -> Capture:
        """Conditions drawn uniformly from ``ranges`` (default :data:`CAPTURE_RANGES`)."""
        ranges = CAPTURE_RANGES | (ranges or {})
        values = {}
        for field in fields(cls):
            low, high = ranges[field.name]
            draw = torch.rand(batch, generator=generator, device=generator.device)
            values[field.name] = (low + (high - low) * draw).to(device)
        return cls(**values)

    @classmethod
    def identity(cls, batch: int, device: torch.device | str = "cpu") -> Capture:
        """Frontal pose, no shading, no re-capture effects: the texture as printed."""
        zero, one = torch.zeros(batch, device=device), torch.ones(batch, device=device)
        return cls(zero, zero, zero, zero, zero, one, one, zero, zero, 100 * one)

    def as_dict(self) -> dict[str, Tensor]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def rotation(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """Head rotation matrices (B, 3, 3) from angles in degrees (x right, y down, z to camera).

    Roll turns about the camera axis, yaw about the vertical axis, pitch about the horizontal.
    """
    rotations = []
    for angle, axis in ((pitch, 0), (yaw, 1), (roll, 2)):
        axis_angle = torch.zeros(len(angle), 3, device=angle.device, dtype=angle.dtype)
        axis_angle[:, axis] = torch.deg2rad(angle)
        rotations.append(axis_angle_to_rotation_matrix(axis_angle))
    return rotations[2] @ rotations[1] @ rotations[0]


def print_texture(texture: Tensor) -> Tensor:
    """A texture as a colour printer reproduces it: gamut compression and soft half-toning.

    Args:
        texture: (B, 3, T, T) colours in [0, 1].

    Returns:
        The printed texture, same shape, in [0, 1].
    """
    grey = texture.mean(dim=1, keepdim=True)
    saturation, black, white = (
        PRINT_GAMUT["saturation"],
        PRINT_GAMUT["black"],
        PRINT_GAMUT["white"],
    )
    colour = black + (white - black) * (grey + saturation * (texture - grey))
    size = texture.shape[-1]
    fine = F.interpolate(colour, scale_factor=2, mode="bilinear", align_corners=False)
    thresholds = clustered_dot_screen(2 * size, 2 * size, _SCREEN_PERIOD, _SCREEN_ANGLES, like=fine)
    dots = 1.0 - torch.sigmoid((1.0 - fine - thresholds) / _SCREEN_SOFTNESS)
    kernel = 2 * math.ceil(3 * _INK_SPREAD) + 1
    inked = kornia.filters.gaussian_blur2d(
        dots, (kernel, kernel), (_INK_SPREAD, _INK_SPREAD), border_type="reflect"
    )
    return F.avg_pool2d(black + (white - black) * inked, 2)


def _texture_grid(uv: Tensor) -> Tensor:
    """Canonical coordinates (B, H, W, 2) -> ``grid_sample`` coordinates of the texture."""
    u_min, u_max, v_min, v_max = UV_BOX
    u = 2 * (uv[..., 0] - u_min) / (u_max - u_min) - 1
    return torch.stack([u, 2 * (uv[..., 1] - v_min) / (v_max - v_min) - 1], dim=-1)


def unwrap(images: Tensor, landmarks: Tensor, size: int) -> Tensor:
    """The wearers' own faces as textures: each texel sampled where the template puts it.

    Args:
        images: (B, 3, H, W) faces in [0, 1].
        landmarks: (B, 5, 2) their landmarks in pixels.
        size: texture side T.

    Returns:
        (B, 3, T, T) textures.
    """
    to_uv = uv_transform(landmarks).to(images.dtype)
    linear, shift = to_uv[:, :, :2], to_uv[:, :, 2]
    uv = texture_grid(size, images)[None] - shift[:, None, None]
    pixels = uv @ torch.linalg.inv(linear)[:, None].transpose(-1, -2)
    height, width = images.shape[-2:]
    grid = torch.stack(
        [(2 * pixels[..., 0] + 1) / width - 1, (2 * pixels[..., 1] + 1) / height - 1], dim=-1
    )
    return F.grid_sample(images, grid, align_corners=False, padding_mode="border")


def _pose_field(depth: Tensor, pivot: Tensor, rotations: Tensor) -> Tensor:
    """Per-pixel image displacement (B, H, W, 2) of the surface under the head rotation.

    Args:
        depth: (B, H, W) surface depth toward the camera, in pixels.
        pivot: (B, 3) rotation centre (x, y, z) in pixels.
        rotations: (B, 3, 3).
    """
    batch, height, width = depth.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, device=depth.device, dtype=depth.dtype),
        torch.arange(width, device=depth.device, dtype=depth.dtype),
        indexing="ij",
    )
    points = torch.stack([xs.expand(batch, -1, -1), ys.expand(batch, -1, -1), depth], dim=-1)
    relative = points - pivot[:, None, None]
    moved = relative @ rotations[:, None].transpose(-1, -2)
    return (moved - relative)[..., :2]


def render(
    faces: Tensor,
    landmarks: Tensor,
    texture: Tensor,
    region: Tensor,
    capture: Capture,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Photographs of wearers wearing a printed textured face region.

    Args:
        faces: (B, 3, H, W) wearers' photographs in [0, 1].
        landmarks: (B, 5, 2) their landmarks in pixels.
        texture: (B, 3, T, T) textures over the canonical frame (:data:`UV_BOX`) in [0, 1].
        region: (1 or B, 1, T, T) coverage of the print over the texture, in [0, 1].
        capture: the photograph's conditions.
        generator: RNG of the sensor noise.

    Returns:
        ``(photographs (B, 3, H, W) in [0, 1], landmarks moved by the pose (B, 5, 2))``.
    """
    if faces.ndim != 4 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (B, 3, H, W), got {tuple(faces.shape)}")
    if texture.ndim != 4 or texture.shape[:2] != (faces.shape[0], 3):
        raise ValueError(
            f"texture must be (B, 3, T, T) with B = {faces.shape[0]}, got {tuple(texture.shape)}"
        )
    batch, _, height, width = faces.shape
    uv, scale = uv_coordinates(landmarks, (height, width))
    uv, scale = uv.to(faces.dtype), scale.to(faces.dtype)
    grid = _texture_grid(uv)
    albedo = F.grid_sample(print_texture(texture), grid, align_corners=False)
    coverage = F.grid_sample(region.expand(batch, -1, -1, -1).to(faces), grid, align_corners=False)
    coverage = coverage * face_oval(uv)[:, None]
    depth = face_depth(uv) * scale[:, None, None]
    rotations = rotation(capture.yaw, capture.pitch, capture.roll).to(faces)
    normals = torch.einsum("bij,bjhw->bihw", rotations, surface_normals(depth[:, None]))
    azimuth = torch.deg2rad(capture.light_azimuth)
    elevation = torch.deg2rad(capture.light_elevation)
    light = torch.stack(
        [azimuth.sin() * elevation.cos(), -elevation.sin(), azimuth.cos() * elevation.cos()], dim=1
    ).to(faces)
    diffuse = torch.einsum("bihw,bi->bhw", normals, light).clamp_min(0)[:, None]
    ambient = capture.ambient.to(faces)[:, None, None, None]
    worn = faces * (1 - coverage) + albedo * (ambient + (1 - ambient) * diffuse) * coverage
    pivot = torch.cat([landmarks.float().mean(dim=1), -1.0 * scale[:, None].float()], dim=1)
    field = _pose_field(depth, pivot.to(faces), rotations)
    pixels = (
        torch.stack(
            torch.meshgrid(
                torch.arange(height, device=faces.device, dtype=faces.dtype),
                torch.arange(width, device=faces.device, dtype=faces.dtype),
                indexing="ij",
            )[::-1],
            dim=-1,
        )
        - field
    )
    posed = kornia.geometry.transform.remap(
        worn, pixels[..., 0], pixels[..., 1], padding_mode="border", align_corners=True
    )
    moved = landmarks + _sample_field(field, landmarks)
    return recapture(posed, capture, generator=generator), moved


def _sample_field(field: Tensor, points: Tensor) -> Tensor:
    """Bilinear samples (B, N, 2) of a (B, H, W, 2) field at pixel points (B, N, 2)."""
    height, width = field.shape[1:3]
    grid = torch.stack(
        [(2 * points[..., 0] + 1) / width - 1, (2 * points[..., 1] + 1) / height - 1], dim=-1
    )
    sampled = F.grid_sample(
        field.permute(0, 3, 1, 2),
        grid[:, :, None].to(field),
        align_corners=False,
        padding_mode="border",
    )
    return sampled[..., 0].transpose(1, 2)


def recapture(
    images: Tensor, capture: Capture, *, generator: torch.Generator | None = None
) -> Tensor:
    """Exposure, optical blur, sensor noise and JPEG of a photograph, per image.

    Args:
        images: (B, 3, H, W) in [0, 1].
        capture: per-image ``exposure``, ``blur`` (pixels), ``noise`` and ``quality``.
        generator: RNG of the noise (on the images' device).

    Returns:
        (B, 3, H, W) in [0, 1].
    """
    out = images * capture.exposure.to(images)[:, None, None, None]
    sigma = capture.blur.to(images)
    if (sigma > 0).any():
        kernel = 2 * math.ceil(3 * float(sigma.max())) + 1
        spread = sigma.clamp_min(1e-3)[:, None].expand(-1, 2)
        blurred = kornia.filters.gaussian_blur2d(out, (kernel, kernel), spread, "replicate")
        out = torch.where((sigma > 0)[:, None, None, None], blurred, out)
    noise = torch.randn(out.shape, generator=generator, device=out.device).to(out.dtype)
    out = (out + capture.noise.to(images)[:, None, None, None] * noise).clamp(0, 1)
    quality = capture.quality.to(images)
    if (quality < 100).any():
        coded = kornia.enhance.jpeg_codec_differentiable(out, quality.clamp(1, 99))
        out = torch.where((quality < 100)[:, None, None, None], coded, out)
    return out.clamp(0, 1)
