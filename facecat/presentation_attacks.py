"""Simulated presentation attacks: the 14 SiW-Mv2 spoof types on aligned face crops.

No face-spoofing data set can be had offline, so the embedded protocol renders each
presentation-attack (PA) type as a physically motivated image-space simulation of the attack
instrument (print, screen, mask, makeup, partial cover) on an aligned RGB face crop with its
5-point landmarks (pixel ``(x, y)``: left eye, right eye, nose, left mouth corner, right mouth
corner; "left" = image left). Every random choice comes from a ``torch.Generator``, so an
attack is a deterministic function of (face, landmarks, donor, seed), and every strength is
drawn per seed so that no single global statistic separates an attack from a bona fide face.

All geometry is placed in a face frame built from the landmarks (origin at the eye midpoint,
``u`` along the eye line, ``v`` towards the mouth, in pixels), so the simulations work at any
resolution, aspect ratio and in-plane rotation.

Local types (the four ``Partial_*`` and the three ``Makeup_*``) change only the pixels of
:func:`attack_region`; every other pixel is returned bit-exactly.

Example:
    >>> import torch
    >>> face = torch.rand(3, 64, 64)
    >>> lm = torch.tensor([[22.0, 26], [42, 26], [32, 37], [24, 47], [40, 47]])
    >>> simulate_pa("Paper", face, lm, seed=0).shape
    torch.Size([3, 64, 64])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from kornia.filters import bilateral_blur, gaussian_blur2d
from kornia.geometry.transform import (
    get_perspective_transform,
    remap,
    warp_affine,
    warp_perspective,
)
from torch import Tensor

__all__ = [
    "PA_SIMULATORS",
    "PA_TYPES",
    "VERSION",
    "PaSimulator",
    "attack_region",
    "makeup_cosmetic",
    "makeup_impersonation",
    "makeup_obfuscation",
    "mask_half",
    "mask_mannequin",
    "mask_paper",
    "mask_silicone",
    "mask_transparent",
    "needs_donor",
    "paper_print",
    "partial_eye",
    "partial_funny_eye",
    "partial_mouth",
    "partial_paper_glasses",
    "screen_replay",
    "simulate_pa",
]

#: Raise when any simulator's output for the same face, landmarks, donor and seed changes: it
#: is part of the embedded protocol's build key (``tests/test_generator_versions.py`` holds
#: the golden digests that catch a change made without it).
VERSION = 1

PA_TYPES: tuple[str, ...] = (
    "Makeup_Co",
    "Makeup_Im",
    "Makeup_Ob",
    "Mask_Half",
    "Mask_Mann",
    "Mask_Paper",
    "Mask_Silicone",
    "Mask_Trans",
    "Paper",
    "Partial_Eye",
    "Partial_Funnyeye",
    "Partial_Mouth",
    "Partial_Paperglass",
    "Replay",
)

PaSimulator = Callable[[Tensor, Tensor, torch.Generator, Tensor | None, Tensor | None], Tensor]

_MIN_SIZE = 16
_LE, _RE, _NOSE, _ML, _MR = range(5)
_LUMA = (0.299, 0.587, 0.114)

# ----------------------------------------------------------------------------- randomness


def _uniform(rng: torch.Generator, low: float, high: float) -> float:
    """One float drawn uniformly from ``[low, high)``."""
    draw = torch.rand((), generator=rng, device=rng.device, dtype=torch.float64)
    return low + (high - low) * float(draw)


def _sign(rng: torch.Generator) -> float:
    return 1.0 if _uniform(rng, 0.0, 1.0) < 0.5 else -1.0


def _chance(rng: torch.Generator, p: float) -> bool:
    return _uniform(rng, 0.0, 1.0) < p


def _choice(rng: torch.Generator, n: int) -> int:
    return min(int(_uniform(rng, 0.0, n)), n - 1)


def _noise(rng: torch.Generator, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Standard normal noise drawn on the generator's device, returned like ``like``."""
    out = torch.randn(shape, generator=rng, device=rng.device, dtype=like.dtype)
    return out.to(like.device)


# ----------------------------------------------------------------------------- image helpers


def _ksize(sigma: float, size: int) -> int:
    """Odd Gaussian kernel size covering 3 sigma, small enough for reflect padding."""
    k = 2 * math.ceil(3.0 * sigma) + 1
    return max(1, min(k, 2 * (size - 1) - 1))


def _blur(img: Tensor, sigma_y: float, sigma_x: float | None = None) -> Tensor:
    """Gaussian blur of a ``[C, H, W]`` image (standard deviations in pixels)."""
    sigma_x = sigma_y if sigma_x is None else sigma_x
    if max(sigma_x, sigma_y) < 1e-3:
        return img
    h, w = img.shape[-2:]
    kernel = (_ksize(sigma_y, h), _ksize(sigma_x, w))
    sigma = (max(sigma_y, 1e-3), max(sigma_x, 1e-3))
    return gaussian_blur2d(img[None], kernel, sigma)[0]


def _luma(img: Tensor) -> Tensor:
    """Rec. 601 luminance ``[1, H, W]`` of an RGB image ``[3, H, W]``."""
    weights = torch.tensor(_LUMA, dtype=img.dtype, device=img.device)
    return (img * weights[:, None, None]).sum(0, keepdim=True)


def _saturate(img: Tensor, amount: float) -> Tensor:
    """Scale chroma about the luminance (``amount < 1`` desaturates)."""
    y = _luma(img)
    return y + amount * (img - y)


def _rgb(values: tuple[float, float, float], like: Tensor) -> Tensor:
    """A colour as a ``[3, 1, 1]`` tensor on ``like``'s device and dtype."""
    return torch.tensor(values, dtype=like.dtype, device=like.device)[:, None, None]


def _jitter_colour(
    rng: torch.Generator, base: tuple[float, float, float], spread: float
) -> tuple[float, float, float]:
    """``base`` with each channel moved by up to ``spread``, kept in ``[0, 1]``."""
    r, g, b = (min(max(c + _uniform(rng, -spread, spread), 0.0), 1.0) for c in base)
    return (r, g, b)


def _blend(img: Tensor, layer: Tensor, alpha: Tensor | float) -> Tensor:
    """Alpha-composite ``layer`` over ``img`` (``alpha`` ``[H, W]``, ``[1, H, W]`` or scalar)."""
    if isinstance(alpha, Tensor) and alpha.dim() == 2:
        alpha = alpha[None]
    return img + alpha * (layer - img)


def _tint(img: Tensor, colour: Tensor) -> Tensor:
    """Recolour ``img`` with ``colour`` ([3, 1, 1]) keeping its luminance texture."""
    return colour * _luma(img) / _luma(colour).clamp_min(1e-3)


def _highlight(img: Tensor, light: Tensor) -> Tensor:
    """Screen-blend an achromatic light map ``[H, W]`` in ``[0, 1]`` onto ``img``."""
    return 1.0 - (1.0 - img) * (1.0 - light.clamp(0.0, 1.0))[None]


def _mean_colour(img: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean colour ``[3, 1, 1]`` of ``img`` under ``weight`` ``[H, W]``."""
    total = weight.sum().clamp_min(1e-6)
    return ((img * weight[None]).sum((1, 2)) / total)[:, None, None]


def _warp(img: Tensor, matrix: Tensor, padding: str = "border") -> Tensor:
    """Affine-warp ``[C, H, W]`` with a ``[2, 3]`` source-to-destination pixel matrix."""
    h, w = img.shape[-2:]
    m = matrix.to(device=img.device, dtype=img.dtype)[None]
    return warp_affine(img[None], m, (h, w), padding_mode=padding, align_corners=True)[0]


def _affine_about(
    centre: tuple[float, float], angle_deg: float, scale: float, shift: tuple[float, float]
) -> Tensor:
    """``[2, 3]`` matrix rotating/scaling about ``centre`` (pixels) then shifting."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    cx, cy = centre
    tx = cx - (c * cx - s * cy) + shift[0]
    ty = cy - (s * cx + c * cy) + shift[1]
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)


