"""Detector registry, creation from configs, and the single-file detector format."""

from __future__ import annotations

import pickle

import pytest
import torch

from facecat import create_detector, list_detectors, load_detector, save_detector
from facecat.core.checkpoints import CheckpointError
from facecat.core.images import ImageBatchError
from facecat.models.config import ConfigError
from facecat.models.registry import read_detector_header
from facecat.models.text import TextEncoderError
from facecat.models.unet import UNet


@pytest.fixture(scope="module")
def tiny():
    return create_detector("facecat-tiny")


def test_list_detectors_names_packaged_configs():
    assert {"facecat-ffhq256", "facecat-small", "facecat-tiny"} <= set(list_detectors())


def test_smoke_scores_are_probabilities(tiny, device):
    detector = tiny.to(device)
    scores = detector.scores(torch.rand(5, 3, 32, 32, device=device))
    assert scores.shape == (5,)
    assert torch.all((scores >= 0) & (scores <= 1))
    tiny.to("cpu")


def test_same_seed_same_scores_other_seed_differs(tiny):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    again = create_detector("facecat-tiny", seed=0)
    other = create_detector("facecat-tiny", seed=1)
    assert torch.equal(tiny.scores(images), again.scores(images))
    assert not torch.allclose(tiny.scores(images), other.scores(images))


def test_scores_restores_training_mode(tiny):
    tiny.train()
    tiny.scores(torch.rand(2, 3, 32, 32))
    assert tiny.training
    tiny.eval()


def test_exception_unknown_name_lists_available():
    with pytest.raises(ConfigError, match="facecat-tiny"):
        create_detector("no-such-model")


def test_exception_unknown_override_field():
    with pytest.raises(ConfigError, match="unknown fields"):
        create_detector("facecat-tiny", features={"bogus": 1})


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.full((2, 3, 32, 32), float("nan")), "NaN"),
        (torch.full((2, 3, 32, 32), 2.0), r"\[0, 1\]"),
        (torch.rand(3, 32, 32), "4-D"),
    ],
)
def test_exception_bad_images(tiny, images, message):
    with pytest.raises(ImageBatchError, match=message):
        tiny.scores(images)


def test_without_text_guidance_uses_linear_classifier():
    detector = create_detector("facecat-tiny", text_guided=False)
    assert detector.class_weights is None
    assert detector.classifier.in_features == 512
    assert detector.scores(torch.rand(2, 3, 32, 32)).shape == (2,)


def test_text_guided_embedding_has_text_dimension(tiny):
    assert tiny.class_weights.shape == (2, 384)
    assert torch.allclose(tiny.class_weights.norm(dim=1), torch.ones(2), atol=1e-5)


def test_clip_backend_without_weights_is_a_clear_error():
    with pytest.raises(TextEncoderError, match="CLIP"):
        create_detector("facecat-tiny", text={"backend": "clip"})


def test_save_load_round_trip_gives_identical_scores(tiny, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_detector(tiny, path, metadata={"note": "round trip"})
    loaded = load_detector(path)
    images = torch.rand(4, 3, 32, 32)
    assert torch.equal(tiny.scores(images), loaded.scores(images))
    header = read_detector_header(path)
    assert header["config"]["name"] == "facecat-tiny"
    assert header["metadata"]["note"] == "round trip"
    assert header["metadata"]["backbone_sha256"] == tiny.backbone_digest()


def test_exception_load_refuses_pickle(tmp_path):
    path = tmp_path / "detector.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_detector(path)


def test_exception_load_truncated_file(tiny, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_detector(tiny, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_detector(path)


def test_unet_weights_load_strictly(tmp_path):
    source = create_detector("facecat-tiny", seed=3).extractor.unet
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.normal_()
    path = tmp_path / "unet.pt"
    torch.save(source.state_dict(), path)
    detector = create_detector("facecat-tiny", unet_weights=path)
    for name, tensor in detector.extractor.unet.state_dict().items():
        assert torch.equal(tensor, source.state_dict()[name]), name
    assert detector.provenance()["backbone_source"] == str(path)


def test_exception_mismatched_unet_weights_name_config_and_keys(tmp_path):
    small = create_detector("facecat-small").extractor.unet
    path = tmp_path / "small-unet.pt"
    torch.save(small.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"facecat-tiny.*(missing|unexpected|shape)"):
        create_detector("facecat-tiny", unet_weights=path)


def test_exception_missing_unet_weights_file_names_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"nothere\.pt"):
        create_detector("facecat-tiny", unet_weights=tmp_path / "nothere.pt")


def test_ffhq_config_builds_on_meta_device_with_release_shapes():
    detector = create_detector("facecat-ffhq256", text={"backend": "minilm"}, device="meta")
    with torch.device("meta"):
        assert sum(p.numel() for p in detector.extractor.unet.parameters()) == 552_814_086
        features = detector.extractor(torch.zeros(1, 3, 256, 256))
        fused = detector.fusion(features)
        embedding = detector.head(fused)
    assert [tuple(f.shape[1:]) for f in features] == [
        (1024, 32, 32),
        (512, 32, 32),
        (512, 32, 32),
        (512, 64, 64),
        (256, 128, 128),
    ]
    assert tuple(fused.shape[1:]) == (2432, 32, 32)
    assert tuple(embedding.shape) == (1, 384)
    assert isinstance(detector.extractor.unet, UNet)
