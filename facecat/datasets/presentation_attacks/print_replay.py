"""Print and replay attacks, and the print process that other paper attacks share."""

from __future__ import annotations

import math

import torch
from kornia.geometry.transform import (
    get_perspective_transform,
    remap,
    warp_affine,
    warp_perspective,
)
from torch import Tensor

from facecat.datasets.presentation_attacks._geometry import _frame, _gauss, _soft
from facecat.datasets.presentation_attacks._ops import (
    _affine_about,
    _blend,
    _blur,
    _chance,
    _choice,
    _finish,
    _highlight,
    _jitter_colour,
    _noise,
    _rgb,
    _saturate,
    _sign,
    _uniform,
    _warp,
)
from facecat.datasets.presentation_attacks.halftone import clustered_dot_screen

__all__ = ["paper_print", "screen_replay"]

# ----------------------------------------------------------------------------- shared physics


def _halftone(
    img: Tensor, rng: torch.Generator, period: float, amount: float, chroma: float = 0.4
) -> Tensor:
    """Clustered-dot CMY halftone (screens at 15/75/0 degrees), mixed in by ``amount``."""
    base = _uniform(rng, 0.0, 90.0)
    phase = (_uniform(rng, 0.0, period), _uniform(rng, 0.0, period))
    angles = [base + offset for offset in (15.0, 75.0, 0.0)]
    thresholds = clustered_dot_screen(*img.shape[-2:], period, angles, phase, like=img)
    planes = 1.0 - torch.sigmoid((1.0 - img[:3] - thresholds) / 0.12)
    # Re-capture blurs the dot rosette and mixes the inks, so most of the residual is luminance.
    residual = planes - img
    residual = _saturate(residual, chroma)
    return img + amount * residual


def _paper_texture(rng: torch.Generator, like: Tensor, amount: float) -> Tensor:
    """Multiplicative paper texture ``[1, H, W]``: fine grain plus oriented fibres."""
    h, w = like.shape[-2:]
    grain = _blur(_noise(rng, (1, h, w), like), 0.5)
    fibres = _blur(_noise(rng, (1, h, w), like), 0.35, 2.5)
    angle = _uniform(rng, 0.0, 180.0)
    fibres = _warp(
        fibres, _affine_about(((w - 1) / 2, (h - 1) / 2), angle, 1.0, (0, 0)), "reflection"
    )
    grain = grain / grain.std().clamp_min(1e-6)
    fibres = fibres / fibres.std().clamp_min(1e-6)
    return 1.0 + amount * (0.6 * grain + 0.8 * fibres)


def _print_process(img: Tensor, rng: torch.Generator, strength: float) -> Tensor:
    """Ink-jet/laser print and re-capture: gamut compression, halftone, paper, blur."""
    sat = 1.0 - strength * _uniform(rng, 0.15, 0.4)
    contrast = 1.0 - strength * _uniform(rng, 0.08, 0.25)
    black = strength * _uniform(rng, 0.03, 0.1)
    white = 1.0 - strength * _uniform(rng, 0.0, 0.07)
    warm = (
        1.0,
        1.0 - strength * _uniform(rng, 0.0, 0.03),
        1.0 - strength * _uniform(rng, 0.01, 0.06),
    )
    out = _saturate(img, sat)
    mean = out.mean()
    out = mean + contrast * (out - mean)
    out = (black + (white - black) * out) * _rgb(warm, img)
    out = _halftone(
        out.clamp(0, 1),
        rng,
        _uniform(rng, 1.7, 2.6),
        strength * _uniform(rng, 0.12, 0.3),
        _uniform(rng, 0.25, 0.5),
    )
    out = out * _paper_texture(rng, img, strength * _uniform(rng, 0.015, 0.04))
    return _blur(out, _uniform(rng, 0.45, 0.8))


def _lighting_gradient(rng: torch.Generator, like: Tensor, amount: float) -> Tensor:
    """Planar illumination fall-off ``[1, H, W]`` with unit mean."""
    h, w = like.shape[-2:]
    a = _uniform(rng, 0.0, 2.0 * math.pi)
    ys = torch.linspace(-1.0, 1.0, h, dtype=like.dtype, device=like.device)[:, None]
    xs = torch.linspace(-1.0, 1.0, w, dtype=like.dtype, device=like.device)[None, :]
    return (1.0 + amount * (math.cos(a) * xs + math.sin(a) * ys))[None]