def _similarity(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity ``[2, 3]`` mapping points ``src`` onto ``dst`` (``[N, 2]``)."""
    src, dst = src.double(), dst.double()
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    norm = (s0**2).sum().clamp_min(1e-9)
    a = (s0 * d0).sum() / norm
    b = (s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum() / norm
    rot = torch.stack([torch.stack([a, -b]), torch.stack([b, a])])
    t = md - rot @ ms
    return torch.cat([rot, t[:, None]], 1).cpu()


def _finish(out: Tensor, face: Tensor, region: Tensor | None = None) -> Tensor:
    """Clamp to ``[0, 1]``, restore dtype, and keep ``face`` bit-exact outside ``region``."""
    out = out.clamp(0.0, 1.0).to(face.dtype)
    if region is not None:
        out = torch.where(region[None].to(face.device), out, face)
    return out


# ----------------------------------------------------------------------------- face frame


class _Frame(NamedTuple):
    """Pixel grid expressed in a landmark-aligned face frame.

    ``u`` runs along the eye line (image-left eye to image-right eye), ``v`` perpendicular
    towards the mouth, both in pixels from the eye midpoint. ``d`` is the inter-ocular
    distance and ``m`` the eye-to-mouth distance (pixels). ``pts`` are the five landmarks in
    ``(u, v)``; ``origin``, ``eu`` and ``ev`` map ``(u, v)`` back to image pixels.
    """

    u: Tensor
    v: Tensor
    d: float
    m: float
    pts: tuple[tuple[float, float], ...]
    origin: tuple[float, float]
    eu: tuple[float, float]
    ev: tuple[float, float]

    def to_xy(self, u: float, v: float) -> tuple[float, float]:
        """Image pixel ``(x, y)`` of the face-frame point ``(u, v)``."""
        return (
            self.origin[0] + u * self.eu[0] + v * self.ev[0],
            self.origin[1] + u * self.eu[1] + v * self.ev[1],
        )


def _frame(landmarks: Tensor, height: int, width: int) -> _Frame:
    lm = landmarks.detach().to(dtype=torch.float64, device="cpu")
    le, re = lm[_LE], lm[_RE]
    origin = (le + re) / 2
    axis = re - le
    norm = float(axis.norm())
    eu = (axis / norm) if norm > 1e-6 else torch.tensor([1.0, 0.0], dtype=torch.float64)
    ev = torch.stack([-eu[1], eu[0]])
    d = max(norm, 2.0)
    rel = lm - origin
    pts_u, pts_v = rel @ eu, rel @ ev
    mouth_v = float((pts_v[_ML] + pts_v[_MR]) / 2)
    m = max(mouth_v, 0.5 * d)
    dev = landmarks.device
    ys = torch.arange(height, dtype=torch.float64, device=dev)[:, None] - float(origin[1])
    xs = torch.arange(width, dtype=torch.float64, device=dev)[None, :] - float(origin[0])
    u = xs * float(eu[0]) + ys * float(eu[1])
    v = xs * float(ev[0]) + ys * float(ev[1])
    pts = tuple((float(a), float(b)) for a, b in zip(pts_u, pts_v, strict=True))
    return _Frame(
        u=u,
        v=v,
        d=d,
        m=m,
        pts=pts,
        origin=(float(origin[0]), float(origin[1])),
        eu=(float(eu[0]), float(eu[1])),
        ev=(float(ev[0]), float(ev[1])),
    )


def _rotated(fr: _Frame, cu: float, cv: float, angle_deg: float) -> tuple[Tensor, Tensor]:
    du, dv = fr.u - cu, fr.v - cv
    if angle_deg == 0.0:
        return du, dv
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return c * du + s * dv, -s * du + c * dv


def _ellipse_sdf(
    fr: _Frame, cu: float, cv: float, au: float, av: float, angle_deg: float = 0.0
) -> Tensor:
    """Approximate signed distance (pixels, negative inside) to an ellipse in the face frame."""
    du, dv = _rotated(fr, cu, cv, angle_deg)
    au, av = max(au, 0.5), max(av, 0.5)
    r = torch.sqrt((du / au) ** 2 + (dv / av) ** 2)
    return (r - 1.0) * min(au, av)


def _box_sdf(
    fr: _Frame,
    cu: float,
    cv: float,
    hu: float,
    hv: float,
    angle_deg: float = 0.0,
    radius: float = 0.0,
) -> Tensor:
    """Signed distance (pixels, negative inside) to a rounded box in the face frame."""
    du, dv = _rotated(fr, cu, cv, angle_deg)
    radius = min(radius, hu, hv)
    qu = du.abs() - hu + radius
    qv = dv.abs() - hv + radius
    outside = torch.sqrt(qu.clamp_min(0) ** 2 + qv.clamp_min(0) ** 2)
    inside = torch.maximum(qu, qv).clamp_max(0)
    return outside + inside - radius


def _soft(sdf: Tensor, width: float = 0.6) -> Tensor:
    """Anti-aliased coverage in ``[0, 1]`` of the inside of a signed-distance field."""
    return torch.sigmoid(-sdf / max(width, 1e-3))


def _band(sdf: Tensor, inner: float, outer: float, width: float = 0.5) -> Tensor:
    """Coverage of the strip ``inner <= sdf <= outer`` (pixels)."""
    return _soft(sdf - outer, width) * _soft(inner - sdf, width)


def _gauss(fr: _Frame, cu: float, cv: float, su: float, sv: float, angle: float = 0.0) -> Tensor:
    du, dv = _rotated(fr, cu, cv, angle)
    return torch.exp(-0.5 * ((du / max(su, 0.3)) ** 2 + (dv / max(sv, 0.3)) ** 2))


def _face_oval_sdf(fr: _Frame, grow: float = 1.0) -> Tensor:
    return _ellipse_sdf(fr, 0.0, 0.43 * fr.m, 1.1 * fr.d * grow, 1.3 * fr.m * grow)


def _eye_sdf(fr: _Frame, index: int, grow: float = 1.0) -> Tensor:
    cu, cv = fr.pts[index]
    return _ellipse_sdf(fr, cu, cv, 0.3 * fr.d * grow, 0.17 * fr.d * grow)


def _mouth_geometry(fr: _Frame) -> tuple[float, float, float, float]:
    """Mouth centre ``(u, v)``, half width and tilt (degrees) in the face frame."""
    (lu, lv), (ru, rv) = fr.pts[_ML], fr.pts[_MR]
    half = max(0.5 * math.hypot(ru - lu, rv - lv), 0.2 * fr.d)
    tilt = math.degrees(math.atan2(rv - lv, ru - lu)) if ru > lu else 0.0
    return (lu + ru) / 2, (lv + rv) / 2, half, tilt


def _mouth_sdf(fr: _Frame, grow: float = 1.0) -> Tensor:
    cu, cv, half, tilt = _mouth_geometry(fr)
    return _ellipse_sdf(fr, cu, cv, 1.1 * half * grow, 0.22 * fr.m * grow, tilt)


def _skin_weight(fr: _Frame) -> Tensor:
    """Soft mask of cheeks, nose and forehead (face oval minus eyes and mouth)."""
    oval = _soft(_face_oval_sdf(fr, 0.85), 1.0)
    holes = torch.maximum(
        torch.maximum(_soft(_eye_sdf(fr, _LE, 1.4), 1.0), _soft(_eye_sdf(fr, _RE, 1.4), 1.0)),
        _soft(_mouth_sdf(fr, 1.3), 1.0),
    )
    return oval * (1.0 - holes)


def _scale(fr: _Frame) -> float:
    """Pixel scale relative to the canonical 64x64 crop (inter-ocular distance 20 px)."""
    return fr.d / 20.0


# ----------------------------------------------------------------------------- shared physics


def _halftone(
    img: Tensor, rng: torch.Generator, period: float, amount: float, chroma: float = 0.4
) -> Tensor:
    """Clustered-dot CMY halftone (screens at 15/75/0 degrees), mixed in by ``amount``."""
    h, w = img.shape[-2:]
    ys = torch.arange(h, dtype=img.dtype, device=img.device)[:, None]
    xs = torch.arange(w, dtype=img.dtype, device=img.device)[None, :]
    base = _uniform(rng, 0.0, 90.0)
    phase = (_uniform(rng, 0.0, period), _uniform(rng, 0.0, period))
    k = 2.0 * math.pi / period
    planes = []
    for channel, offset in enumerate((15.0, 75.0, 0.0)):
        a = math.radians(base + offset)
        p = (xs + phase[0]) * math.cos(a) + (ys + phase[1]) * math.sin(a)
        q = -(xs + phase[0]) * math.sin(a) + (ys + phase[1]) * math.cos(a)
        threshold = 0.5 + 0.25 * (torch.cos(k * p) + torch.cos(k * q))
        ink = torch.sigmoid((1.0 - img[channel] - threshold) / 0.12)
        planes.append(1.0 - ink)
    # Re-capture blurs the dot rosette and mixes the inks, so most of the residual is luminance.
    residual = torch.stack(planes) - img
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


def _pasted_print(
    face: Tensor,
    fr: _Frame,
    rng: torch.Generator,
    centre: tuple[float, float],
    half: tuple[float, float],
    angle: float,
    misalign: float,
) -> tuple[Tensor, Tensor]:
    """A printed copy of the face cut to a rotated rectangle (face-frame ``centre``/``half``).

    The photo inside is re-scaled, rotated and shifted by up to ``misalign`` of the
    inter-ocular distance (the cut-out never sits exactly), printed, and given a white cut
    margin. Returns the composited image and the paper coverage ``[H, W]``.
    """
    sc = _scale(fr)
    cx, cy = fr.to_xy(*centre)
    photo = _warp(
        face,
        _affine_about(
            (cx, cy),
            _uniform(rng, -4.0, 4.0),
            _uniform(rng, 0.94, 1.08),
            (_uniform(rng, -1, 1) * misalign * fr.d, _uniform(rng, -1, 1) * misalign * fr.d),
        ),
    )
    printed = _print_process(photo, rng, _uniform(rng, 0.7, 1.0))
    sdf = _box_sdf(fr, centre[0], centre[1], half[0], half[1], angle, 0.6 * sc)
    cover = _soft(sdf, 0.45).to(face.dtype)
    margin = _band(sdf, -_uniform(rng, 0.4, 1.3) * sc - 0.5, 0.0).to(face.dtype)
    paper = _rgb(_jitter_colour(rng, (0.93, 0.92, 0.88), 0.04), face)
    printed = _blend(printed, paper.expand_as(printed), margin)
    shadow_sdf = _box_sdf(
        fr, centre[0] + 0.6 * sc, centre[1] + 0.8 * sc, half[0], half[1], angle, 0.6 * sc
    )
    shadow = _soft(shadow_sdf, 0.9 * sc).to(face.dtype) * (1.0 - cover)
    out = face * (1.0 - _uniform(rng, 0.2, 0.45) * shadow)[None]
    return _blend(out, printed, cover), cover


# ----------------------------------------------------------------------------- regions


def _region_oval(fr: _Frame) -> Tensor:
    return _face_oval_sdf(fr) <= 2.0


def _region_eyes(fr: _Frame) -> Tensor:
    pad = 3.0 * _scale(fr) + 1.0
    return _box_sdf(fr, 0.0, 0.0, 1.07 * fr.d + pad, 0.36 * fr.m + 0.1 * fr.d + pad) <= 0


def _region_funny_eyes(fr: _Frame) -> Tensor:
    pad = 3.0 * _scale(fr) + 1.0
    return _box_sdf(fr, 0.0, 0.0, 1.02 * fr.d + pad, 0.6 * fr.d + pad) <= 0


def _region_glasses(fr: _Frame) -> Tensor:
    pad = 3.0 * _scale(fr) + 1.0
    return _box_sdf(fr, 0.0, 0.0, 1.25 * fr.d + pad, 0.5 * fr.d + pad) <= 0


def _region_mouth(fr: _Frame) -> Tensor:
    cu, cv, half, tilt = _mouth_geometry(fr)
    pad = 3.0 * _scale(fr) + 1.0
    return (
        _box_sdf(fr, cu, cv, half + 0.45 * fr.d + pad, 0.32 * fr.m + 0.12 * fr.d + pad, tilt) <= 0
    )


_REGIONS: dict[str, Callable[[_Frame], Tensor]] = {
    "Makeup_Co": _region_oval,
    "Makeup_Im": _region_oval,
    "Makeup_Ob": _region_oval,
    "Partial_Eye": _region_eyes,
    "Partial_Funnyeye": _region_funny_eyes,
    "Partial_Mouth": _region_mouth,
    "Partial_Paperglass": _region_glasses,
}


def attack_region(attack_type: str, landmarks: Tensor, height: int, width: int) -> Tensor:
    """Pixels a presentation-attack type may change.

    Local types (the four ``Partial_*`` covers and the three ``Makeup_*`` types) return a
    landmark-placed region; global types (masks, print, replay) return all ``True``. The
    simulators keep every pixel outside this region bit-exactly unchanged.

    Args:
        attack_type: one of :data:`PA_TYPES`.
        landmarks: 5-point landmarks, pixel ``(x, y)``.
        height: image height in pixels.
        width: image width in pixels.

    Shape:
        - landmarks: :math:`(5, 2)`
        - output: :math:`(H, W)`, bool, on ``landmarks``' device

    Returns:
        The boolean region mask.
    """
    _check_type(attack_type)
    region = _REGIONS.get(attack_type)
    if region is None:
        return torch.ones(height, width, dtype=torch.bool, device=landmarks.device)
    return region(_frame(landmarks, height, width))


def _region(attack_type: str, face: Tensor, landmarks: Tensor) -> Tensor:
    return attack_region(attack_type, landmarks.to(face.device), face.shape[-2], face.shape[-1])


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


# ----------------------------------------------------------------------------- masks


def _bilateral(img: Tensor, fr: _Frame, sigma_color: float, sigma_space: float) -> Tensor:
    """Edge-preserving smoothing (skin pores / texture removal), sizes in pixels."""
    h, w = img.shape[-2:]
    k = min(_ksize(sigma_space * 2.0 / 3.0, h), _ksize(sigma_space * 2.0 / 3.0, w))
    k = max(k, 3)
    return bilateral_blur(img[None], (k, k), sigma_color, (sigma_space, sigma_space))[0]


def _aligned_donor(
    donor: Tensor, donor_landmarks: Tensor, landmarks: Tensor, like: Tensor
) -> Tensor:
    """The donor face warped onto the target's landmarks by a similarity transform."""
    matrix = _similarity(donor_landmarks, landmarks).to(like)
    h, w = like.shape[-2:]
    src = donor.to(like)[None]
    return warp_affine(src, matrix[None], (h, w), padding_mode="border", align_corners=True)[0]


def _shading(face: Tensor, fr: _Frame, sigma: float, weight: Tensor) -> Tensor:
    """Low-frequency luminance relative to its mean under ``weight`` (face geometry cue)."""
    ls = _blur(_luma(face), sigma)
    mean = (ls[0] * weight).sum() / weight.sum().clamp_min(1e-6)
    return (ls / mean.clamp_min(1e-3)).clamp(0.4, 1.6)


def _eye_holes(fr: _Frame, grow: float) -> Tensor:
    """Signed distance to the two eye holes of a mask (negative inside a hole)."""
    return torch.minimum(_eye_sdf(fr, _LE, grow), _eye_sdf(fr, _RE, grow))


def mask_half(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Half mask: a moulded mask over the lower face, below the nose.

    Skin-coloured material with the face's coarse shading but no skin texture, sculpted lips,
    a rim catching the light along its arched upper edge and a shadow cast on the face above.

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
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    top = fr.pts[_NOSE][1] + _uniform(rng, -0.12, 0.12) * fr.m
    arch = _uniform(rng, 0.05, 0.2) * fr.m
    edge_v = top - arch * (1.0 - (fr.u / (1.1 * fr.d)) ** 2).clamp_min(0.0)
    sdf = torch.maximum(edge_v - fr.v, _face_oval_sdf(fr, 1.05))
    cover = _soft(sdf, 0.5).to(face.dtype)
    skin = _mean_colour(face, _skin_weight(fr).to(face.dtype))
    colour = skin * _rgb(_jitter_colour(rng, (0.92, 0.92, 0.92), 0.08), face) / 0.92
    shade = _shading(face, fr, _uniform(rng, 0.15, 0.25) * fr.d, cover) ** 0.7
    material = colour * shade
    lips = _soft(_mouth_sdf(fr, _uniform(rng, 0.8, 1.0)), 0.8 * sc).to(face.dtype)
    lip_colour = skin * _rgb((0.9, 0.7, 0.72), face) * _uniform(rng, 0.75, 0.95)
    material = _blend(material, lip_colour * shade, _uniform(rng, 0.4, 0.8) * lips)
    material = material * (1.0 + 0.015 * _blur(_noise(rng, (1, h, w), face), 0.7 * sc))
    rim = _band(sdf, -1.3 * sc, 0.0).to(face.dtype)
    material = _highlight(material, _uniform(rng, 0.15, 0.35) * rim)
    inside_face = _soft(_face_oval_sdf(fr, 1.05), 1.0).to(face.dtype)
    shadow = _soft(sdf - 1.6 * sc, 1.0 * sc).to(face.dtype) * (1.0 - cover) * inside_face
    out = face * (1.0 - _uniform(rng, 0.2, 0.45) * shadow)[None]
    return _finish(_blend(out, material, cover), face)


def mask_silicone(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Silicone mask: a full-face, skin-like silicone replica worn over the face.

    Pore texture smoothed away (bilateral), waxy translucent colour (lifted shadows, slight
    desaturation and pink/yellow shift), specular highlights, the wearer's real eyes through
    the eye holes, a faint seam at the face boundary, and the donor's low-frequency colour and
    shading (the identity the mask depicts) when a donor is given.

    Args:
        face: RGB face in ``[0, 1]``.
        landmarks: 5-point landmarks, pixel ``(x, y)``.
        rng: source of every random choice.
        donor: optional face of the identity the mask depicts.
        donor_landmarks: the donor's landmarks (required with ``donor``).

    Shape:
        - face, donor, output: :math:`(3, H, W)`; landmarks: :math:`(5, 2)`

    Returns:
        The simulated attack image, same shape and dtype as ``face``.
    """
    h, w = face.shape[-2:]
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    strength = _uniform(rng, 0.5, 1.0)
    base = _bilateral(face, fr, _uniform(rng, 0.08, 0.16), _uniform(rng, 1.0, 2.0) * sc)
    if donor is not None and donor_landmarks is not None:
        aligned = _aligned_donor(donor, donor_landmarks, landmarks, face)
        sigma = 0.15 * fr.d
        relief = _luma(_blur(aligned, sigma)) / _luma(_blur(base, sigma)).clamp_min(0.02)
        base = base * relief.clamp(0.6, 1.6) ** _uniform(rng, 0.3, 0.7)
    low = _blur(base, 0.1 * fr.d)
    base = low + (1.0 - strength * _uniform(rng, 0.3, 0.6)) * (base - low)
    base = _saturate(base, _uniform(rng, 0.78, 0.95)).clamp(0.0, 1.0) ** _uniform(rng, 0.82, 0.95)
    wax = (
        1.0 + _uniform(rng, 0.0, 0.05),
        1.0 + _uniform(rng, -0.02, 0.02),
        1.0 - _uniform(rng, 0.0, 0.06),
    )
    base = base * _rgb(wax, face)
    spots = (
        (0.0, -0.45 * fr.m, 0.2 * fr.d, 0.1 * fr.d),
        (fr.pts[_NOSE][0], fr.pts[_NOSE][1] - 0.05 * fr.m, 0.08 * fr.d, 0.1 * fr.d),
        (-0.6 * fr.d, 0.45 * fr.m, 0.12 * fr.d, 0.1 * fr.d),
        (0.6 * fr.d, 0.45 * fr.m, 0.12 * fr.d, 0.1 * fr.d),
    )
    light = sum(_uniform(rng, 0.1, 0.35) * _gauss(fr, *spot) for spot in spots)
    base = _highlight(base, light.to(face.dtype))
    holes = _eye_holes(fr, _uniform(rng, 0.9, 1.15))
    ring = _band(holes, 0.0, 1.2 * sc).to(face.dtype)
    base = base * (1.0 - 0.35 * ring)[None]
    oval = _face_oval_sdf(fr, _uniform(rng, 0.97, 1.05))
    cover = (_soft(oval, 1.2 * sc) * _soft(-holes, 0.5)).to(face.dtype)
    out = _blend(face, base, cover)
    seam = _band(oval, -0.8 * sc, 0.8 * sc).to(face.dtype)
    out = out * (1.0 - _uniform(rng, 0.06, 0.15) * seam)[None]
    return _finish(out, face)


def mask_transparent(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Transparent mask: a clear moulded plastic face with a faintly printed face on it.

    The real face is seen through the plastic (slightly refracted, hazed) with the mould's
    face (the donor, or a re-scaled copy of the wearer) blended at low alpha, glossy
    specular streaks, open eye holes and a faint bright edge of the plastic.

    Args:
        face: RGB face in ``[0, 1]``.
        landmarks: 5-point landmarks, pixel ``(x, y)``.
        rng: source of every random choice.
        donor: optional face of the identity the mask depicts.
        donor_landmarks: the donor's landmarks (required with ``donor``).

    Shape:
        - face, donor, output: :math:`(3, H, W)`; landmarks: :math:`(5, 2)`

    Returns:
        The simulated attack image, same shape and dtype as ``face``.
    """
    h, w = face.shape[-2:]
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    if donor is not None and donor_landmarks is not None:
        layer = _aligned_donor(donor, donor_landmarks, landmarks, face)
    else:
        centre = fr.to_xy(0.0, 0.45 * fr.m)
        shift = (_uniform(rng, -0.06, 0.06) * fr.d, _uniform(rng, -0.06, 0.06) * fr.d)
        layer = _warp(face, _affine_about(centre, 0.0, _uniform(rng, 1.03, 1.1), shift))
    layer = _saturate(_blur(layer, _uniform(rng, 0.6, 1.2) * sc), _uniform(rng, 0.5, 0.85))
    milky = _rgb(_jitter_colour(rng, (0.86, 0.86, 0.88), 0.04), face)
    layer = _blend(layer, milky.expand_as(layer), _uniform(rng, 0.15, 0.35))
    seen = _blur(face, _uniform(rng, 0.4, 0.9) * sc)
    mixed = _blend(seen, layer, _uniform(rng, 0.25, 0.5))
    gloss = (
        _gauss(fr, 0.0, -0.5 * fr.m, 0.35 * fr.d, 0.05 * fr.d, _uniform(rng, -20, 20)),
        _gauss(fr, fr.pts[_NOSE][0], 0.3 * fr.m, 0.045 * fr.d, 0.25 * fr.m),
        _gauss(fr, -0.6 * fr.d, 0.5 * fr.m, 0.05 * fr.d, 0.22 * fr.d, _uniform(rng, 10, 40)),
        _gauss(fr, 0.6 * fr.d, 0.5 * fr.m, 0.05 * fr.d, 0.22 * fr.d, -_uniform(rng, 10, 40)),
    )
    light = sum(_uniform(rng, 0.25, 0.55) * g for g in gloss)
    holes = _eye_holes(fr, _uniform(rng, 1.0, 1.25))
    oval = _face_oval_sdf(fr, _uniform(rng, 0.98, 1.06))
    cover = (_soft(oval, 0.8 * sc) * _soft(-holes, 0.5)).to(face.dtype)
    mixed = _highlight(mixed, light.to(face.dtype) * cover)
    out = _blend(face, mixed, cover)
    edge = (_band(oval, -1.0 * sc, 0.2) + _band(holes, -0.2, 0.8 * sc)).clamp(0, 1)
    out = _highlight(out, _uniform(rng, 0.15, 0.35) * edge.to(face.dtype))
    return _finish(out, face)


def mask_paper(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Paper mask: a face photo printed on flat card, cut out and worn with eye holes.

    The print has flattened shading (luminance divided by its heavy blur: no 3D relief),
    print artefacts and a single planar lighting gradient; its scissor-cut outline shows a
    white paper edge and a shadow, and the real eyes show through the cut eye holes.

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
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    strength = _uniform(rng, 0.6, 1.0)
    centre = fr.to_xy(0.0, 0.45 * fr.m)
    shift = (_uniform(rng, -0.05, 0.05) * fr.d, _uniform(rng, -0.05, 0.05) * fr.d)
    photo = _warp(
        face, _affine_about(centre, _uniform(rng, -3, 3), _uniform(rng, 0.97, 1.05), shift)
    )
    weight = _skin_weight(fr).to(face.dtype)
    flat = photo / _shading(photo, fr, 0.35 * fr.d, weight) ** _uniform(rng, 0.6, 1.0)
    printed = _print_process(flat.clamp(0, 1), rng, strength)
    printed = printed * _lighting_gradient(rng, face, _uniform(rng, 0.04, 0.12))
    wobble = _blur(_noise(rng, (1, h, w), face), 2.0 * sc)[0].to(torch.float64)
    wobble = wobble / wobble.std().clamp_min(1e-6) * _uniform(rng, 0.3, 0.8) * sc
    outline = _face_oval_sdf(fr, _uniform(rng, 0.95, 1.05)) + wobble.to(fr.u.device)
    holes = _eye_holes(fr, _uniform(rng, 0.9, 1.2))
    sdf = torch.maximum(outline, -holes)
    cover = _soft(sdf, 0.4).to(face.dtype)
    margin = _band(sdf, -_uniform(rng, 0.4, 1.0) * sc - 0.3, 0.0).to(face.dtype)
    paper = _rgb(_jitter_colour(rng, (0.94, 0.93, 0.9), 0.04), face)
    printed = _blend(printed, paper.expand_as(printed), margin)
    shadow = _soft(sdf - 1.5 * sc, 1.0 * sc).to(face.dtype) * (1.0 - cover)
    out = face * (1.0 - _uniform(rng, 0.25, 0.5) * shadow)[None]
    return _finish(_blend(out, printed, cover), face)


_MANNEQUIN_SKIN = ((0.93, 0.8, 0.7), (0.87, 0.7, 0.58), (0.75, 0.58, 0.45), (0.96, 0.87, 0.8))
_IRIS = ((0.25, 0.4, 0.65), (0.35, 0.22, 0.12), (0.3, 0.45, 0.3), (0.45, 0.4, 0.35))


def mask_mannequin(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Mannequin head: a moulded plastic head with uniform skin paint and painted features.

    One flat plastic colour over smooth, strongly blurred shading (the donor's when given),
    painted eyes (flat almond, iris disc, pupil; no real eye detail), painted brows and lips,
    and broad glossy highlights.

    Args:
        face: RGB face in ``[0, 1]``.
        landmarks: 5-point landmarks, pixel ``(x, y)``.
        rng: source of every random choice.
        donor: optional face whose geometry (shading) the head was moulded on.
        donor_landmarks: the donor's landmarks (required with ``donor``).

    Shape:
        - face, donor, output: :math:`(3, H, W)`; landmarks: :math:`(5, 2)`

    Returns:
        The simulated attack image, same shape and dtype as ``face``.
    """
    h, w = face.shape[-2:]
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    weight = _skin_weight(fr).to(face.dtype)
    skin = _mean_colour(face, weight)
    paint = _rgb(_MANNEQUIN_SKIN[_choice(rng, len(_MANNEQUIN_SKIN))], face)
    paint = paint * (_luma(skin) / _luma(paint)) ** _uniform(rng, 0.6, 0.9)
    colour = _blend(skin, paint, _uniform(rng, 0.5, 0.85))
    geometry = face
    if donor is not None and donor_landmarks is not None:
        aligned = _aligned_donor(donor, donor_landmarks, landmarks, face)
        geometry = _blend(face, aligned, _uniform(rng, 0.3, 0.7))
    shade = _shading(geometry, fr, _uniform(rng, 0.15, 0.25) * fr.d, weight) ** 0.8
    base = colour.expand(3, h, w)
    sclera = _rgb(_jitter_colour(rng, (0.9, 0.88, 0.84), 0.04), face)
    iris = _rgb(_IRIS[_choice(rng, len(_IRIS))], face)
    dark = _rgb((0.12, 0.08, 0.07), face)
    for index in (_LE, _RE):
        cu, cv = fr.pts[index]
        eye = _ellipse_sdf(fr, cu, cv, 0.27 * fr.d, 0.14 * fr.d)
        base = _blend(base, sclera.expand_as(base), _soft(eye, 0.4).to(face.dtype))
        disc = _ellipse_sdf(fr, cu, cv, 0.11 * fr.d, 0.11 * fr.d)
        base = _blend(
            base, iris.expand_as(base), (_soft(disc, 0.4) * _soft(eye, 0.3)).to(face.dtype)
        )
        pupil = _soft(_ellipse_sdf(fr, cu, cv, 0.05 * fr.d, 0.05 * fr.d), 0.4)
        base = _blend(base, dark.expand_as(base), pupil.to(face.dtype))
        lid = _band(eye, -0.3, 0.7 * sc) * (fr.v < cv)
        base = _blend(base, dark.expand_as(base), 0.8 * lid.to(face.dtype))
        brow = _ellipse_sdf(fr, cu * 1.05, cv - 0.2 * fr.d, 0.3 * fr.d, 0.12 * fr.d)
        brow_mask = _band(brow, -0.9 * sc, 0.0) * (fr.v < cv - 0.2 * fr.d)
        brown = _rgb((0.35, 0.25, 0.18), face)
        base = _blend(base, brown.expand_as(base), 0.7 * brow_mask.to(face.dtype))
    lips = _soft(_mouth_sdf(fr, 0.85), 0.5)
    lip_paint = _rgb(_jitter_colour(rng, (0.72, 0.38, 0.38), 0.08), face)
    base = _blend(base, lip_paint.expand_as(base), _uniform(rng, 0.6, 0.9) * lips.to(face.dtype))
    base = base * shade
    spots = (
        (0.0, -0.45 * fr.m, 0.3 * fr.d, 0.15 * fr.d),
        (fr.pts[_NOSE][0], fr.pts[_NOSE][1] - 0.15 * fr.m, 0.08 * fr.d, 0.2 * fr.m),
        (-0.55 * fr.d, 0.45 * fr.m, 0.15 * fr.d, 0.12 * fr.d),
        (0.55 * fr.d, 0.45 * fr.m, 0.15 * fr.d, 0.12 * fr.d),
    )
    light = sum(_uniform(rng, 0.2, 0.45) * _gauss(fr, *spot) for spot in spots)
    base = _highlight(base, light.to(face.dtype))
    cover = _soft(_face_oval_sdf(fr, _uniform(rng, 1.0, 1.08)), 1.0 * sc).to(face.dtype)
    return _finish(_blend(face, base, cover), face)


# ----------------------------------------------------------------------------- makeup

_LIPSTICK = (
    (0.75, 0.1, 0.15),
    (0.85, 0.4, 0.5),
    (0.5, 0.15, 0.3),
    (0.9, 0.45, 0.35),
    (0.7, 0.42, 0.4),
)
_EYESHADOW = (
    (0.45, 0.3, 0.25),
    (0.5, 0.3, 0.55),
    (0.3, 0.4, 0.65),
    (0.75, 0.6, 0.35),
    (0.35, 0.5, 0.35),
)
_FACE_PAINT = (
    (0.25, 0.4, 0.8),
    (0.8, 0.22, 0.2),
    (0.92, 0.82, 0.3),
    (0.25, 0.6, 0.35),
    (0.95, 0.95, 0.95),
    (0.1, 0.1, 0.12),
)


def _multiply(img: Tensor, colour: Tensor, alpha: Tensor) -> Tensor:
    """Multiply-blend a colour (pigment over skin) with coverage ``alpha`` ``[H, W]``."""
    return _blend(img, img * colour, alpha)


def _warm_relief(ratio: Tensor, amount: Tensor | float) -> Tensor:
    """Per-channel gain ``[3, H, W]`` painting a luminance ratio ``[1, H, W]`` with makeup.

    Contour products are warm: where the ratio darkens, blue darkens most and red least;
    highlighter is neutral.
    """
    warm = _rgb((0.75, 1.0, 1.25), ratio)
    return ratio ** (amount * torch.where(ratio < 1.0, warm, torch.ones_like(warm)))


def makeup_cosmetic(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Cosmetic makeup: everyday makeup that keeps the identity.

    Foundation (edge-preserving smoothing and evened skin tone), blush on the cheeks,
    eyeshadow on the lids, eyeliner with a wing, and lipstick, all placed from the landmarks.
    Pixels outside :func:`attack_region` are unchanged.

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
    region = _region("Makeup_Co", face, landmarks)
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    dt = face.dtype
    strength = _uniform(rng, 0.5, 1.0)
    skin = _skin_weight(fr).to(dt)
    smooth = _bilateral(face, fr, _uniform(rng, 0.06, 0.12), _uniform(rng, 1.0, 1.8) * sc)
    out = _blend(face, smooth, skin * strength * _uniform(rng, 0.4, 0.8))
    even = _mean_colour(face, skin)
    out = _blend(out, _tint(out, even), skin * strength * _uniform(rng, 0.2, 0.5))
    blush = _rgb(_jitter_colour(rng, (0.95, 0.62, 0.66), 0.05), face)
    for side in (-1.0, 1.0):
        cheek = _gauss(fr, side * 0.58 * fr.d, 0.55 * fr.m, 0.22 * fr.d, 0.15 * fr.d, side * 15)
        out = _multiply(out, blush, strength * _uniform(rng, 0.5, 0.9) * cheek.to(dt))
    shadow = _rgb(_EYESHADOW[_choice(rng, len(_EYESHADOW))], face)
    liner = _rgb(_jitter_colour(rng, (0.08, 0.06, 0.06), 0.04), face)
    shadow_alpha = strength * _uniform(rng, 0.5, 0.9)
    for index, side in ((_LE, -1.0), (_RE, 1.0)):
        cu, cv = fr.pts[index]
        lid = _ellipse_sdf(fr, cu + side * 0.03 * fr.d, cv - 0.1 * fr.d, 0.34 * fr.d, 0.17 * fr.d)
        above = _soft(fr.v - (cv - 0.02 * fr.d), 0.6)
        out = _multiply(out, shadow / 0.7, shadow_alpha * (_soft(lid, 1.2 * sc) * above).to(dt))
        eye = _ellipse_sdf(fr, cu, cv, 0.28 * fr.d, 0.13 * fr.d)
        line = _band(eye, -0.2, 0.7 * sc + 0.2) * _soft(fr.v - cv, 0.5)
        wing = _box_sdf(
            fr, cu + side * 0.3 * fr.d, cv - 0.06 * fr.d, 0.08 * fr.d, 0.25 * sc + 0.2, -side * 20
        )
        line = torch.maximum(line, _soft(wing, 0.4))
        out = _blend(out, liner.expand_as(out), _uniform(rng, 0.6, 0.9) * line.to(dt))
    lips = _soft(_mouth_sdf(fr, _uniform(rng, 0.9, 1.05)), 0.8 * sc).to(dt)
    lipstick = _rgb(_jitter_colour(rng, _LIPSTICK[_choice(rng, len(_LIPSTICK))], 0.05), face)
    out = _blend(
        out, _tint(out, lipstick) * _uniform(rng, 0.8, 1.0), _uniform(rng, 0.55, 0.85) * lips
    )
    return _finish(out, face, region)


def makeup_impersonation(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Impersonation makeup: makeup that makes the face look like the donor.

    The donor is aligned by a similarity transform on the landmarks; its low-frequency
    colour and shading are painted into the skin, its brows and lips copied, and contouring
    (darkened cheek hollows and nose sides, lit nose bridge) re-shapes the face.

    Args:
        face: RGB face in ``[0, 1]``.
        landmarks: 5-point landmarks, pixel ``(x, y)``.
        rng: source of every random choice.
        donor: face of the identity to impersonate (required).
        donor_landmarks: the donor's landmarks (required).

    Shape:
        - face, donor, output: :math:`(3, H, W)`; landmarks: :math:`(5, 2)`

    Returns:
        The simulated attack image, same shape and dtype as ``face``.

    Raises:
        ValueError: if ``donor`` or ``donor_landmarks`` is missing.
    """
    if donor is None or donor_landmarks is None:
        raise ValueError(
            "Makeup_Im needs a donor face and donor_landmarks (the impersonated identity)"
        )
    h, w = face.shape[-2:]
    region = _region("Makeup_Im", face, landmarks)
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    dt = face.dtype
    strength = _uniform(rng, 0.5, 1.0)
    skin = _skin_weight(fr).to(dt)
    # Exposure-match the donor photo: makeup transfers relief and colour, not exposure.
    aligned = _aligned_donor(donor, donor_landmarks, landmarks, face)
    gain = (_luma(face)[0] * skin).sum() / (_luma(aligned)[0] * skin).sum().clamp_min(1e-4)
    aligned = (aligned * gain).clamp(0.0, 1.0)
    sigma = _uniform(rng, 0.08, 0.15) * fr.d
    low_d, low_f = _blur(aligned, sigma), _blur(face, sigma)
    shading = _luma(low_d) / _luma(low_f).clamp_min(0.02)
    amount = strength * _uniform(rng, 0.4, 0.75) * skin[None]
    out = face * _warm_relief(shading.clamp(0.7, 1.4), amount)
    # Skin colour moves towards the donor's only as far as the donor has colour (a grey photo
    # gives no foundation shade to match).
    chroma_d, chroma_f = low_d - _luma(low_d), low_f - _luma(low_f)
    colourful = (chroma_d.abs().mean() / chroma_f.abs().mean().clamp_min(1e-4)).clamp(0, 1)
    amount = strength * _uniform(rng, 0.2, 0.5) * colourful
    out = out + amount * skin[None] * (chroma_d - chroma_f)
    brows = torch.minimum(
        _ellipse_sdf(fr, fr.pts[_LE][0], fr.pts[_LE][1] - 0.3 * fr.d, 0.34 * fr.d, 0.12 * fr.d),
        _ellipse_sdf(fr, fr.pts[_RE][0], fr.pts[_RE][1] - 0.3 * fr.d, 0.34 * fr.d, 0.12 * fr.d),
    )
    features = torch.maximum(_soft(brows, 1.0 * sc), _soft(_mouth_sdf(fr, 1.15), 1.0 * sc))
    drawn = out * _warm_relief((_luma(aligned) / _luma(out).clamp_min(0.02)).clamp(0.5, 1.5), 1.0)
    out = _blend(out, drawn, strength * _uniform(rng, 0.5, 0.85) * features.to(dt))
    contour_colour = _rgb((0.72, 0.6, 0.55), face)
    hollows = sum(
        _gauss(fr, s * 0.75 * fr.d, 0.62 * fr.m, 0.1 * fr.d, 0.3 * fr.d, s * 30) for s in (-1, 1)
    )
    nose_sides = sum(
        _gauss(fr, s * 0.16 * fr.d, 0.3 * fr.m, 0.05 * fr.d, 0.22 * fr.m) for s in (-1, 1)
    )
    dark = (hollows + 0.8 * nose_sides).clamp(0, 1) * _soft(_face_oval_sdf(fr), 1.0)
    out = _multiply(out, contour_colour, strength * _uniform(rng, 0.5, 0.9) * dark.to(dt))
    bridge = _gauss(fr, fr.pts[_NOSE][0] * 0.5, 0.25 * fr.m, 0.05 * fr.d, 0.28 * fr.m)
    out = _highlight(out, strength * _uniform(rng, 0.1, 0.25) * bridge.to(dt))
    return _finish(out, face, region)


def makeup_obfuscation(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Obfuscation makeup: heavy makeup that hides the identity.

    Strong dark contour stripes and light highlight stripes, thick drawn-on eyebrows at a
    new height and angle, stubble/beard shading on the jaw, and large opaque face-paint
    patches, each element drawn with seeded presence, shape and colour.

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
    region = _region("Makeup_Ob", face, landmarks)
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    dt = face.dtype
    strength = _uniform(rng, 0.7, 1.0)
    oval = _soft(_face_oval_sdf(fr), 1.0)
    out = face
    # Contour stripes (dark under the cheekbones) and highlight stripes (nose, under the eyes).
    brown = _rgb(_jitter_colour(rng, (0.32, 0.22, 0.17), 0.05), face)
    cream = _rgb(_jitter_colour(rng, (0.95, 0.88, 0.78), 0.04), face)
    width = _uniform(rng, 0.06, 0.11) * fr.d
    for side in (-1.0, 1.0):
        stripe = _box_sdf(
            fr, side * 0.68 * fr.d, 0.58 * fr.m, 0.42 * fr.d, width, side * _uniform(rng, 20, 40)
        )
        alpha = strength * _uniform(rng, 0.6, 0.9) * (_soft(stripe, 0.9 * sc) * oval)
        out = _blend(out, _tint(out, brown) * _uniform(rng, 0.5, 0.75), alpha.to(dt))
        under = _box_sdf(fr, side * 0.5 * fr.d, 0.3 * fr.m, 0.25 * fr.d, 0.6 * width, side * 10)
        out = _blend(out, cream.expand_as(out), strength * 0.5 * _soft(under, 0.8 * sc).to(dt))
    nose = _box_sdf(fr, fr.pts[_NOSE][0] * 0.5, 0.22 * fr.m, 0.7 * width, 0.3 * fr.m)
    out = _blend(
        out, cream.expand_as(out), strength * _uniform(rng, 0.3, 0.6) * _soft(nose, 0.8 * sc).to(dt)
    )
    # Drawn eyebrows: thick dark arcs, raised and re-angled; or else a beard (at least one).
    brows = _chance(rng, 0.75)
    if brows:
        ink = _rgb(_jitter_colour(rng, (0.1, 0.07, 0.06), 0.04), face)
        lift = _uniform(rng, 0.25, 0.42) * fr.d
        tilt = _uniform(rng, 5, 20)
        thick = _uniform(rng, 1.2, 2.2) * sc
        for index, side in ((_LE, -1.0), (_RE, 1.0)):
            cu, cv = fr.pts[index]
            arc = _ellipse_sdf(
                fr, cu, cv - lift + 0.12 * fr.d, 0.36 * fr.d, 0.2 * fr.d, side * tilt
            )
            top = _soft((fr.v - (cv - lift + 0.1 * fr.d)), 0.5)
            brow = _band(arc, -thick, 0.0) * top
            out = _blend(out, ink.expand_as(out), _uniform(rng, 0.75, 0.95) * brow.to(dt))
    # Beard / stubble shading on the jaw below the mouth corners.
    if not brows or _chance(rng, 0.4):
        _, mv, _, _ = _mouth_geometry(fr)
        jaw = torch.maximum(_face_oval_sdf(fr, 0.97), (mv - 0.15 * fr.m) - fr.v)
        jaw = torch.maximum(jaw, -_mouth_sdf(fr, 1.3))
        stubble = torch.sigmoid(2.0 * _noise(rng, (1, h, w), face))
        alpha = _uniform(rng, 0.35, 0.65) * _soft(jaw, 1.5 * sc).to(dt) * (0.4 + 0.6 * stubble)
        out = _blend(out, _rgb((0.12, 0.1, 0.09), face).expand_as(out), alpha)
    # Large face-paint patches with wobbly edges.
    count = 1 + _choice(rng, 2)
    for _ in range(count):
        colour = _rgb(_FACE_PAINT[_choice(rng, len(_FACE_PAINT))], face)
        cu = _uniform(rng, -0.6, 0.6) * fr.d
        cv = _uniform(rng, -0.3, 1.0) * fr.m
        r = _uniform(rng, 0.3, 0.5) * fr.d
        patch = _ellipse_sdf(fr, cu, cv, r, r * _uniform(rng, 0.6, 1.4), _uniform(rng, 0, 180))
        wobble = _blur(_noise(rng, (1, h, w), face), 1.5 * sc)[0].to(torch.float64)
        patch = patch + wobble.to(patch.device) / wobble.std().clamp_min(1e-6) * 0.8 * sc
        paint = colour * (0.75 + 0.25 * _luma(out) / _luma(out).mean().clamp_min(1e-3))
        alpha = _uniform(rng, 0.5, 0.8) * (_soft(patch, 0.8 * sc) * oval)
        out = _blend(out, paint, alpha.to(dt))
    return _finish(out, face, region)


# ----------------------------------------------------------------------------- partial covers


def partial_eye(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Partial eye attack: a printed photo of the eye band pasted over both eyes.

    The band is cut from a printed, slightly rescaled, rotated and shifted copy of the face,
    with a white cut margin and a thin drop shadow. Pixels outside :func:`attack_region` are
    unchanged.

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
    region = _region("Partial_Eye", face, landmarks)
    fr = _frame(landmarks, h, w)
    half = (_uniform(rng, 0.85, 1.0) * fr.d, _uniform(rng, 0.26, 0.34) * fr.m)
    centre = (_uniform(rng, -0.04, 0.04) * fr.d, _uniform(rng, -0.04, 0.04) * fr.d)
    out, _ = _pasted_print(face, fr, rng, centre, half, _uniform(rng, -3.0, 3.0), 0.08)
    return _finish(out, face, region)


def partial_mouth(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Partial mouth attack: a printed photo of the mouth pasted over the mouth.

    A printed, slightly shifted/rescaled copy of the mouth region cut to a rectangle with a
    white margin and drop shadow. Pixels outside :func:`attack_region` are unchanged.

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
    region = _region("Partial_Mouth", face, landmarks)
    fr = _frame(landmarks, h, w)
    cu, cv, half_width, tilt = _mouth_geometry(fr)
    half = (half_width + _uniform(rng, 0.25, 0.4) * fr.d, _uniform(rng, 0.22, 0.3) * fr.m)
    centre = (cu + _uniform(rng, -0.05, 0.05) * fr.d, cv + _uniform(rng, -0.05, 0.05) * fr.m)
    out, _ = _pasted_print(face, fr, rng, centre, half, tilt + _uniform(rng, -4.0, 4.0), 0.1)
    return _finish(out, face, region)


def partial_funny_eye(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Funny-eye glasses: novelty glasses with large cartoon eyes over the real ones.

    Each eye is a shaded white ellipse with a black outline, a dark (googly) pupil at a
    random position and a glint; some seeds add a plastic bridge. Pixels outside
    :func:`attack_region` are unchanged.

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
    region = _region("Partial_Funnyeye", face, landmarks)
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    dt = face.dtype
    out = face
    white = _rgb(_jitter_colour(rng, (0.96, 0.96, 0.94), 0.03), face)
    black = _rgb((0.04, 0.04, 0.05), face)
    outline = _uniform(rng, 0.6, 1.2) * sc + 0.3
    au = _uniform(rng, 0.3, 0.42) * fr.d
    av = min(au * _uniform(rng, 0.85, 1.15), 0.46 * fr.d)
    if _chance(rng, 0.6):
        bridge = _box_sdf(fr, 0.0, -0.1 * av, 0.5 * fr.d - 0.8 * au, 0.5 * outline + 0.3)
        out = _blend(out, black.expand_as(out), _soft(bridge, 0.4).to(dt))
    for index in (_LE, _RE):
        cu, cv = fr.pts[index]
        sdf = _ellipse_sdf(fr, cu, cv, au, av)
        dome = 1.0 - 0.18 * ((fr.v - cv + 0.3 * av) / av).clamp(0, 1.5)
        out = _blend(out, white * dome.to(dt)[None], _soft(sdf, 0.45).to(dt))
        out = _blend(out, black.expand_as(out), _band(sdf, -outline, 0.0).to(dt))
        r = au * _uniform(rng, 0.35, 0.55)
        angle = _uniform(rng, 0.0, 2.0 * math.pi)
        reach = _uniform(rng, 0.0, 0.85)
        pu = cu + math.cos(angle) * reach * (au - r - outline)
        pv = cv + math.sin(angle) * reach * (av - r - outline)
        pupil = _ellipse_sdf(fr, pu, pv, r, r)
        out = _blend(out, black.expand_as(out), _soft(pupil, 0.45).to(dt))
        glint = _ellipse_sdf(fr, pu - 0.35 * r, pv - 0.35 * r, 0.25 * r, 0.25 * r)
        out = _blend(out, white.expand_as(out), 0.9 * _soft(glint, 0.4).to(dt))
    return _finish(out, face, region)


_FRAME_INK = ((0.07, 0.06, 0.06), (0.38, 0.22, 0.12), (0.7, 0.1, 0.12), (0.1, 0.2, 0.55))


def partial_paper_glasses(
    face: Tensor,
    landmarks: Tensor,
    rng: torch.Generator,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Paper glasses: an eyeglass frame cut from card with printed eyes in the lenses.

    Round or rectangular lenses with a thick printed rim, bridge and temple arms, a printed
    (slightly misaligned) photo of the eyes inside the lenses, a white cut margin and a
    drop shadow. Pixels outside :func:`attack_region` are unchanged.

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
    region = _region("Partial_Paperglass", face, landmarks)
    fr = _frame(landmarks, h, w)
    sc = _scale(fr)
    dt = face.dtype
    lu = _uniform(rng, 0.26, 0.34) * fr.d
    lv = _uniform(rng, 0.18, 0.26) * fr.d
    rim = _uniform(rng, 0.08, 0.15) * fr.d
    round_lens = _chance(rng, 0.5)
    dv = _uniform(rng, -0.04, 0.04) * fr.d
    lenses = []
    for index in (_LE, _RE):
        cu, cv = fr.pts[index]
        if round_lens:
            lenses.append(_ellipse_sdf(fr, cu, cv + dv, lu, lv))
        else:
            lenses.append(_box_sdf(fr, cu, cv + dv, lu, lv, 0.0, 0.35 * lv))
    lens = torch.minimum(*lenses)
    frame_sdf = lens - rim
    inner = 0.5 * fr.d - lu
    bridge = _box_sdf(fr, 0.0, dv - 0.3 * lv, inner + rim, 0.5 * rim)
    arm_len = 0.5 * (1.2 * fr.d - (0.5 * fr.d + lu))
    arms = torch.minimum(
        _box_sdf(fr, -(1.2 * fr.d - arm_len), dv - 0.3 * lv, arm_len, 0.5 * rim),
        _box_sdf(fr, 1.2 * fr.d - arm_len, dv - 0.3 * lv, arm_len, 0.5 * rim),
    )
    shape = torch.minimum(torch.minimum(frame_sdf, bridge), arms)
    margin = _uniform(rng, 0.4, 1.0) * sc + 0.2
    cut = shape - margin
    eye_centre = fr.to_xy(0.0, 0.0)
    shift = (_uniform(rng, -0.07, 0.07) * fr.d, _uniform(rng, -0.07, 0.07) * fr.d)
    photo = _warp(
        face, _affine_about(eye_centre, _uniform(rng, -3, 3), _uniform(rng, 0.95, 1.1), shift)
    )
    ink = _rgb(_jitter_colour(rng, _FRAME_INK[_choice(rng, len(_FRAME_INK))], 0.04), face)
    paper = _rgb(_jitter_colour(rng, (0.94, 0.93, 0.9), 0.03), face)
    design = _blend(paper.expand_as(face), photo, _soft(lens, 0.4).to(dt))
    rim_cover = _soft(shape, 0.4) * (1.0 - _soft(lens, 0.4))
    design = _blend(design, ink.expand_as(face), rim_cover.to(dt))
    printed = _print_process(design, rng, _uniform(rng, 0.7, 1.0))
    cover = _soft(cut, 0.45).to(dt)
    shadow = _soft(cut - 1.2 * sc, 0.9 * sc).to(dt) * (1.0 - cover)
    out = face * (1.0 - _uniform(rng, 0.2, 0.4) * shadow)[None]
    return _finish(_blend(out, printed, cover), face, region)


# ----------------------------------------------------------------------------- registry

PA_SIMULATORS: dict[str, PaSimulator] = {
    "Makeup_Co": makeup_cosmetic,
    "Makeup_Im": makeup_impersonation,
    "Makeup_Ob": makeup_obfuscation,
    "Mask_Half": mask_half,
    "Mask_Mann": mask_mannequin,
    "Mask_Paper": mask_paper,
    "Mask_Silicone": mask_silicone,
    "Mask_Trans": mask_transparent,
    "Paper": paper_print,
    "Partial_Eye": partial_eye,
    "Partial_Funnyeye": partial_funny_eye,
    "Partial_Mouth": partial_mouth,
    "Partial_Paperglass": partial_paper_glasses,
    "Replay": screen_replay,
}

_NEEDS_DONOR: frozenset[str] = frozenset({"Makeup_Im"})


def _check_type(attack_type: str) -> None:
    if attack_type not in PA_SIMULATORS:
        raise ValueError(
            f"unknown presentation-attack type {attack_type!r}; available: {', '.join(PA_TYPES)}"
        )


def needs_donor(attack_type: str) -> bool:
    """Whether ``attack_type`` requires a donor face (another subject).

    Args:
        attack_type: one of :data:`PA_TYPES`.

    Returns:
        ``True`` for types that cannot be simulated without a donor (``Makeup_Im``); the
        mask types use a donor when one is given but do not require it.
    """
    _check_type(attack_type)
    return attack_type in _NEEDS_DONOR


def _check_image(name: str, img: object) -> Tensor:
    if not isinstance(img, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(img).__name__}")
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"{name} must have shape (3, H, W), got {tuple(img.shape)}")
    if not img.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got {img.dtype}")
    h, w = img.shape[-2:]
    if h < _MIN_SIZE or w < _MIN_SIZE:
        raise ValueError(f"{name} must be at least {_MIN_SIZE}x{_MIN_SIZE}, got {h}x{w}")
    if not bool(torch.isfinite(img).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(img.min()), float(img.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} values must lie in [0, 1], got min {lo:.4g} and max {hi:.4g}")
    return img


def _check_landmarks(name: str, landmarks: object, height: int, width: int) -> Tensor:
    if not isinstance(landmarks, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(landmarks).__name__}")
    if tuple(landmarks.shape) != (5, 2):
        raise ValueError(f"{name} must have shape (5, 2), got {tuple(landmarks.shape)}")
    lm = landmarks.to(torch.float64)
    if not bool(torch.isfinite(lm).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    inside = (lm[:, 0] >= 0) & (lm[:, 0] <= width - 1) & (lm[:, 1] >= 0) & (lm[:, 1] <= height - 1)
    if not bool(inside.all()):
        bad = int((~inside).nonzero()[0, 0])
        x, y = lm[bad].tolist()
        raise ValueError(
            f"{name} must lie inside the image (x in [0, {width - 1}], y in [0, {height - 1}]); "
            f"point {bad} is ({x:.4g}, {y:.4g})"
        )
    return landmarks


def simulate_pa(
    attack_type: str,
    face: Tensor,
    landmarks: Tensor,
    *,
    seed: int,
    donor: Tensor | None = None,
    donor_landmarks: Tensor | None = None,
) -> Tensor:
    """Simulate one presentation attack on one face, deterministically under ``seed``.

    Args:
        attack_type: one of :data:`PA_TYPES`.
        face: RGB face in ``[0, 1]`` (float32 or float64), at least 16x16.
        landmarks: 5-point landmarks, pixel ``(x, y)``: left eye, right eye, nose, left and
            right mouth corner ("left" = image left), inside the image.
        seed: seed of the ``torch.Generator`` that draws every random parameter.
        donor: another subject's face (any size >= 16x16); required when
            :func:`needs_donor` says so, optional for the mask types.
        donor_landmarks: the donor's 5-point landmarks (required with ``donor``).

    Shape:
        - face, output: :math:`(3, H, W)`; donor: :math:`(3, H_d, W_d)`
        - landmarks, donor_landmarks: :math:`(5, 2)`

    Returns:
        The attack image, same shape, dtype and device as ``face``, values in ``[0, 1]``.

    Raises:
        ValueError: for an unknown type (the message lists the available ones), a malformed
            or out-of-range face or donor, landmarks of the wrong shape, non-finite or outside
            the image, a donor without landmarks, or a missing donor where one is needed.

    Example:
        >>> face = torch.rand(3, 32, 32)
        >>> lm = torch.tensor([[11.0, 13], [21, 13], [16, 18], [12, 23], [20, 23]])
        >>> out = simulate_pa("Replay", face, lm, seed=3)
        >>> bool(((out >= 0) & (out <= 1)).all())
        True
    """
    _check_type(attack_type)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {type(seed).__name__}")
    face = _check_image("face", face)
    h, w = face.shape[-2:]
    landmarks = _check_landmarks("landmarks", landmarks, h, w).to(face.device)
    if (donor is None) != (donor_landmarks is None):
        raise ValueError("donor and donor_landmarks must be given together")
    if donor is not None and donor_landmarks is not None:
        donor = _check_image("donor", donor)
        dh, dw = donor.shape[-2:]
        donor_landmarks = _check_landmarks("donor_landmarks", donor_landmarks, dh, dw)
        donor = donor.to(device=face.device, dtype=face.dtype)
        donor_landmarks = donor_landmarks.to(face.device)
    elif needs_donor(attack_type):
        raise ValueError(
            f"{attack_type} needs a donor face: pass donor= and donor_landmarks= "
            "(another subject's face and its 5 landmarks)"
        )
    rng = torch.Generator(device="cpu").manual_seed(seed)
    return PA_SIMULATORS[attack_type](face, landmarks, rng, donor, donor_landmarks)
