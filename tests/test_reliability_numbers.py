"""Numbers you can trust: NaN/Inf fail fast naming the batch and file, the same seed gives the
same scores on CPU (also in another process), metrics refuse single-class labels through the
whole pipeline, and caches or checkpoints of changed data are never reused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facecat import create_detector
from facecat.cli import main
from facecat.core.checkpoints import CheckpointError
from facecat.core.images import ImageBatchError, ImageFiles
from facecat.datasets.demo import write_lfw_manifest
from facecat.datasets.manifest import read_manifest
from facecat.evaluation.evaluate import evaluate_detector, score_files
from facecat.evaluation.metrics import MetricsError
from facecat.models.config import TrainConfig
from facecat.models.registry import save_detector
from facecat.training import cache as cache_module
from facecat.training.cache import FeatureCache
from facecat.training.facecat import train_facecat

NO_TEXT = {"text_guided": False}
CDCN = {"image_size": 32, "width": 0.125}
ONE_EPOCH = TrainConfig(epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def lfw(tmp_path_factory) -> Path:
    """18 real LFW faces and simulated attacks at 32x32 (12 train, 3 dev, 3 test)."""
    return write_lfw_manifest(tmp_path_factory.mktemp("lfw"), size=32, faces=6)


def _detector(kind: str):
    return (
        create_detector("facecat-tiny", **NO_TEXT)
        if kind == "facecat"
        else create_detector("cdcn", **CDCN)
    )


def _poison(module: torch.nn.Module, value: float) -> None:
    """Put one non-finite value in the module's first weight (a corrupted parameter)."""
    with torch.no_grad():
        next(p for p in module.parameters() if p.ndim > 1).view(-1)[0] = value


# --------------------------------------------------------------------------- fail fast


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("kind", ["facecat", "cdcn"])
def test_exception_non_finite_input_names_the_batch_index(kind, value):
    images = torch.rand(3, 3, 32, 32)
    images[1, 2, 5, 7] = value
    with pytest.raises(ImageBatchError, match=r"1 non-finite value\(s\).*batch index 1"):
        _detector(kind).scores(images)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_exception_non_finite_features_name_the_images_and_file(lfw, tmp_path, value):
    manifest = read_manifest(lfw)
    detector = create_detector("facecat-tiny", **NO_TEXT)
    _poison(detector.extractor.unet, value)
    with pytest.raises(FloatingPointError, match=r"non-finite features for images 0\.\.3") as err:
        train_facecat(
            detector, manifest.split("train"), manifest.split("dev"), tmp_path, config=ONE_EPOCH
        )
    assert str(manifest.split("train").paths[0]) in str(err.value)
    assert not list(tmp_path.rglob("*.npy"))  # nothing cached from the failed extraction


@pytest.mark.parametrize("kind", ["facecat", "cdcn"])
def test_exception_non_finite_loss_names_the_epoch_and_file(lfw, tmp_path, kind):
    manifest = read_manifest(lfw)
    train, dev = manifest.split("train"), manifest.split("dev")
    detector = _detector(kind)
    if kind == "facecat":
        _poison(detector.trainable_modules(), float("nan"))
        run = lambda: train_facecat(detector, train, dev, tmp_path, config=ONE_EPOCH)  # noqa: E731
    else:
        from facecat.training.cdcn import train_cdcn

        _poison(detector, float("nan"))
        frame = pd.read_csv(lfw, dtype=str, keep_default_na=False)
        frame["landmarks"] = "10 12 22 12 16 17 11 23 21 23"  # pseudo-depth targets
        with_landmarks = lfw.parent / "with-landmarks.csv"
        frame.to_csv(with_landmarks, index=False)
        manifest = read_manifest(with_landmarks)
        train, dev = manifest.split("train"), manifest.split("dev")
        run = lambda: train_cdcn(detector, train, dev, tmp_path, epochs=1)  # noqa: E731
    with pytest.raises(FloatingPointError, match=r"non-finite loss at epoch 1") as err:
        run()
    assert "first file: " + str(manifest.root) in str(err.value)
    assert not (tmp_path / "checkpoint.pt").exists()  # a NaN epoch is never checkpointed


def test_exception_non_finite_scores_name_the_batch_and_file(lfw, tmp_path, capsys):
    manifest = read_manifest(lfw)
    detector = create_detector("facecat-tiny", **NO_TEXT).eval()
    _poison(detector.trainable_modules(), float("nan"))
    with pytest.raises(FloatingPointError, match=r"non-finite score\(s\) in batch 0") as err:
        score_files(detector, manifest.paths[:4], size=32, batch_size=2)
    assert str(manifest.paths[0]) in str(err.value)
    path = tmp_path / "poisoned.safetensors"
    save_detector(detector, path)
    assert main(["score", "--aligned", "--detector", str(path), str(manifest.paths[0])]) == 2
    err = capsys.readouterr().err
    assert "non-finite score" in err and manifest.paths[0].name in err and "Traceback" not in err


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["facecat", "cdcn"])
def test_every_float_input_dtype_scores_like_float32(kind, dtype):
    """check_image_batch accepts any float dtype, so every detector must score it."""
    detector = _detector(kind)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = detector.scores(images)
    scores = detector.scores(images.to(dtype))
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected, atol=2e-2, rtol=0)


# --------------------------------------------------------------------------- determinism