def _sensor_noise(img: Tensor, rng: torch.Generator, sigma: float) -> Tensor:
    return img + sigma * _noise(rng, tuple(img.shape), img)


# ----------------------------------------------------------------------------- print / replay


def paper_print(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Print attack: the face printed on paper and held up to the camera.

    Gamut compression (less saturation and contrast, raised black, warm paper white),
    CMY clustered-dot halftone, paper grain and fibres, slight bend and perspective of the
    sheet with uneven lighting; half of the seeds show the sheet's white edge and background.

    Args:
        face: RGB face in ``[0, 1]``.
        landmarks: 5-point landmarks, pixel ``(x, y)``.
        rng: source of every random choice.
        donor: unused.
        donor_landmarks: unused.

    Shape:
        - face, output: :math:`(3, H, W)`; landmarks: :math:`(5, 2)`

    Returns:
        The simulated attack image, same shape and dtype as ``face``.
    """
    h, w = face.shape[-2:]
    strength = _uniform(rng, 0.5, 1.0)
    out = _print_process(face, rng, strength)
    # Cylindrical bend of the sheet about a vertical axis: foreshortening and shading.
    bend = _uniform(rng, 0.0, 0.06) * strength
    xs = torch.linspace(-1.0, 1.0, w, dtype=face.dtype, device=face.device)
    src_x = xs + bend * torch.sin(0.5 * math.pi * xs) - bend * xs
    map_x = ((src_x + 1) * 0.5 * (w - 1))[None, :].expand(h, w)
    map_y = torch.arange(h, dtype=face.dtype, device=face.device)[:, None].expand(h, w)
    out = remap(out[None], map_x[None], map_y[None], padding_mode="border", align_corners=True)[0]
    out = out * (1.0 - 2.0 * bend * xs**2)[None, None, :]
    out = out * _lighting_gradient(rng, face, _uniform(rng, 0.03, 0.12))
    # Perspective of the hand-held sheet; with a visible edge the sheet is smaller.
    edge = _chance(rng, 0.5)
    size = float(min(h, w))
    corners = torch.tensor([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=torch.float64)
    outward = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=torch.float64)
    jitter = torch.rand(4, 2, generator=rng, device=rng.device, dtype=torch.float64).cpu()
    if edge:
        inset = _uniform(rng, 0.01, 0.05) * size
        dst = corners - outward * (inset + jitter * 0.04 * size)
        margin = _uniform(rng, 0.5, 1.8) * max(size / 64.0, 0.5)
        ys = torch.arange(h, dtype=face.dtype, device=face.device)[:, None]
        xs_ = torch.arange(w, dtype=face.dtype, device=face.device)[None, :]
        border = torch.minimum(torch.minimum(xs_, w - 1 - xs_), torch.minimum(ys, h - 1 - ys))
        paper = _rgb(_jitter_colour(rng, (0.92, 0.91, 0.87), 0.04), face)
        out = _blend(out, paper.expand_as(out), _soft(border - margin, 0.4))
    else:
        dst = corners + outward * (0.01 + jitter * 0.04) * size
    matrix = get_perspective_transform(corners[None], dst[None]).to(face)
    sheet = warp_perspective(out[None], matrix, (h, w), align_corners=True)[0]
    cover = warp_perspective(torch.ones_like(out[:1])[None], matrix, (h, w), align_corners=True)[0]
    border_colour = torch.cat([face[:, 0], face[:, -1], face[:, :, 0], face[:, :, -1]], 1)
    bg = border_colour.mean(1)[:, None, None] * _uniform(rng, 0.6, 1.0)
    bg = bg + 0.04 * _blur(_noise(rng, (1, h, w), face), 3.0 * size / 64.0)
    out = sheet + (1.0 - cover) * bg
    out = _sensor_noise(out, rng, _uniform(rng, 0.003, 0.012))
    return _finish(out, face)


def screen_replay(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Replay attack: the face shown on a screen and re-captured by the camera.

    The face is drawn on an RGB-stripe subpixel grid and re-sampled at a slightly different
    scale and angle (moire), with display gamma, cool white point, raised black level,
    a soft specular glare and, for some seeds, the screen bezel at one border.

    Args:
        face: RGB face in ``[0, 1]``.
        landmarks: 5-point landmarks, pixel ``(x, y)``.
        rng: source of every random choice.
        donor: unused.
        donor_landmarks: unused.

    Shape:
        - face, output: :math:`(3, H, W)`; landmarks: :math:`(5, 2)`

    Returns:
        The simulated attack image, same shape and dtype as ``face``.
    """
    h, w = face.shape[-2:]
    k = 3
    strength = _uniform(rng, 0.5, 1.0)
    # The screen extends beyond the crop, so the re-sampled view never leaves it.
    pad = max(2, math.ceil(0.12 * max(h, w)))
    screen = torch.nn.functional.pad(face[None], (pad, pad, pad, pad), mode="replicate")[0]
    hi = screen.repeat_interleave(k, -1).repeat_interleave(k, -2)
    cell = torch.zeros(3, k, k, dtype=face.dtype, device=face.device)
    for c in range(3):
        cell[c, :, c] = 1.0
    cell[:, k - 1, :] *= _uniform(rng, 0.3, 0.7)
    grid = cell.repeat(1, h + 2 * pad, w + 2 * pad)
    grid = grid / grid.mean((1, 2), keepdim=True)
    hi = _blur(hi * grid, _uniform(rng, 1.12, 1.3) / (0.9 + 0.1 * strength))
    angle = _sign(rng) * _uniform(rng, 0.5, 4.0)
    zoom = 1.0 + _sign(rng) * _uniform(rng, 0.015, 0.06)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = math.radians(angle)
    c, s = zoom * math.cos(a) / k, zoom * math.sin(a) / k
    hx, hy = (k * (w + 2 * pad) - 1) / 2, (k * (h + 2 * pad) - 1) / 2
    matrix = torch.tensor(
        [[c, -s, cx - (c * hx - s * hy)], [s, c, cy - (s * hx + c * hy)]], dtype=torch.float64
    ).to(face)
    out = warp_affine(
        hi[None], matrix[None], (h, w), padding_mode="reflection", align_corners=True
    )[0]
    gamma = _uniform(rng, 0.8, 1.25)
    out = out.clamp(0, 1) ** gamma
    cool = (
        1.0 - strength * _uniform(rng, 0.0, 0.05),
        1.0,
        1.0 + strength * _uniform(rng, 0.0, 0.06),
    )
    black = _uniform(rng, 0.01, 0.06)
    out = black + (1.0 - black) * out * _rgb(cool, face)
    fr = _frame(landmarks, h, w)
    gu = _uniform(rng, -1.2, 1.2) * fr.d
    gv = _uniform(rng, -0.6, 1.4) * fr.m
    spread = _uniform(rng, 0.25, 0.6) * fr.d
    glare = _uniform(rng, 0.12, 0.4) * _gauss(fr, gu, gv, spread, spread * _uniform(rng, 0.5, 1.5))
    out = _highlight(out, glare.to(face.dtype))
    if _chance(rng, 0.4):
        side = _choice(rng, 4)
        width = _uniform(rng, 0.04, 0.12) * (w if side < 2 else h)
        ys = torch.arange(h, dtype=face.dtype, device=face.device)[:, None] - cy
        xs = torch.arange(w, dtype=face.dtype, device=face.device)[None, :] - cx
        along = (xs * math.cos(a) + ys * math.sin(a), -xs * math.sin(a) + ys * math.cos(a))
        half = (w / 2, h / 2)
        axis, sign = divmod(side, 2)
        depth = (1 - 2 * sign) * along[axis] - (half[axis] - width)
        bezel = _soft(-depth, 0.5)
        tone = _uniform(rng, 0.02, 0.09) * (
            1 + 0.3 * torch.sigmoid(along[1 - axis] / (0.3 * half[axis]))
        )
        out = _blend(out, tone.expand_as(out), bezel)
    out = _sensor_noise(out, rng, _uniform(rng, 0.003, 0.01))
    return _finish(out, face)
