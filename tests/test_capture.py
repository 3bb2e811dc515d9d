"""The protocol's simulated camera: seeded, within range, alike for every source."""

from __future__ import annotations

import pytest
import torch

from facecat.core.images import load_image
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.capture import CaptureSettings, capture
from facecat.datasets.manifest import read_manifest


def _face(source: str) -> torch.Tensor:
    manifest = read_manifest(bundled_manifest())
    row = manifest.frame[manifest.frame["source"] == source].iloc[0]
    return load_image(manifest.root / row["path"], size=None)


def test_capture_is_seeded_8_bit_and_keeps_the_shape() -> None:
    face = _face("dcgan")
    out = capture(face, seed=5)
    assert out.shape == face.shape and out.dtype == torch.float32
    assert torch.equal(out, capture(face, seed=5))
    assert not torch.equal(out, capture(face, seed=6))
    assert torch.equal(out, (out * 255).round() / 255)
    assert out.min() >= 0 and out.max() <= 1


def test_capture_changes_the_image_but_keeps_the_face() -> None:
    face = _face("astronaut")
    out = capture(face, seed=0)
    difference = (out - face).abs().mean().item()
    assert 0.003 < difference < 0.08


def test_identity_settings_leave_only_the_jpeg() -> None:
    face = _face("dcgan")
    still = CaptureSettings(
        scale=(1.0, 1.0),
        blur=(0.0, 0.0),
        read_noise=(0.0, 0.0),
        shot_noise=(0.0, 0.0),
        sharpen=(0.0, 0.0),
        quality=(95, 95),
    )
    out = capture(face, seed=0, settings=still)
    assert (out - face).abs().mean().item() < 0.01


def test_sharp_real_photographs_and_smooth_dcgan_faces_meet_in_sharpness() -> None:
    def detail(image: torch.Tensor) -> float:
        return (image[:, 1:, :] - image[:, :-1, :]).abs().mean().item()

    dcgan, portrait = _face("dcgan"), _face("astronaut")
    before = detail(portrait) / detail(dcgan)
    shots = range(8)
    after = sum(detail(capture(portrait, seed=s)) for s in shots) / sum(
        detail(capture(dcgan, seed=s)) for s in shots
    )
    assert abs(after - 1) < abs(before - 1)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("blur", (0.5, 0.1), "blur"),
        ("scale", (0.0, 1.0), "scale"),
        ("scale", (0.5, 1.5), "scale"),
        ("quality", (40, 99), "quality"),
        ("read_noise", (-0.1, 0.1), "read_noise"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: tuple[float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CaptureSettings(**{field: value})


@pytest.mark.parametrize(
    "image",
    [torch.rand(1, 64, 64), torch.rand(3, 4, 4), torch.full((3, 16, 16), 1.5)],
)
def test_bad_images_raise_clear_errors(image: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="capture expects"):
        capture(image, seed=0)
