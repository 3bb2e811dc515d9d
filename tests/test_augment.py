"""Degraded copies of training images (JPEG, posterized): content-addressed files, seeded
levels, training use."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from facecat import create_detector
from facecat.core.images import load_image
from facecat.datasets.manifest import Manifest, read_manifest
from facecat.models.config import TrainConfig
from facecat.models.registry import read_detector_header
from facecat.training.augment import jpeg_copies, posterize_copies
from facecat.training.facecat import source_repeats, train_facecat, training_images


@pytest.fixture(scope="module")
def train_split(lfw_manifest):
    return read_manifest(lfw_manifest).split("train")


def test_copies_are_jpegs_of_the_resized_source(train_split, tmp_path) -> None:
    paths = train_split.paths[:3]
    coarse = jpeg_copies(paths, tmp_path, copies=2, quality=(20, 20), size=32)
    fine = jpeg_copies(paths, tmp_path, copies=1, quality=(90, 90), size=32)
    assert len(coarse) == 6 and len(fine) == 3
    assert coarse[:3] == coarse[3:]  # one quality: the second copy is the same file
    for source, low, high in zip(paths, coarse[:3], fine, strict=True):
        with Image.open(low) as image:
            assert image.format == "JPEG" and image.size == (32, 32)
        original = load_image(source, size=32)
        errors = [(original - load_image(p, size=32)).abs().mean().item() for p in (low, high)]
        assert 0 < errors[1] < errors[0]  # compressed, harder at the lower quality


def test_qualities_follow_the_seed_and_files_are_reused(train_split, tmp_path) -> None:
    paths = train_split.paths[:8]
    first = jpeg_copies(paths, tmp_path, copies=1, quality=(5, 90), size=32, seed=3)
    stamps = [p.stat().st_mtime_ns for p in first]
    again = jpeg_copies(paths, tmp_path, copies=1, quality=(5, 90), size=32, seed=3)
    assert again == first
    assert [p.stat().st_mtime_ns for p in again] == stamps
    other = jpeg_copies(paths, tmp_path, copies=1, quality=(5, 90), size=32, seed=4)
    assert other != first
    sizes = {len(p.read_bytes()) for p in first}
    assert len(sizes) > 1  # different qualities give different files


@pytest.mark.parametrize(
    ("copies", "quality"), [(1, (0, 50)), (1, (60, 50)), (1, (10, 99)), (-1, (10, 50))]
)
def test_bad_settings_are_refused(train_split, tmp_path, copies, quality) -> None:
    with pytest.raises(ValueError, match="jpeg"):
        jpeg_copies(train_split.paths[:1], tmp_path, copies=copies, quality=quality, size=32)
    with pytest.raises(ValueError, match="jpeg"):
        TrainConfig(jpeg_copies=copies, jpeg_quality=quality)


def test_posterized_copies_equal_pillow_posterize_of_the_resized_source(
    train_split, tmp_path
) -> None:
    paths = train_split.paths[:3]
    copies = posterize_copies(paths, tmp_path, copies=1, bits=(3, 3), size=32)
    assert len(copies) == 3
    for source, copy in zip(paths, copies, strict=True):
        resized = (load_image(source, size=32).permute(1, 2, 0) * 255).round().byte().numpy()
        expected = np.asarray(ImageOps.posterize(Image.fromarray(resized), 3))
        with Image.open(copy) as image:
            assert image.format == "PNG"
            written = np.asarray(image.convert("RGB"))
        np.testing.assert_array_equal(written, expected)
        assert len(np.unique(written)) <= 8  # 3 bits: at most 8 levels per channel


def test_posterize_bits_follow_the_seed_apart_from_the_jpeg_draws(train_split, tmp_path) -> None:
    paths = train_split.paths[:8]
    first = posterize_copies(paths, tmp_path, copies=1, bits=(1, 8), size=32, seed=3)
    assert posterize_copies(paths, tmp_path, copies=1, bits=(1, 8), size=32, seed=3) == first
    assert posterize_copies(paths, tmp_path, copies=1, bits=(1, 8), size=32, seed=4) != first
    levels = [len(np.unique(np.asarray(Image.open(p)))) for p in first]
    assert len(set(levels)) > 1  # different bit depths drawn per image


@pytest.mark.parametrize(("copies", "bits"), [(1, (0, 4)), (1, (5, 4)), (1, (2, 9)), (-1, (2, 6))])
def test_bad_posterize_settings_are_refused(train_split, tmp_path, copies, bits) -> None:
    with pytest.raises(ValueError, match="posterize"):
        posterize_copies(train_split.paths[:1], tmp_path, copies=copies, bits=bits, size=32)
    with pytest.raises(ValueError, match="posterize"):
        TrainConfig(posterize_copies=copies, posterize_bits=bits)


def test_training_adds_the_copies_to_the_train_split(lfw_manifest, tmp_path) -> None:
    manifest = read_manifest(lfw_manifest)
    train, dev = manifest.split("train"), manifest.split("dev")
    detector = create_detector("facecat-tiny", text_guided=False, unet_weights="random")
    config = TrainConfig(epochs=1, batch_size=16, jpeg_copies=1, jpeg_quality=(10, 30))
    result = train_facecat(
        detector,
        train,
        dev,
        tmp_path / "run",
        config=config,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert read_detector_header(result.detector_path)["metadata"]["train_samples"] == 2 * len(train)
    written = sorted((tmp_path / "cache" / "jpeg-copies").glob("*.jpg"))
    assert len(written) == len(train)
    assert all(Image.open(io.BytesIO(p.read_bytes())).format == "JPEG" for p in written)
    assert np.isfinite(result.history["train_loss"]).all()


def test_rare_sources_are_repeated_up_to_the_minimum(train_split, tmp_path) -> None:
    assert source_repeats(np.array(["a", "a", "a", "b"]), 2).tolist() == [0, 1, 2, 3, 3]
    assert source_repeats(np.array(["a", "b"]), 0).tolist() == [0, 1]
    frame = train_split.frame.copy()
    frame["source"] = ["photo" if i < 2 else "generated" for i in range(len(frame))]
    manifest = Manifest.from_frame(frame, train_split.root)
    config = TrainConfig(min_source_rows=7, jpeg_copies=1, posterize_copies=1)
    paths, labels = training_images(manifest, config, tmp_path, size=32, seed=0)
    photos = [Path(p).stem for p in manifest.paths[:2]]
    stems = [Path(p).stem for p in paths]
    assert sum(stems.count(s) for s in photos) == 8  # ceil(7 / 2) = 4 times each
    assert len(paths) == len(labels) == 3 * (len(frame) + 6)  # original, JPEG, posterized
    posterized = sum(Path(p).parent.name == "posterize-copies" for p in paths)
    assert posterized == sum(Path(p).suffix == ".jpg" for p in paths) == len(frame) + 6
    assert labels.tolist().count(int(manifest.labels[0])) >= 8


def test_without_a_source_column_nothing_is_repeated(train_split, tmp_path) -> None:
    frame = train_split.frame.drop(columns=["source"], errors="ignore")
    manifest = Manifest.from_frame(frame, train_split.root)
    paths, labels = training_images(manifest, TrainConfig(min_source_rows=500), tmp_path, 32, 0)
    assert paths == list(manifest.paths) and labels.tolist() == manifest.labels.tolist()
    with pytest.raises(ValueError, match="min_source_rows"):
        TrainConfig(min_source_rows=-1)
