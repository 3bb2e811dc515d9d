"""Shipped detector files: slim FaceCat files, backbone digests, names, provenance."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from facecat import create_detector
from facecat.cli import main
from facecat.core.checkpoints import CheckpointError
from facecat.core.provenance import provenance
from facecat.experiments.shipped import SHIPPED_VARIANTS, shipped_table
from facecat.models.registry import load_detector, read_detector_header, save_detector

SHIPPED_NAMES = [variant.config for variant in SHIPPED_VARIANTS]


@pytest.fixture(scope="module")
def small() -> torch.nn.Module:
    return create_detector("facecat-small", text_guided=False).eval()


def test_slim_file_reloads_the_packaged_backbone(small, tmp_path) -> None:
    full, slim = tmp_path / "full.safetensors", tmp_path / "slim.safetensors"
    save_detector(small, full)
    save_detector(small, slim, omit_backbone=True)
    assert slim.stat().st_size < full.stat().st_size / 10
    assert not any(k.startswith("extractor.unet.") for k in read_detector_header(slim)["keys"])
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(load_detector(slim).scores(images), small.scores(images))


def test_slim_file_with_another_backbone_digest_is_refused(small, tmp_path) -> None:
    path = tmp_path / "slim.safetensors"
    save_detector(small, path, omit_backbone=True, metadata={"backbone_sha256": "0" * 64})
    with pytest.raises(CheckpointError, match="backbone weights have SHA-256"):
        load_detector(path)


def test_slim_file_of_a_config_without_packaged_weights_is_refused(tmp_path) -> None:
    tiny = create_detector("facecat-tiny", text_guided=False, unet_weights="random")
    path = tmp_path / "tiny.safetensors"
    save_detector(tiny, path, omit_backbone=True)
    with pytest.raises(CheckpointError, match="packages none"):
        load_detector(path)
    tensors = safetensors.torch.load_file(str(path))
    assert tensors  # the head is still there


def test_unknown_detector_names_list_the_shipped_ones() -> None:
    with pytest.raises(CheckpointError, match="no shipped detector of that name"):
        load_detector("no-such-detector")
    with pytest.raises(CheckpointError, match="detector file not found"):
        load_detector("runs/missing.safetensors")


def test_provenance_names_versions_commit_device_and_date() -> None:
    record = provenance("cpu")
    expected = {"facecat_version", "git_commit", "torch_version", "device", "dtype", "date"}
    assert set(record) == expected
    assert record["torch_version"] == torch.__version__ and record["date"].endswith("Z")
    assert record["dtype"] == "float32"
    assert provenance("cpu", torch.float64)["dtype"] == "float64"


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_detectors_load_by_name_with_threshold_and_provenance(name) -> None:
    detector = load_detector(name)
    meta = detector.file_metadata
    assert 0 < meta["dev_threshold"] < 1
    assert meta["config"] == name and meta["seed"] == 0
    assert meta["protocol"].startswith("embedded-")
    assert {"facecat_version", "git_commit", "torch_version", "device", "dtype", "date"} <= set(
        meta
    )
    table = shipped_table().set_index("name")
    assert table.loc[name, "dev_threshold"] == meta["dev_threshold"]


def test_models_lists_configs_and_shipped_detectors_apart(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    configs, shipped = out.split("shipped trained detectors")
    assert "facecat-tiny" in configs and "facecat-tiny" not in shipped
    assert all(name in shipped for name in SHIPPED_NAMES)


def test_score_uses_the_shipped_detector_by_default(tmp_path, capsys) -> None:
    pytest.importorskip("facenet_pytorch")
    skimage = pytest.importorskip("skimage.data")
    from PIL import Image

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage.astronaut()).save(photo, quality=90)
    assert main(["score", "--format", "json", str(photo)]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["decision"] == "bona fide"  # a full-frame photograph of a person, uncropped
    expected = load_detector("facecat-small").file_metadata["dev_threshold"]
    assert record["threshold"] == pytest.approx(expected, abs=1e-9)  # JSON keeps 10 digits
