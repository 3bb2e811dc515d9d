"""Unit tests of the physical-world simulator, the physical set and the captured-set loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from facecat.core.face_surface import UV_LANDMARKS, face_depth, surface_normals, uv_coordinates
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.manifest import ManifestError, read_manifest, write_manifest
from facecat.datasets.protocol import sample_seed
from facecat.physical.captured import load_captured_set
from facecat.physical.physical_set import PhysicalSettings, build_physical_set, plan_prints
from facecat.physical.regions import REGIONS, region_mask
from facecat.physical.render import Capture, print_texture, render, unwrap
from facecat.physical.texture_attack import TextureAttack
from facecat.recognition.face_recognition import TorchRecognizer
from facecat.robustness.checks import Check, physical_checks

SIZE = 64
LANDMARKS = torch.tensor([[21.9, 26.6], [42.1, 26.5], [32.0, 38.0], [23.6, 49.8], [40.4, 49.8]])


def _faces(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    faces = torch.rand(batch, 3, SIZE, SIZE, generator=generator).to(device)
    return faces, LANDMARKS.expand(batch, 5, 2).clone().to(device)


def _recognizer(device: torch.device) -> TorchRecognizer:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 16),
    )
    return TorchRecognizer(model, input_size=32, name="tiny").to(device).eval()


def test_uv_coordinates_put_the_landmarks_on_the_template() -> None:
    uv, scale = uv_coordinates(LANDMARKS[None], (SIZE, SIZE))
    assert uv.shape == (1, SIZE, SIZE, 2)
    x, y = LANDMARKS[0].round().long()
    assert torch.allclose(uv[0, y, x], UV_LANDMARKS[0], atol=0.05)
    assert scale.item() == pytest.approx(20.2, rel=0.05)


def test_nose_tip_is_the_closest_point_and_normals_are_unit() -> None:
    uv, _ = uv_coordinates(LANDMARKS[None], (SIZE, SIZE))
    depth = face_depth(uv)
    peak = np.unravel_index(int(depth[0].argmax()), depth[0].shape)
    assert np.hypot(peak[1] - 32.0, peak[0] - 38.0) < 4
    normals = surface_normals(depth[:, None] * 20)
    assert normals.shape == (1, 3, SIZE, SIZE)
    assert torch.allclose(normals.norm(dim=1), torch.ones(1, SIZE, SIZE), atol=1e-5)


def test_render_smoke_shapes_and_range(device: torch.device) -> None:
    faces, landmarks = _faces(3, device)
    texture = torch.rand(3, 3, 32, 32, device=device)
    generator = torch.Generator(device).manual_seed(0)
    capture = Capture.sample(3, generator, device=device)
    photos, moved = render(
        faces, landmarks, texture, region_mask("eye", 32, faces), capture, generator=generator
    )
    assert photos.shape == faces.shape and moved.shape == (3, 5, 2)
    assert photos.min() >= 0 and photos.max() <= 1
    assert print_texture(texture).shape == texture.shape


def test_gradients_through_the_render_are_finite(device: torch.device) -> None:
    faces, landmarks = _faces(2, device)
    texture = torch.rand(2, 3, 32, 32, device=device, requires_grad=True)
    generator = torch.Generator(device).manual_seed(1)
    capture = Capture.sample(2, generator, device=device)
    mask = region_mask("respirator", 32, faces)
    photos, _ = render(faces, landmarks, texture, mask, capture, generator=generator)
    (gradient,) = torch.autograd.grad(photos.sum(), texture)
    assert torch.isfinite(gradient).all()
    assert gradient.abs().sum() > 0
    near = F.max_pool2d(mask, 11, stride=1, padding=5)[0, 0] > 0  # ink spread, resampling
    assert gradient[..., ~near].abs().max() == 0


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_print_changes_only_the_region_under_an_identity_capture(region: str) -> None:
    faces, landmarks = _faces(2, torch.device("cpu"))
    texture = torch.rand(2, 3, 48, 48)
    photos, moved = render(
        faces, landmarks, texture, region_mask(region, 48, faces), Capture.identity(2)
    )
    uv, _ = uv_coordinates(landmarks, (SIZE, SIZE))
    inside = F.max_pool2d(REGIONS[region](uv)[:, None], 5, stride=1, padding=2) > 0
    changed = (photos - faces).abs().amax(dim=1, keepdim=True) > 1e-4
    assert changed.any()
    assert not (changed & ~inside).any()
    assert torch.allclose(moved, landmarks, atol=1e-4)


def test_texture_attack_is_seeded_and_keeps_the_face_outside_the_region() -> None:
    faces, landmarks = _faces(2, torch.device("cpu"))
    recognizer = _recognizer(torch.device("cpu"))
    references = recognizer(faces).detach()
    attack = TextureAttack(steps=2, texture_size=32)
    runs = [
        attack(
            recognizer,
            faces,
            landmarks,
            references,
            region="eye_nose",
            mode="dodging",
            generator=torch.Generator().manual_seed(3),
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    outside = region_mask("eye_nose", 32, faces)[0, 0] == 0
    assert torch.equal(runs[0][..., outside], unwrap(faces, landmarks, 32)[..., outside])
    assert not torch.equal(runs[0], unwrap(faces, landmarks, 32))


def test_bad_inputs_raise_clear_errors() -> None:
    faces, landmarks = _faces(2, torch.device("cpu"))
    with pytest.raises(ValueError, match="texture must be"):
        render(
            faces, landmarks, torch.rand(3, 3, 8, 8), torch.ones(1, 1, 8, 8), Capture.identity(2)
        )
    with pytest.raises(ValueError, match="unknown region"):
        region_mask("ear", 8, faces)
    with pytest.raises(ValueError, match="landmarks must be"):
        uv_coordinates(torch.zeros(2, 4, 2), (8, 8))
    with pytest.raises(ValueError, match="size must lie"):
        PhysicalSettings(size=0)
    with pytest.raises(ValueError, match="steps"):
        TextureAttack(steps=0)
    with pytest.raises(ValueError, match="mode"):
        TextureAttack(steps=1)(
            _recognizer(torch.device("cpu")),
            faces,
            landmarks,
            torch.zeros(2, 16),
            region="eye",
            mode="confuse",
            generator=torch.Generator(),
        )


def test_plan_cycles_regions_and_modes_and_fills_the_size() -> None:
    wearers = pd.DataFrame({"subject": ["a", "b", "c"], "path": ["1", "2", "3"]})
    plan = plan_prints(wearers, PhysicalSettings(size=10, captures=4))
    assert plan["captures"].tolist() == [4, 4, 2]
    assert plan[["region", "mode"]].drop_duplicates().shape[0] == 3
    subjects = wearers["subject"].to_numpy()
    assert (subjects[plan["wearer"]] != subjects[plan["target"]]).all()


def test_physical_check_ids() -> None:
    assert Check("facecat", "physical", "clean").id == "facecat-physical"
    assert Check("cdcn", "physical", "jpeg", 3).id == "cdcn-physical-jpeg-sev3"
    ids = [c.id for c in physical_checks(["facecat"], ["jpeg"], [1, 3])]
    assert ids == ["facecat-physical", "facecat-physical-jpeg-sev1", "facecat-physical-jpeg-sev3"]


def test_physical_set_is_built_once_and_records_fr_outcomes(tmp_path: Path) -> None:
    protocol = read_manifest(bundled_manifest())
    settings = PhysicalSettings(size=6, captures=3, steps=1, texture_size=32)
    recognizer = _recognizer(torch.device("cpu"))
    built = build_physical_set(protocol, recognizer, settings, cache_dir=tmp_path)
    frame = built.manifest.frame
    assert len(frame) == 6 and (built.manifest.labels == 0).all()
    assert set(frame["split"]) == {"test"}
    test_subjects = set(protocol.split("test").frame["subject"])
    assert set(frame["subject"]) <= test_subjects
    assert {"fr_success", "fr_success_control", "yaw", "quality"} <= set(frame.columns)
    assert built.contact_sheet.is_file()
    assert built.fr_success.query("region == 'all' and mode == 'all'")["n"].item() == 6
    stamp = (built.root / "manifest.csv").stat().st_mtime_ns
    again = build_physical_set(protocol, recognizer, settings, cache_dir=tmp_path)
    assert again.root == built.root
    assert (again.root / "manifest.csv").stat().st_mtime_ns == stamp


def _captured(folder: Path, splits: tuple[str, ...], labels: tuple[int, ...]) -> Path:
    rows = []
    for i, (split, label) in enumerate(zip(splits, labels, strict=True)):
        path = f"photos/{i}.png"
        (folder / "photos").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(folder / path)
        rows.append(
            {
                "path": path,
                "label": label,
                "attack_type": "Physical_3D" if label == 0 else "Live",
                "split": split,
                "subject": f"s{i % 2}",
            }
        )
    write_manifest(pd.DataFrame(rows), folder / "manifest.csv")
    return folder


def test_captured_set_loads_from_a_folder(tmp_path: Path) -> None:
    folder = _captured(tmp_path, ("test", "test", "test"), (0, 0, 1))
    manifest = load_captured_set(folder)
    assert len(manifest) == 3 and manifest.labels.tolist() == [0, 0, 1]
    assert len(load_captured_set(folder / "manifest.csv")) == 3


def test_captured_set_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no manifest"):
        load_captured_set(tmp_path / "missing")
    with pytest.raises(ManifestError, match="split 'test'"):
        load_captured_set(_captured(tmp_path / "a", ("test", "train"), (0, 1)))
    with pytest.raises(ManifestError, match="no attack rows"):
        load_captured_set(_captured(tmp_path / "b", ("test",), (1,)))


def test_capture_sampling_is_seeded_and_within_ranges() -> None:
    first = Capture.sample(5, torch.Generator().manual_seed(sample_seed(0, "x")))
    second = Capture.sample(5, torch.Generator().manual_seed(sample_seed(0, "x")))
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.as_dict().values(), second.as_dict().values(), strict=True)
    )
    assert first.yaw.abs().max() <= 20 and (first.quality >= 55).all()
