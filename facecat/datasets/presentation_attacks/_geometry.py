"""The landmark-aligned face frame and the signed-distance shapes placed in it."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

_LE, _RE, _NOSE, _ML, _MR = range(5)


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


def _face_frame(face: Tensor, landmarks: Tensor) -> tuple[_Frame, float]:
    """The face frame of ``landmarks`` over the pixel grid of ``face``, and its pixel scale."""
    fr = _frame(landmarks, face.shape[-2], face.shape[-1])
    return fr, _scale(fr)
