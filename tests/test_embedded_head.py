"""The embedded configuration's parts: pooled features, the conv head and its recipe."""

from __future__ import annotations

import itertools
import json

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from facecat import create_detector
from facecat.datasets.manifest import read_manifest
from facecat.models.config import ConfigError, TrainConfig, read_config_dict
from facecat.models.head import ConvHead, EmbeddingHead, create_head
from facecat.training.facecat import lr_factor, mirror, train_facecat

#: facecat-tiny with the embedded recipe of facecat-small (its conv head, pooled blocks).
EMBEDDED_RECIPE = {
    "features": {"timesteps": [1], "blocks": [2, 3], "pool": 8},
    "fusion": "pooling",
    "head": "conv",
}
RECIPE_TRAIN = {"lr": 1e-3, "weight_decay": 0.05, "optimizer": "adamw", "hflip": True}


@pytest.fixture(scope="module")
def splits(lfw_manifest):
    manifest = read_manifest(lfw_manifest)
    return manifest.split("train"), manifest.split("dev")


def test_conv_head_smoke_and_cardinality() -> None:
    head = ConvHead(in_channels=64, embed_dim=384).eval()
    assert head(torch.rand(3, 64, 16, 16)).shape == (3, 384)
    assert sum(p.numel() for p in head.parameters()) < 300_000


def test_create_head_exception_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown head 'mlp'.*conv.*resnet18"):
        create_head("mlp", 8, 16)


def test_facecat_small_reads_pooled_64px_blocks_with_the_conv_head() -> None:
    detector = create_detector("facecat-small", device="meta")
    assert isinstance(detector.head, ConvHead)
    shapes = detector.extractor.block_shapes()
    assert [(s.channels, s.resolution) for s in shapes] == [(32, 16), (32, 16)]
    paper = create_detector("facecat-ffhq256", text_guided=False, device="meta")
    assert isinstance(paper.head, EmbeddingHead)  # the paper's ResNet-18 head stays


def test_pooled_features_equal_average_pooling_of_the_full_blocks() -> None:
    full = create_detector("facecat-tiny", features={"timesteps": [1], "blocks": [2, 3]})
    pooled = create_detector(
        "facecat-tiny", features={"timesteps": [1], "blocks": [2, 3], "pool": 8}
    )
    images = torch.rand(2, 3, 32, 32)
    for a, b, shape in zip(
        full.extractor(images),
        pooled.extractor(images),
        pooled.extractor.block_shapes(),
        strict=True,
    ):
        assert b.shape == (2, shape.channels, shape.resolution, shape.resolution)
        torch.testing.assert_close(b, F.adaptive_avg_pool2d(a, shape.resolution))


def test_pool_that_does_not_divide_a_block_is_refused() -> None:
    with pytest.raises(ValueError, match="pool 12 does not divide"):
        create_detector("facecat-tiny", features={"blocks": [3], "pool": 12})


def test_resnet_weights_on_the_conv_head_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="only fit the 'resnet18' head"):
        create_detector("facecat-small", resnet_weights=tmp_path / "resnet18.pth")


def test_train_config_exceptions(tmp_path) -> None:
    with pytest.raises(ValueError, match="optimizer 'adam'"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(epochs=3, warmup_epochs=3)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(read_config_dict("facecat-small") | {"train": {"optimiser": "x"}}))
    with pytest.raises(ConfigError, match=r"unknown fields.*optimiser"):
        create_detector(str(path))


def test_lr_factor_warms_up_then_follows_the_cosine() -> None:
    config = TrainConfig(epochs=10, warmup_epochs=4)
    factors = [lr_factor(e, config) for e in range(10)]
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a > b for a, b in itertools.pairwise(factors[4:]))
    plain = TrainConfig(epochs=4)
    assert [lr_factor(e, plain) for e in range(4)] == pytest.approx(
        [1.0, 0.853553, 0.5, 0.146447], abs=1e-6
    )


def test_mirror_flips_only_the_selected_samples() -> None:
    features = [torch.arange(8.0).reshape(2, 1, 2, 2), torch.arange(16.0).reshape(2, 2, 2, 2)]
    flips = torch.tensor([True, False])
    out = mirror(features, flips)
    for before, after in zip(features, out, strict=True):
        torch.testing.assert_close(after[0], before[0].flip(-1))
        torch.testing.assert_close(after[1], before[1])


def _train_embedded_recipe(splits, tmp_path, **train):
    detector = create_detector("facecat-tiny", **EMBEDDED_RECIPE)
    config = TrainConfig(batch_size=16, **(RECIPE_TRAIN | train))
    return train_facecat(
        detector,
        *splits,
        tmp_path / "run",
        config=config,
        cache_dir=tmp_path / "cache",
        progress=False,
    )


def test_embedded_recipe_learns_on_the_lfw_demo(splits, tmp_path) -> None:
    result = _train_embedded_recipe(splits, tmp_path, epochs=12, warmup_epochs=2)
    assert result.history["dev_auc"].max() > 0.9
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]


def test_patience_stops_when_dev_stops_improving(splits, tmp_path) -> None:
    result = _train_embedded_recipe(splits, tmp_path, epochs=20, patience=2, lr=1e-9)
    history = result.history
    assert len(history) < 20
    assert len(history) == result.best_epoch + 2


def test_training_does_not_depend_on_the_global_random_state(splits, tmp_path) -> None:
    """Dropout draws from a seeded state: what ran before in the process changes nothing."""
    torch.manual_seed(1)
    first = _train_embedded_recipe(splits, tmp_path / "first", epochs=2, warmup_epochs=1)
    torch.manual_seed(2)
    torch.rand(1000)
    second = _train_embedded_recipe(splits, tmp_path / "second", epochs=2, warmup_epochs=1)
    assert first.history["train_loss"].tolist() == second.history["train_loss"].tolist()
    one = safetensors.torch.load_file(str(first.detector_path))
    two = safetensors.torch.load_file(str(second.detector_path))
    for name in one:
        torch.testing.assert_close(one[name], two[name], rtol=0, atol=0, msg=name)
