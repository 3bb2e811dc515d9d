"""The FR target interface: torch modules and user ONNX models (through onnx2torch)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facecat.recognition.face_recognition import (
    FaceRecognitionError,
    OnnxRecognizer,
    TorchRecognizer,
)


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.PReLU(8),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 32),
    ).eval()


def test_torch_recognizer_resizes_normalises_and_judges():
    recognizer = TorchRecognizer(_network(), input_size=32, metric="cosine", threshold=0.3)
    images = torch.rand(4, 3, 64, 64)
    descriptors = recognizer(images)
    assert descriptors.shape == (4, 32)
    assert torch.allclose(recognizer.embed(images).norm(dim=1), torch.ones(4))
    assert recognizer.same_identity(descriptors, descriptors).all()
    assert torch.allclose(recognizer.distance(descriptors, descriptors), torch.zeros(4), atol=1e-6)


def test_exception_model_that_is_not_an_embedding():
    recognizer = TorchRecognizer(nn.Identity(), input_size=8)
    with pytest.raises(FaceRecognitionError, match="descriptors"):
        recognizer(torch.rand(2, 3, 8, 8))


def test_exception_unknown_metric():
    with pytest.raises(FaceRecognitionError, match="metric"):
        TorchRecognizer(_network(), input_size=32, metric="manhattan")


def test_onnx_model_converts_and_matches_torch(tmp_path):
    pytest.importorskip("onnx2torch", reason="ONNX loading needs onnx2torch")
    pytest.importorskip("onnxscript", reason="exporting the test model needs onnxscript")
    network = _network()
    path = tmp_path / "fr.onnx"
    torch.onnx.export(
        network,
        (torch.rand(1, 3, 112, 112),),
        str(path),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "batch"}},
    )
    onnx_fr = OnnxRecognizer(path, threshold=0.4)
    reference = TorchRecognizer(
        network,
        input_size=112,
        metric="cosine",
        threshold=0.4,
        mean=(127.5,) * 3,
        std=(127.5,) * 3,
        scale=255.0,
    )
    images = torch.rand(3, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(onnx_fr(images), reference(images), rtol=1e-4, atol=1e-4)
    assert onnx_fr.input_size == 112 and onnx_fr.metric == "cosine"


def test_exception_missing_or_broken_onnx_file(tmp_path):
    with pytest.raises(FaceRecognitionError, match="not found"):
        OnnxRecognizer(tmp_path / "arcface.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    pytest.importorskip("onnx2torch", reason="ONNX loading needs onnx2torch")
    with pytest.raises(FaceRecognitionError, match=r"broken\.onnx"):
        OnnxRecognizer(broken)
