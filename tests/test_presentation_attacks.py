"""Tests of the simulated presentation attacks (the 14 SiW-Mv2 types) on real face crops."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data as skdata

from facecat.datasets.presentation_attacks import (
    PA_SIMULATORS,
    PA_TYPES,
    attack_region,
    needs_donor,
    simulate_pa,
)

SIWM_V2_NAMES = (
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
LOCAL_TYPES = (
    "Makeup_Co",
    "Makeup_Im",
    "Makeup_Ob",
    "Partial_Eye",
    "Partial_Funnyeye",
    "Partial_Mouth",
    "Partial_Paperglass",
)
PARTIAL_TYPES = tuple(t for t in PA_TYPES if t.startswith("Partial_"))

# Landmarks placed by hand on the astronaut crop below and checked on an overlay.
ASTRONAUT_LANDMARKS = [[21.9, 25.4], [42.0, 26.0], [32.0, 37.3], [22.0, 44.4], [41.5, 44.4]]
# The suggested canonical template (eyes at y = 26) sits ~4 px below the eyes of the
# lfw_subset crops resized 25 -> 64; this template was fitted to the mean of the first 100
# faces and checked on an overlay of faces 3 and 7, which are frontal.
LFW_TEMPLATE = [[19.5, 22.5], [38.5, 22.5], [29.5, 34.0], [22.0, 44.5], [37.0, 44.5]]

# Smallest mean absolute change (inside the attack region) that counts as "changes the
# image": 0.01 is 2.55 grey levels, 2.5x the 8-bit quantisation step, so an attack above it
# survives storing the image as 8-bit PNG. Measured minima over 3 faces x 20 seeds range
# from 0.010 (Mask_Half, whose mask covers a quarter of the crop) to 0.038.
MIN_CHANGE = 0.01
# Two different attack types on the same face and seed must differ by at least this
# whole-image mean absolute difference (measured minimum 0.018: Partial_Eye vs
# Partial_Paperglass, both confined to the eye band).
MIN_PAIR_GAP = 0.008
# Global statistics stay plausible: no attack moves a channel's image mean by more than
# this (measured maximum 0.12: a replay with a dark bezel and a display gamma).
MAX_MEAN_SHIFT = 0.2


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Small tensors: one intra-op thread is faster and immune to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _astronaut() -> tuple[torch.Tensor, torch.Tensor]:
    crop = torch.from_numpy(skdata.astronaut()[48:182, 158:292].copy()).permute(2, 0, 1)
    img = F.interpolate(crop[None].double() / 255, size=(64, 64), mode="bilinear", antialias=True)[
        0
    ]
    return img.clamp(0, 1).float(), torch.tensor(ASTRONAUT_LANDMARKS)


def _lfw(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    gray = torch.from_numpy(np.ascontiguousarray(skdata.lfw_subset()[index])).double()
    img = F.interpolate(gray[None, None], size=(64, 64), mode="bicubic", align_corners=False)
    img = img[0].clamp(0, 1).expand(3, 64, 64).float().contiguous()
    return img, torch.tensor(LFW_TEMPLATE)


@pytest.fixture(scope="module")
def faces() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [_astronaut(), _lfw(3), _lfw(7)]


def _in_unit_interval(x: torch.Tensor) -> bool:
    return bool(((x >= 0) & (x <= 1)).all())


def _attack(
    attack_type: str,
    faces: list[tuple[torch.Tensor, torch.Tensor]],
    index: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    face, lm = faces[index]
    donor, donor_lm = faces[(index + 1) % len(faces)]
    face = face.to(dtype)
    out = simulate_pa(attack_type, face, lm, seed=seed, donor=donor, donor_landmarks=donor_lm)
    return face, lm, out


# ----------------------------------------------------------------------------- registry


def test_types_are_the_siwm_v2_names() -> None:
    assert PA_TYPES == SIWM_V2_NAMES
    assert set(PA_SIMULATORS) == set(PA_TYPES)
    assert all(callable(fn) for fn in PA_SIMULATORS.values())


def test_needs_donor() -> None:
    assert [t for t in PA_TYPES if needs_donor(t)] == ["Makeup_Im"]
    with pytest.raises(ValueError, match="available"):
        needs_donor("Mask_Foo")


# ----------------------------------------------------------------------------- per type


@pytest.mark.parametrize("attack_type", PA_TYPES)
def test_smoke_deterministic_and_seeded(attack_type: str, faces) -> None:
    for index in range(len(faces)):
        face, _, first = _attack(attack_type, faces, index, seed=11)
        _, _, again = _attack(attack_type, faces, index, seed=11)
        _, _, other = _attack(attack_type, faces, index, seed=12)
        assert torch.equal(first, again), "same seed must give a bit-exact result"
        assert (first - other).abs().mean() > 1e-3, "different seeds must give different images"
        assert first.shape == face.shape and first.dtype == face.dtype
        assert _in_unit_interval(first)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("attack_type", PA_TYPES)
def test_dtype_kept(attack_type: str, dtype: torch.dtype, faces) -> None:
    face, _, out = _attack(attack_type, faces, 0, seed=3, dtype=dtype)
    assert out.dtype == dtype and out.shape == face.shape
    assert bool(torch.isfinite(out).all())
    assert _in_unit_interval(out)


@pytest.mark.parametrize("attack_type", PA_TYPES)
def test_changes_image_inside_region(attack_type: str, faces) -> None:
    for index, seed in itertools.product(range(len(faces)), (0, 1, 2)):
        face, lm, out = _attack(attack_type, faces, index, seed)
        region = attack_region(attack_type, lm, 64, 64)
        change = (out - face).abs().mean(0)[region].mean()
        assert change > MIN_CHANGE, f"face {index} seed {seed}: mean change {change:.4f}"


@pytest.mark.parametrize("attack_type", PA_TYPES)
def test_global_statistics_plausible(attack_type: str, faces) -> None:
    for index, seed in itertools.product(range(len(faces)), (0, 1, 2)):
        face, _, out = _attack(attack_type, faces, index, seed)
        shift = (out.mean((1, 2)) - face.mean((1, 2))).abs().max()
        assert shift < MAX_MEAN_SHIFT


@pytest.mark.parametrize("attack_type", LOCAL_TYPES)
def test_local_types_leave_outside_region_bit_exact(attack_type: str, faces) -> None:
    for index, seed in itertools.product(range(len(faces)), (0, 4)):
        face, lm, out = _attack(attack_type, faces, index, seed)
        region = attack_region(attack_type, lm, 64, 64)
        assert region.dtype == torch.bool and region.shape == (64, 64)
        assert torch.equal(out[:, ~region], face[:, ~region])
        assert (out[:, region] != face[:, region]).any()


@pytest.mark.parametrize("attack_type", PARTIAL_TYPES)
def test_partial_region_is_local_around_its_landmarks(attack_type: str, faces) -> None:
    _, lm = faces[0]
    region = attack_region(attack_type, lm, 64, 64)
    assert 0.05 < region.float().mean() < 0.45
    mouth = attack_type == "Partial_Mouth"
    covered = (3, 4) if mouth else (0, 1)
    spared = (0, 1) if mouth else (3, 4)
    for i in covered:
        assert region[round(float(lm[i, 1])), round(float(lm[i, 0]))]
    for i in spared:
        assert not region[round(float(lm[i, 1])), round(float(lm[i, 0]))]


def test_global_types_region_is_whole_image(faces) -> None:
    _, lm = faces[0]
    for attack_type in set(PA_TYPES) - set(LOCAL_TYPES):
        assert bool(attack_region(attack_type, lm, 40, 50).all())


def test_types_pairwise_distinct(faces) -> None:
    for index in (0, 1):
        outs = {t: _attack(t, faces, index, seed=0)[2] for t in PA_TYPES}
        for a, b in itertools.combinations(PA_TYPES, 2):
            gap = (outs[a] - outs[b]).abs().mean()
            assert gap > MIN_PAIR_GAP, f"{a} vs {b} on face {index}: {gap:.4f}"


def test_mask_donor_is_optional_and_used(faces) -> None:
    face, lm = faces[0]
    donor, donor_lm = faces[1]
    for attack_type in ("Mask_Silicone", "Mask_Trans", "Mask_Mann"):
        alone = simulate_pa(attack_type, face, lm, seed=5)
        with_donor = simulate_pa(
            attack_type, face, lm, seed=5, donor=donor, donor_landmarks=donor_lm
        )
        assert not torch.equal(alone, with_donor)


def test_donor_of_another_size(faces) -> None:
    face, lm = faces[0]
    donor, donor_lm = faces[1]
    small = F.interpolate(donor[None], size=(40, 48), mode="bilinear")[0].clamp(0, 1)
    small_lm = donor_lm * torch.tensor([48 / 64, 40 / 64])
    out = simulate_pa("Makeup_Im", face, lm, seed=0, donor=small, donor_landmarks=small_lm)
    assert out.shape == face.shape


def test_simulator_callable_directly(faces) -> None:
    face, lm = faces[0]
    rng = torch.Generator().manual_seed(7)
    direct = PA_SIMULATORS["Replay"](face, lm, rng, None, None)
    assert torch.equal(direct, simulate_pa("Replay", face, lm, seed=7))


# ----------------------------------------------------------------------------- properties


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, torch.Tensor, torch.Tensor, int]:
    attack_type = draw(st.sampled_from(PA_TYPES))
    h = draw(st.integers(16, 96))
    w = draw(st.integers(16, 96))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    face = torch.rand(3, h, w, generator=gen, dtype=dtype)
    face = F.avg_pool2d(face[None], 3, 1, 1, count_include_pad=False)[0]  # face-like smoothness
    jitter = (torch.rand(5, 2, generator=gen) - 0.5) * 2.0
    lm = (torch.tensor(LFW_TEMPLATE) + jitter) * torch.tensor([(w - 1) / 63, (h - 1) / 63])
    return attack_type, face, lm.clamp(min=0), seed


@settings(max_examples=60, deadline=None)
@given(case=_cases())
def test_property_any_size_and_dtype(case: tuple[str, torch.Tensor, torch.Tensor, int]) -> None:
    attack_type, face, lm, seed = case
    donor = torch.rand(3, 32, 24, generator=torch.Generator().manual_seed(seed))
    donor_lm = torch.tensor(LFW_TEMPLATE) * torch.tensor([23 / 63, 31 / 63])
    out = simulate_pa(attack_type, face, lm, seed=seed, donor=donor, donor_landmarks=donor_lm)
    assert out.shape == face.shape and out.dtype == face.dtype
    assert bool(torch.isfinite(out).all())
    assert _in_unit_interval(out)
    if attack_type in LOCAL_TYPES:
        region = attack_region(attack_type, lm, *face.shape[-2:])
        assert torch.equal(out[:, ~region], face[:, ~region])


# ----------------------------------------------------------------------------- exceptions


def test_exception_unknown_type_lists_available(faces) -> None:
    face, lm = faces[0]
    with pytest.raises(ValueError, match=r"unknown.*'Mask_Rubber'.*available: Makeup_Co, "):
        simulate_pa("Mask_Rubber", face, lm, seed=0)
    with pytest.raises(ValueError, match="available"):
        attack_region("paper", lm, 64, 64)


def test_exception_values_out_of_range(faces) -> None:
    face, lm = faces[0]
    with pytest.raises(ValueError, match=r"face values must lie in \[0, 1\]"):
        simulate_pa("Paper", face * 255, lm, seed=0)
    with pytest.raises(ValueError, match=r"face values must lie in \[0, 1\]"):
        simulate_pa("Paper", face - 0.5, lm, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        simulate_pa("Paper", torch.full_like(face, float("nan")), lm, seed=0)


def test_exception_bad_face_shape_or_dtype(faces) -> None:
    face, lm = faces[0]
    with pytest.raises(ValueError, match=r"shape \(3, H, W\)"):
        simulate_pa("Paper", face[None], lm, seed=0)
    with pytest.raises(ValueError, match=r"shape \(3, H, W\)"):
        simulate_pa("Paper", face[:1], lm, seed=0)
    with pytest.raises(ValueError, match="floating-point"):
        simulate_pa("Paper", (face * 255).to(torch.uint8), lm, seed=0)
    with pytest.raises(ValueError, match="at least 16x16"):
        simulate_pa("Paper", face[:, :12, :12], lm / 6, seed=0)
    with pytest.raises(ValueError, match=r"torch\.Tensor"):
        simulate_pa("Paper", face.numpy(), lm, seed=0)


def test_exception_landmarks(faces) -> None:
    face, lm = faces[0]
    outside = lm.clone()
    outside[2] = torch.tensor([70.0, 30.0])
    with pytest.raises(ValueError, match=r"inside the image.*point 2 is \(70, 30\)"):
        simulate_pa("Partial_Eye", face, outside, seed=0)
    with pytest.raises(ValueError, match=r"inside the image"):
        simulate_pa("Partial_Eye", face, lm - 30, seed=0)
    with pytest.raises(ValueError, match=r"shape \(5, 2\)"):
        simulate_pa("Partial_Eye", face, lm[:4], seed=0)
    bad = lm.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        simulate_pa("Partial_Eye", face, bad, seed=0)


def test_exception_missing_donor(faces) -> None:
    face, lm = faces[0]
    donor, donor_lm = faces[1]
    with pytest.raises(ValueError, match="Makeup_Im needs a donor"):
        simulate_pa("Makeup_Im", face, lm, seed=0)
    with pytest.raises(ValueError, match="given together"):
        simulate_pa("Makeup_Im", face, lm, seed=0, donor=donor)
    with pytest.raises(ValueError, match="donor_landmarks must lie inside"):
        simulate_pa("Makeup_Im", face, lm, seed=0, donor=donor, donor_landmarks=donor_lm + 64)
    with pytest.raises(ValueError, match=r"donor values must lie in \[0, 1\]"):
        simulate_pa("Mask_Trans", face, lm, seed=0, donor=donor * 2, donor_landmarks=donor_lm)


def test_exception_seed_type(faces) -> None:
    face, lm = faces[0]
    with pytest.raises(ValueError, match="seed must be an int"):
        simulate_pa("Paper", face, lm, seed=1.5)  # type: ignore[arg-type]
