"""Makeup attacks: cosmetic, impersonation and obfuscation makeup."""

from __future__ import annotations

import torch
from torch import Tensor

from facecat.datasets.presentation_attacks._geometry import (
    _LE,
    _NOSE,
    _RE,
    _band,
    _box_sdf,
    _ellipse_sdf,
    _face_frame,
    _face_oval_sdf,
    _gauss,
    _mouth_geometry,
    _mouth_sdf,
    _skin_weight,
    _soft,
)
from facecat.datasets.presentation_attacks._ops import (
    _aligned_donor,
    _bilateral,
    _blend,
    _blur,
    _chance,
    _choice,
    _finish,
    _highlight,
    _jitter_colour,
    _luma,
    _mean_colour,
    _noise,
    _rgb,
    _tint,
    _uniform,
)
from facecat.datasets.presentation_attacks.regions import _region

__all__ = ["makeup_cosmetic", "makeup_impersonation", "makeup_obfuscation"]

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
    region = _region("Makeup_Co", face, landmarks)
    fr, sc = _face_frame(face, landmarks)
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
    region = _region("Makeup_Im", face, landmarks)
    fr, sc = _face_frame(face, landmarks)
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
    region = _region("Makeup_Ob", face, landmarks)
    fr, sc = _face_frame(face, landmarks)
    h, w = face.shape[-2:]
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
