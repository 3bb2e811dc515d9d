"""Feature cache: extracted once, reused, keyed by config + weights + image content."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from facecat import create_detector
from facecat.core.images import ImageFiles
from facecat.datasets.manifest import read_manifest
from facecat.models.features import flatten_features
from facecat.training.cache import FeatureCache, feature_key


@pytest.fixture(scope="module")
def detector():
    return create_detector("facecat-tiny")


@pytest.fixture
def images(lfw_manifest):
    return ImageFiles(read_manifest(lfw_manifest).split("dev").paths[:12], 32)


def _rows(cache, detector, images):
    return cache.features(
        detector.extractor, detector.backbone_digest(), images, batch_size=5, progress=False
    )


def test_cached_rows_equal_direct_extraction(detector, images, tmp_path):
    rows = _rows(FeatureCache(tmp_path), detector, images)
    batch = torch.stack([images[i] for i in range(len(images))])
    direct = flatten_features(detector.extractor(batch)).numpy()
    assert rows.shape == direct.shape
    np.testing.assert_allclose(rows, direct, rtol=1e-5, atol=1e-5)


def test_second_call_is_a_hit_and_memory_mapped(detector, images, tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    first = np.array(_rows(cache, detector, images))
    with caplog.at_level(logging.INFO, logger="facecat.training.cache"):
        second = _rows(cache, detector, images)
    assert "feature cache hit" in caplog.text
    assert isinstance(second, np.memmap)
    np.testing.assert_array_equal(first, second)


def test_changed_image_content_is_not_served_the_old_rows(detector, images, tmp_path):
    cache = FeatureCache(tmp_path)
    first = np.array(_rows(cache, detector, images))
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    paths = [shutil.copy(p, copy_dir / p.name) for p in images.paths]
    paths[0].write_bytes(images.paths[1].read_bytes())
    changed = _rows(cache, detector, ImageFiles(paths, 32))
    np.testing.assert_array_equal(changed[0], first[1])  # the rows of the content it now has
    assert not np.array_equal(changed[0], first[0])
    paths[0].write_bytes(b"\x89PNG" + images.paths[0].read_bytes()[4:] + b"x")  # new bytes
    extended = _rows(cache, detector, ImageFiles(paths, 32))
    assert len(list(tmp_path.glob("*/*.npy"))) == 2
    np.testing.assert_allclose(extended[0], first[0], rtol=1e-5, atol=1e-5)


def test_changed_weights_or_config_change_the_key(detector):
    other_seed = create_detector("facecat-tiny", features={"noise_seed": 1})
    key = feature_key(detector.extractor, detector.backbone_digest())
    assert key != feature_key(other_seed.extractor, other_seed.backbone_digest())
    assert key != feature_key(detector.extractor, "0" * 64)


@pytest.mark.parametrize("damage", ["truncate", "meta"])
def test_damaged_entry_is_rebuilt_not_reused(detector, images, tmp_path, damage, caplog):
    cache = FeatureCache(tmp_path)
    good = np.array(_rows(cache, detector, images))
    (data,) = tmp_path.glob("*/*.npy")
    (meta,) = tmp_path.glob("*/*.json")
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    else:
        meta.write_text(meta.read_text().replace('"float32"', '"float16"'))
    with caplog.at_level(logging.INFO, logger="facecat.training.cache"):
        rebuilt = _rows(cache, detector, images)
    assert "feature cache hit" not in caplog.text
    np.testing.assert_array_equal(good, rebuilt)


def test_float16_and_float32_entries_coexist(detector, images, tmp_path, caplog):
    cache = FeatureCache(tmp_path)

    def rows(dtype):
        return cache.features(
            detector.extractor, detector.backbone_digest(), images, progress=False, dtype=dtype
        )

    half, full = np.array(rows("float16")), np.array(rows("float32"))
    assert half.dtype == np.float16 and full.dtype == np.float32
    np.testing.assert_allclose(half, full, rtol=1e-2, atol=1e-3)
    with caplog.at_level(logging.INFO, logger="facecat.training.cache"):
        rows("float16")
    assert "feature cache hit" in caplog.text and "rebuilding" not in caplog.text
    assert len(list(tmp_path.glob("*/*.npy"))) == 2


def test_subset_of_cached_images_is_assembled_without_extracting(
    detector, images, tmp_path, caplog
):
    cache = FeatureCache(tmp_path)
    full = np.array(_rows(cache, detector, images))
    chosen = [7, 2, 11, 2]
    subset = ImageFiles([images.paths[i] for i in chosen], images.size)
    with caplog.at_level(logging.INFO, logger="facecat.training.cache"):
        rows = _rows(cache, detector, subset)
    assert "assembled from cached rows" in caplog.text and "extracting" not in caplog.text
    np.testing.assert_array_equal(rows, full[chosen])
    assert len(list(tmp_path.glob("*/*.npy"))) == 1


def test_partly_cached_list_extracts_only_the_new_images(detector, images, tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    first = ImageFiles(images.paths[:8], images.size)
    _rows(cache, detector, first)
    mixed = ImageFiles(images.paths[4:], images.size)
    with caplog.at_level(logging.INFO, logger="facecat.training.cache"):
        rows = np.array(_rows(cache, detector, mixed))
    assert "extracting features of 4 of 8 images" in caplog.text
    batch = torch.stack([mixed[i] for i in range(len(mixed))])
    direct = flatten_features(detector.extractor(batch)).numpy()
    np.testing.assert_allclose(rows, direct, rtol=1e-5, atol=1e-5)
    with caplog.at_level(logging.INFO, logger="facecat.training.cache"):
        np.testing.assert_array_equal(_rows(cache, detector, mixed), rows)
    assert "feature cache hit" in caplog.text


def test_repeated_files_are_extracted_once(detector, images, tmp_path, caplog):
    repeated = ImageFiles([*images.paths[:3], images.paths[0], images.paths[2]], images.size)
    with caplog.at_level(logging.INFO, logger="facecat.training.cache"):
        rows = np.array(_rows(FeatureCache(tmp_path), detector, repeated))
    assert "extracting features of 3 of 5 images" in caplog.text
    assert "2 repeated files" in caplog.text
    np.testing.assert_array_equal(rows[3], rows[0])
    np.testing.assert_array_equal(rows[4], rows[2])
    batch = torch.stack([repeated[i] for i in range(3)])
    direct = flatten_features(detector.extractor(batch)).numpy()
    np.testing.assert_allclose(rows[:3], direct, rtol=1e-5, atol=1e-5)


def test_damaged_entry_lends_no_rows(detector, images, tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    good = np.array(_rows(cache, detector, images))
    (data,) = tmp_path.glob("*/*.npy")
    damaged = np.load(data)
    damaged[:] = 0
    np.save(data, damaged)
    subset = ImageFiles(images.paths[:3], images.size)
    with caplog.at_level(logging.INFO, logger="facecat.training.cache"):
        rows = _rows(cache, detector, subset)
    assert "content changed" in caplog.text and "extracting features of 3 of 3" in caplog.text
    np.testing.assert_allclose(rows, good[:3], rtol=1e-5, atol=1e-5)
