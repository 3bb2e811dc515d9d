"""Training on cached features: selection on dev, checkpoint and resume, cache equivalence."""

from __future__ import annotations

import pytest
import torch

from facecat import create_detector, load_detector
from facecat.core.checkpoints import CheckpointError
from facecat.datasets.manifest import read_manifest
from facecat.models.config import TrainConfig
from facecat.training.facecat import train_facecat

CONFIG = TrainConfig(epochs=3, batch_size=16)


class SimulatedKillError(Exception):
    pass


@pytest.fixture(scope="module")
def splits(lfw_manifest):
    manifest = read_manifest(lfw_manifest)
    return manifest.split("train"), manifest.split("dev")


def _train(splits, out_dir, cache_dir, **kwargs):
    detector = create_detector("facecat-tiny")
    result = train_facecat(
        detector,
        *splits,
        out_dir,
        config=kwargs.pop("config", CONFIG),
        cache_dir=cache_dir,
        progress=False,
        **kwargs,
    )
    return detector, result


def _head_state(detector):
    return {k: v.clone() for k, v in detector.trainable_modules().state_dict().items()}


@pytest.fixture(scope="module")
def reference(splits, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    return _train(splits, root / "run", root / "cache")


def test_training_writes_detector_history_and_selects_on_dev(reference):
    detector, result = reference
    assert result.detector_path.is_file()
    assert list(result.history["epoch"]) == [1, 2, 3]
    assert result.best_dev_eer == pytest.approx(result.history["dev_eer"].min())
    assert result.best_epoch == int(result.history["dev_eer"].idxmin()) + 1
    loaded = load_detector(result.detector_path)
    images = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded.scores(images), detector.scores(images))
    assert loaded.file_metadata["best_epoch"] == result.best_epoch


def test_training_changes_the_head_and_lowers_the_loss(reference):
    detector, result = reference
    fresh = create_detector("facecat-tiny")
    assert not torch.equal(fresh.head.stem[0].weight, detector.head.stem[0].weight)
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]


def test_interrupted_run_resumes_to_the_same_result(splits, reference, tmp_path):
    def stop_after_two(epoch):
        if epoch == 2:
            raise SimulatedKillError

    with pytest.raises(SimulatedKillError):
        _train(splits, tmp_path / "run", tmp_path / "cache", on_epoch_end=stop_after_two)
    resumed, result = _train(splits, tmp_path / "run", tmp_path / "cache")
    reference_detector, reference_result = reference
    assert result.best_epoch == reference_result.best_epoch
    assert result.history["dev_eer"].tolist() == reference_result.history["dev_eer"].tolist()
    for name, tensor in _head_state(reference_detector).items():
        torch.testing.assert_close(_head_state(resumed)[name], tensor, rtol=0, atol=0)


def test_checkpoint_of_another_run_is_refused(splits, reference, tmp_path):
    _train(splits, tmp_path / "run", tmp_path / "cache", config=TrainConfig(epochs=1))
    with pytest.raises(CheckpointError, match="different run"):
        _train(splits, tmp_path / "run", tmp_path / "cache", seed=5)


def test_without_cache_matches_cached_training(splits, reference, tmp_path):
    uncached, result = _train(
        splits, tmp_path / "run", None, use_cache=False, config=TrainConfig(epochs=1)
    )
    cached, cached_result = _train(
        splits, tmp_path / "run-cached", tmp_path / "cache", config=TrainConfig(epochs=1)
    )
    assert result.history["dev_eer"].iloc[0] == pytest.approx(
        cached_result.history["dev_eer"].iloc[0], abs=0.02
    )
    for name, tensor in _head_state(cached).items():
        torch.testing.assert_close(_head_state(uncached)[name], tensor, rtol=1e-3, atol=1e-4)


def test_exception_single_class_split(splits, tmp_path):
    train, dev = splits
    live_only = train.filter(train.labels == 1)
    with pytest.raises(ValueError, match="train split needs bona fide and attack"):
        train_facecat(create_detector("facecat-tiny"), live_only, dev, tmp_path, progress=False)
