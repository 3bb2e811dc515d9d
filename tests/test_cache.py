"""Feature cache: extracted once, reused, keyed by config + weights + image content."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from facecat import create_detector
from facecat.cache import FeatureCache, ImageFiles, feature_key
from facecat.features import flatten_features
from facecat.manifest import read_manifest


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
    with caplog.at_level(logging.INFO, logger="facecat.cache"):
        second = _rows(cache, detector, images)
    assert "feature cache hit" in caplog.text
    assert isinstance(second, np.memmap)
    np.testing.assert_array_equal(first, second)


def test_changed_image_content_gets_a_new_entry(detector, images, tmp_path):
    cache = FeatureCache(tmp_path)
    _rows(cache, detector, images)
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    paths = [shutil.copy(p, copy_dir / p.name) for p in images.paths]
    original = paths[0].read_bytes()
    paths[0].write_bytes(images.paths[1].read_bytes())
    changed = _rows(cache, detector, ImageFiles(paths, 32))
    assert len(list(tmp_path.glob("*/*.npy"))) == 2
    assert not np.array_equal(changed[0], _rows(cache, detector, images)[0])
    assert original != paths[0].read_bytes()


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
    with caplog.at_level(logging.INFO, logger="facecat.cache"):
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
    with caplog.at_level(logging.INFO, logger="facecat.cache"):
        rows("float16")
    assert "feature cache hit" in caplog.text and "rebuilding" not in caplog.text
    assert len(list(tmp_path.glob("*/*.npy"))) == 2
