"""Mask attacks: half, silicone, transparent, paper and mannequin masks."""

from __future__ import annotations

import torch
from torch import Tensor

from facecat.datasets.presentation_attacks._geometry import (
    _LE,
    _NOSE,
    _RE,
    _band,
    _ellipse_sdf,
    _eye_sdf,
    _face_frame,
    _face_oval_sdf,
    _Frame,
    _gauss,
    _mouth_sdf,
    _skin_weight,
    _soft,
)
from facecat.datasets.presentation_attacks._ops import (
    _affine_about,
    _aligned_donor,
    _bilateral,
    _blend,
    _blur,
    _choice,
    _finish,
    _highlight,
    _jitter_colour,
    _luma,
    _mean_colour,
    _noise,
    _rgb,
    _saturate,
    _uniform,
    _warp,
)
from facecat.datasets.presentation_attacks.print_replay import _lighting_gradient, _print_process

__all__ = ["mask_half", "mask_mannequin", "mask_paper", "mask_silicone", "mask_transparent"]


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
    fr, sc = _face_frame(face, landmarks)
    h, w = face.shape[-2:]
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
    fr, sc = _face_frame(face, landmarks)
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
    fr, sc = _face_frame(face, landmarks)
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
    fr, sc = _face_frame(face, landmarks)
    h, w = face.shape[-2:]
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
    fr, sc = _face_frame(face, landmarks)
    h, w = face.shape[-2:]
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
