"""Partial attacks: printed eye band, printed mouth, funny-eye and paper glasses."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facecat.datasets.presentation_attacks._geometry import (
    _LE,
    _RE,
    _band,
    _box_sdf,
    _ellipse_sdf,
    _face_frame,
    _Frame,
    _mouth_geometry,
    _scale,
    _soft,
)
from facecat.datasets.presentation_attacks._ops import (
    _affine_about,
    _blend,
    _chance,
    _choice,
    _finish,
    _jitter_colour,
    _rgb,
    _uniform,
    _warp,
)
from facecat.datasets.presentation_attacks.print_replay import _print_process
from facecat.datasets.presentation_attacks.regions import _region

__all__ = ["partial_eye", "partial_funny_eye", "partial_mouth", "partial_paper_glasses"]


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
    region = _region("Partial_Eye", face, landmarks)
    fr, _ = _face_frame(face, landmarks)
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
    region = _region("Partial_Mouth", face, landmarks)
    fr, _ = _face_frame(face, landmarks)
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
    region = _region("Partial_Funnyeye", face, landmarks)
    fr, sc = _face_frame(face, landmarks)
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
    region = _region("Partial_Paperglass", face, landmarks)
    fr, sc = _face_frame(face, landmarks)
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