SCORER = textwrap.dedent(
    """
    import hashlib, json, sys
    import torch
    from facecat import create_detector

    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    digests = {}
    for kind, name, overrides in json.loads(sys.argv[1]):
        detector = create_detector(name, seed=3, **overrides)
        scores = detector.scores(images).numpy()
        digests[kind] = hashlib.sha256(scores.tobytes()).hexdigest()
    print(json.dumps(digests))
    """
)
DETECTORS = [("facecat", "facecat-tiny", NO_TEXT), ("cdcn", "cdcn", CDCN)]


def _score_digests() -> dict[str, str]:
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    digests = {}
    for kind, name, overrides in DETECTORS:
        torch.manual_seed(len(digests) + 1000)  # the global RNG state must not matter
        scores = create_detector(name, seed=3, **overrides).scores(images).numpy()
        digests[kind] = hashlib.sha256(scores.tobytes()).hexdigest()
    return digests


def test_same_seed_same_scores_in_this_and_a_fresh_process(tmp_path):
    script = tmp_path / "scorer.py"
    script.write_text(SCORER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen(
        [sys.executable, str(script), json.dumps(DETECTORS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    here, again = _score_digests(), _score_digests()
    out, err = child.communicate(timeout=240)
    assert child.returncode == 0, err[-2000:]
    assert here == again == json.loads(out.strip().splitlines()[-1])


def test_repeated_scoring_is_bitwise_stable_and_ignores_the_global_rng():
    detector = create_detector("facecat-tiny", **NO_TEXT)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    first = detector.scores(images)
    torch.manual_seed(2)
    torch.rand(100)
    assert torch.equal(first, detector.scores(images))


# --------------------------------------------------------------------------- label validation


@pytest.mark.parametrize(("split", "keep"), [("test", 1), ("test", 0), ("dev", 1), ("dev", 0)])
def test_exception_single_class_split_through_eval(lfw, tmp_path, split, keep, capsys):
    """Evaluating on a split with one class is refused with the reason, never a number."""
    frame = pd.read_csv(lfw, dtype=str, keep_default_na=False)
    one_class = (frame["split"] == split) & (frame["label"] != str(keep))
    path = lfw.parent / f"single-{split}-{keep}.csv"
    frame[~one_class].to_csv(path, index=False)
    detector = create_detector("facecat-tiny", **NO_TEXT)
    wanted = "bona fide" if keep == 0 else "attack"
    with pytest.raises(MetricsError, match=rf"at least one {wanted}|both bona fide"):
        evaluate_detector(detector, read_manifest(path), size=32, n_boot=0, progress=False)
    save_detector(detector, tmp_path / "d.safetensors")
    argv = ["eval", "--detector", str(tmp_path / "d.safetensors"), "--manifest", str(path)]
    assert main([*argv, "--out", str(tmp_path / "m.csv"), "--bootstrap", "0", "--quiet"]) == 2
    assert "eval: error:" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


# --------------------------------------------------------------------------- stale caches


def _replace_keeping_mtime(path: Path) -> None:
    """New pixels, same name, same size on disk and the same modification time."""
    stat = path.stat()
    pixels = np.asarray(Image.open(path).convert("RGB")).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_feature_cache_keyed_by_content_not_name_or_mtime(lfw, tmp_path_factory):
    folder = tmp_path_factory.mktemp("copy")
    manifest = read_manifest(write_lfw_manifest(folder, size=32, faces=2))
    detector = create_detector("facecat-tiny", **NO_TEXT)
    cache = FeatureCache(folder / "cache")

    def rows(resize: str = "resize", dtype: str = "float32") -> np.ndarray:
        images = ImageFiles(manifest.paths, 32, resize)
        return np.array(
            cache.features(
                detector.extractor, detector.backbone_digest(), images, progress=False, dtype=dtype
            )
        )

    before = rows()
    _replace_keeping_mtime(manifest.paths[0])
    after = rows()
    assert not np.array_equal(before[0], after[0])  # recomputed from the new pixels
    np.testing.assert_array_equal(before[1:], after[1:])
    half = rows(dtype="float16")
    assert half.dtype == np.float16  # not the float32 entry
    np.testing.assert_allclose(half, after, rtol=1e-2, atol=1e-2)
    again = rows()
    assert again.dtype == np.float32  # not the float16 entry
    np.testing.assert_array_equal(again, after)
    assert rows(resize="center_crop").dtype == np.float32


@pytest.mark.parametrize(
    "change", ["image-replaced-in-place", "row-relabelled", "feature-extractor-version"]
)
def test_checkpoint_of_changed_data_is_not_resumed(lfw, tmp_path_factory, monkeypatch, change):
    folder = tmp_path_factory.mktemp("data")
    path = write_lfw_manifest(folder, size=32, faces=6)
    out = folder / "run"

    def train() -> None:
        manifest = read_manifest(path)
        detector = create_detector("facecat-tiny", **NO_TEXT)
        train_facecat(
            detector, manifest.split("train"), manifest.split("dev"), out, config=ONE_EPOCH
        )

    train()
    if change == "image-replaced-in-place":
        _replace_keeping_mtime(read_manifest(path).split("train").paths[0])
    elif change == "feature-extractor-version":  # a head trained on older features
        monkeypatch.setattr("facecat.training.cache.CACHE_VERSION", cache_module.CACHE_VERSION + 1)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        live = frame.index[(frame["split"] == "train") & (frame["label"] == "1")][0]
        frame.loc[live, ["label", "attack_type"]] = ["0", "Print"]
        frame.to_csv(path, index=False)
    with pytest.raises(CheckpointError, match="different run"):
        train()
