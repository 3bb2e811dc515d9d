"""CDCN++ baseline: CDC layer, network, losses, pseudo-depth, registry and training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from facecat import create_detector, list_detectors, load_detector, save_detector
from facecat.core.checkpoints import CheckpointError
from facecat.core.images import ImageBatchError, load_image
from facecat.core.landmarks import template
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.manifest import Manifest, read_manifest, write_manifest
from facecat.datasets.presentation_attacks import simulate_pa
from facecat.models.cdcn import (
    CDCNConfig,
    CDCNpp,
    CentralDifferenceConv2d,
    cdcn_loss,
    contrast_depth_kernels,
    contrast_depth_loss,
)
from facecat.models.config import ConfigError, read_config_dict
from facecat.models.registry import read_detector_header
from facecat.training.cdcn import DepthSupervision, train_cdcn
from facecat.training.pseudo_depth import depth_targets, pseudo_depth

TINY = {"image_size": 32, "width": 0.125, "train": {"batch_size": 4}}


class SimulatedKillError(Exception):
    pass


@pytest.fixture(scope="module")
def tiny():
    return create_detector("cdcn", **TINY)


# --------------------------------------------------------------------------- CDC layer


def test_cdc_with_theta_zero_is_a_plain_convolution():
    conv = CentralDifferenceConv2d(3, 4, theta=0.0, bias=True)
    x = torch.rand(2, 3, 9, 9)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))


@pytest.mark.parametrize("stride", [1, 2])
def test_cdc_matches_the_explicit_formula(stride):
    conv = CentralDifferenceConv2d(3, 5, stride=stride, theta=0.7).double()
    x = torch.rand(2, 3, 11, 11, dtype=torch.float64)
    weight = conv.weight
    expected = F.conv2d(x, weight, stride=stride, padding=1) - 0.7 * F.conv2d(
        x, weight.sum(dim=(2, 3), keepdim=True), stride=stride
    )
    torch.testing.assert_close(conv(x), expected)


def test_exception_cdc_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        CentralDifferenceConv2d(3, 4, kernel_size=2)


# --------------------------------------------------------------------------- network


@pytest.mark.parametrize("size", [64, 32])
def test_cardinality_depth_map_is_an_eighth_of_the_image(size):
    network = CDCNpp(size, width=0.125)
    depth = network(torch.rand(2, 3, size, size) * 2 - 1)
    assert depth.shape == (2, size // 8, size // 8)
    assert bool((depth >= 0).all())


def test_width_scales_channels_with_a_floor_of_eight():
    narrow, full = CDCNpp(32, width=0.125), CDCNpp(32, width=1.0)
    assert narrow.stem[0].out_channels == 8
    assert full.stem[0].out_channels == 64
    assert full.blocks[0][1][0].out_channels == int(128 * 1.6)
    assert full.head[0][0].in_channels == 3 * 128


def test_packaged_configs_are_listed_and_parse():
    assert {"cdcn", "cdcn-256"} <= set(list_detectors())
    paper = CDCNConfig.from_dict(read_config_dict("cdcn-256"))
    assert (paper.image_size, paper.width, paper.theta) == (256, 1.0, 0.7)
    assert (paper.train.lr, paper.train.weight_decay) == (1e-4, 5e-5)
    assert CDCNConfig.from_dict(read_config_dict("cdcn")).image_size == 64


def test_exception_config_unknown_field_and_bad_size():
    with pytest.raises(ConfigError, match="bogus"):
        create_detector("cdcn", bogus=1)
    with pytest.raises(ConfigError, match="multiple of 8"):
        create_detector("cdcn", image_size=30)


# --------------------------------------------------------------------------- losses


def test_contrast_kernels_are_centre_minus_each_neighbour():
    kernels = contrast_depth_kernels()
    assert kernels.shape == (8, 1, 3, 3)
    assert bool((kernels[:, 0, 1, 1] == 1).all())
    assert bool((kernels.sum(dim=(1, 2, 3)) == 0).all())
    negatives = {tuple(p) for p in (kernels[:, 0] == -1).nonzero()[:, 1:].tolist()}
    assert negatives == {(r, c) for r in range(3) for c in range(3)} - {(1, 1)}
    assert int((kernels != 0).sum()) == 16


def test_contrast_depth_loss_zero_for_equal_maps_positive_otherwise():
    a = torch.rand(2, 8, 8)
    assert float(contrast_depth_loss(a, a)) == 0.0
    assert float(contrast_depth_loss(a, a + 0.3)) == pytest.approx(0.0, abs=1e-12)
    assert float(contrast_depth_loss(a, torch.rand(2, 8, 8))) > 0
    assert float(cdcn_loss(a, a + 0.3)) == pytest.approx(0.09, rel=1e-4)


# --------------------------------------------------------------------------- pseudo-depth


def test_pseudo_depth_is_a_face_peaking_at_the_nose():
    landmarks = template(64)[None]
    depth = pseudo_depth(landmarks, 64, 16)[0]
    assert depth.shape == (16, 16)
    assert bool(((depth >= 0) & (depth <= 1)).all())
    assert float(depth[[0, 0, -1, -1], [0, -1, 0, -1]].abs().max()) == 0.0
    row, col = divmod(int(depth.argmax()), 16)
    nose_x, nose_y = (landmarks[0, 2] / 4).tolist()  # 4 image pixels per depth pixel
    assert abs(row - nose_y) <= 1 and abs(col - nose_x) <= 1


def test_pseudo_depth_follows_the_landmarks():
    landmarks = template(64)[None]
    depth = pseudo_depth(landmarks, 64, 16)
    shifted = pseudo_depth(landmarks + torch.tensor([8.0, 0.0]), 64, 16)
    torch.testing.assert_close(shifted[..., 2:], depth[..., :-2], atol=1e-5, rtol=0)
    real = read_manifest(bundled_manifest(), check_files=False).landmarks[:4]
    rendered = pseudo_depth(torch.from_numpy(real), 64, 16)
    for points, depth_map in zip(real, rendered, strict=True):
        row, col = divmod(int(depth_map.argmax()), 16)
        assert abs(row - points[2, 1] / 4) <= 1.5 and abs(col - points[2, 0] / 4) <= 1.5


def test_depth_targets_zero_for_attacks_measured_or_pseudo_for_live():
    labels = torch.tensor([0, 1, 0, 1])
    landmarks = template(32)[None].repeat(4, 1, 1)
    measured = torch.full((4, 4), 0.5)
    targets = depth_targets(labels, landmarks, 32, 4, [None, None, measured, measured])
    assert float(targets[[0, 2]].abs().max()) == 0.0
    torch.testing.assert_close(targets[1], pseudo_depth(landmarks[:1], 32, 4)[0])
    torch.testing.assert_close(targets[3], measured)


def test_exception_depth_targets_live_without_landmarks():
    with pytest.raises(ValueError, match="no landmarks"):
        depth_targets(torch.tensor([1, 0]), None, 32, 4)
    with pytest.raises(ValueError, match=r"\(B, 5, 2\)"):
        pseudo_depth(torch.zeros(2, 4, 2), 32, 4)


# --------------------------------------------------------------------------- detector


def test_smoke_scores_are_probabilities(tiny, device):
    detector = tiny.to(device)
    scores = detector.scores(torch.rand(3, 3, 32, 32, device=device))
    assert scores.shape == (3,)
    assert bool(((scores >= 0) & (scores <= 1)).all())
    tiny.to("cpu")


def test_differentiable_scores_match_scores_and_carry_gradients(tiny):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    images.requires_grad_(True)
    scores = tiny.differentiable_scores(images)
    torch.testing.assert_close(scores.detach(), tiny.scores(images.detach()))
    scores.sum().backward()
    assert images.grad is not None and bool(torch.isfinite(images.grad).all())


def test_cpu_forward_runs_channels_last_with_the_plain_layouts_values(tiny):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    depth = tiny(images)
    stem = tiny.network.stem[0].weight
    assert stem.is_contiguous(memory_format=torch.channels_last)
    tiny.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        plain = tiny.network(images * 2 - 1)
    torch.testing.assert_close(depth.detach(), plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.rand(3, 32, 32), "4-D"),
        (torch.rand(2, 1, 32, 32), "3 \\(RGB\\)"),
        (torch.rand(2, 3, 32, 32) * 2, r"\[0, 1\]"),
        (torch.rand(2, 3, 48, 48), r"expects \[B, 3, 32, 32\]"),
    ],
)
def test_exception_scores_rejects_bad_input(tiny, images, match):
    with pytest.raises(ImageBatchError, match=match):
        tiny.scores(images)


def test_exception_cdcn_takes_no_pretrained_weights():
    with pytest.raises(ValueError, match="kind 'cdcn' takes no unet_weights"):
        create_detector("cdcn", unet_weights="x")


def test_save_load_round_trip_gives_identical_scores(tiny, tmp_path):
    path = tmp_path / "cdcn.safetensors"
    save_detector(tiny, path, metadata={"note": "test"})
    loaded = load_detector(path)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.scores(images), tiny.scores(images))
    header = read_detector_header(path)
    assert header["kind"] == "cdcn" and header["metadata"]["note"] == "test"
    assert loaded.config == tiny.config


# --------------------------------------------------------------------------- training


def _save(image: torch.Tensor, path) -> None:
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory):
    """Bundled bona fide faces (4 train, 3 dev subjects) plus one simulated attack each."""
    root = tmp_path_factory.mktemp("cdcn-data")
    bona = read_manifest(bundled_manifest())
    rows = []
    for split, count in (("train", 4), ("dev", 3)):
        part = bona.split(split)
        for k in range(count):
            row = part.frame.iloc[k]
            face = load_image(part.paths[k], size=None)
            points = torch.tensor([float(v) for v in row["landmarks"].split()]).reshape(5, 2)
            attack_type = ("Paper", "Replay")[k % 2]
            attack = simulate_pa(attack_type, face, points, seed=k)
            common = {"split": split, "subject": row["subject"], "landmarks": row["landmarks"]}
            for name, image, label, kind in (
                (f"live_{split}{k}.png", face, 1, "Live"),
                (f"attack_{split}{k}.png", attack, 0, attack_type),
            ):
                _save(image, root / name)
                rows.append({"path": name, "label": label, "attack_type": kind, **common})
    write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    return read_manifest(root / "manifest.csv")


def _train(manifest, out_dir, **kwargs):
    detector = create_detector("cdcn", **TINY)
    result = train_cdcn(
        detector, manifest.split("train"), manifest.split("dev"), out_dir, progress=False, **kwargs
    )
    return detector, result


@pytest.fixture(scope="module")
def reference(small_manifest, tmp_path_factory):
    return _train(small_manifest, tmp_path_factory.mktemp("cdcn-run"), epochs=2)


def test_training_writes_detector_history_and_checkpoint(reference):
    detector, result = reference
    folder = result.detector_path.parent
    assert result.detector_path.is_file() and (folder / "checkpoint.pt").is_file()
    history = pd.read_csv(folder / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert np.isfinite(history["train_loss"]).all()
    assert result.best_dev_eer == pytest.approx(history["dev_eer"].min())
    loaded = load_detector(result.detector_path)
    metadata = loaded.file_metadata
    assert metadata["best_epoch"] == result.best_epoch and metadata["train_samples"] == 8
    assert metadata["depth_supervision"] == {"depth_maps": 0, "pseudo_depth": 4, "attacks": 4}
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded.scores(images), detector.scores(images))


def test_interrupted_run_resumes_to_identical_weights(small_manifest, reference, tmp_path):
    def stop_after_one(epoch):
        if epoch == 1:
            raise SimulatedKillError

    with pytest.raises(SimulatedKillError):
        _train(small_manifest, tmp_path, epochs=2, on_epoch_end=stop_after_one)
    resumed, result = _train(small_manifest, tmp_path, epochs=2)
    reference_detector, reference_result = reference
    assert result.history.equals(reference_result.history)
    for name, tensor in reference_detector.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name


def test_checkpoint_of_another_run_is_refused(small_manifest, reference):
    folder = reference[1].detector_path.parent
    with pytest.raises(CheckpointError, match="different run"):
        _train(small_manifest, folder, epochs=2, seed=5)


def test_depth_column_overrides_pseudo_depth(small_manifest, tmp_path):
    train = small_manifest.split("train")
    Image.fromarray(np.full((16, 16), 255, dtype=np.uint8)).save(tmp_path / "flat.png")
    frame = train.frame.copy()
    frame["depth"] = [str(tmp_path / "flat.png") if i == 0 else "" for i in range(len(frame))]
    with_depth = Manifest.from_frame(frame, train.root)
    supervision = DepthSupervision(with_depth, 32, 4)
    targets = supervision.targets(np.arange(len(frame)))
    live = np.flatnonzero(train.labels == 1)
    assert torch.equal(targets[0], torch.ones(4, 4))
    assert float(targets[live[1]].max()) > 0 and not torch.equal(targets[live[1]], targets[0])
    assert supervision.counts == {"depth_maps": 1, "pseudo_depth": 3, "attacks": 4}


def test_exception_no_depth_and_no_landmarks(small_manifest, tmp_path):
    train = small_manifest.split("train")
    bare = Manifest.from_frame(train.frame.drop(columns="landmarks"), train.root)
    with pytest.raises(ValueError, match="'landmarks' column"):
        train_cdcn(create_detector("cdcn", **TINY), bare, small_manifest.split("dev"), tmp_path)


def test_exception_single_class_split(small_manifest, tmp_path):
    train = small_manifest.split("train")
    live_only = train.filter(train.labels == 1)
    with pytest.raises(ValueError, match="train split needs bona fide and attack"):
        train_cdcn(
            create_detector("cdcn", **TINY), live_only, small_manifest.split("dev"), tmp_path
        )
