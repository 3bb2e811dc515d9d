"""Untrusted files: no code runs from a file, manifest paths stay in their root, decompression
bombs are refused, and corrupted or truncated files give one clear error naming the file.

Every malicious file here carries a real pickle payload that creates a marker file when
unpickled; a loader passes only if it refuses the file *and* the marker never appears.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facecat import create_detector, load_detector
from facecat.cli import main
from facecat.core.checkpoints import CheckpointError, load_state_dict_file, load_training_state
from facecat.core.images import (
    MAX_PIXELS_ENV,
    ImageFiles,
    ImageLoadError,
    default_max_pixels,
    load_image,
)
from facecat.datasets.crop import crop_faces
from facecat.datasets.demo import write_lfw_manifest
from facecat.datasets.manifest import ManifestError, read_manifest
from facecat.datasets.protocol import build_key
from facecat.models.registry import save_detector
from facecat.training.cache import FeatureCache

# --------------------------------------------------------------------------- malicious pickles


class _Exploit:
    """Unpickling this object calls ``open(marker, "w")``: any code execution leaves a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _torch_zip(path: Path, marker: Path) -> Path:
    torch.save({"model": {"weight": torch.zeros(2)}, "evil": _Exploit(marker)}, path)
    return path


def _raw_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"weight": _Exploit(marker)}, protocol=2))
    return path


MALICIOUS_FORMATS = {"torch-zip": _torch_zip, "raw-pickle": _raw_pickle}


def test_exploit_really_runs_code_when_unpickled(tmp_path):
    """The payload is live: plain pickle (what weights_only=False does) creates the marker."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Exploit(marker)))  # the point of the test
    assert marker.exists()


def _load_training_checkpoint(path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    load_training_state(path, "key", model, torch.optim.SGD(model.parameters(), lr=0.1))


def _pretrain_resume(path: Path) -> None:
    from facecat.models.unet import UNetConfig
    from facecat.training.pretrain import PretrainConfig, pretrain_fdm

    unet = UNetConfig(
        image_size=32,
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(16,),
        num_head_channels=32,
    )
    pretrain_fdm(unet, path.parent, PretrainConfig(steps=1, batch_size=2), progress=False)


def _dcgan(path: Path) -> None:
    from facecat.datasets.dcgan import load_generator

    load_generator(path)


LOADERS: dict[str, tuple[str, Callable[[Path], None], type[Exception]]] = {
    "state-dict-file": ("weights.pt", lambda p: load_state_dict_file(p, what="x"), CheckpointError),
    "unet-weights": (
        "unet.bin",
        lambda p: create_detector("facecat-tiny", unet_weights=p),
        CheckpointError,
    ),
    "resnet-weights": (
        "resnet18.pth",
        lambda p: create_detector("facecat-tiny", resnet_weights=p),
        CheckpointError,
    ),
    "training-resume": ("checkpoint.pt", _load_training_checkpoint, CheckpointError),
    "pretrain-resume": ("fdm-checkpoint.pt", _pretrain_resume, CheckpointError),
    "dcgan-weights": ("weights.tar", _dcgan, CheckpointError),
    "detector-file": ("detector.safetensors", load_detector, CheckpointError),
}


@pytest.mark.parametrize("fmt", sorted(MALICIOUS_FORMATS))
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_exception_malicious_pickle_refused_without_running(tmp_path, loader, fmt):
    name, load, error = LOADERS[loader]
    marker = tmp_path / "pwned"
    path = MALICIOUS_FORMATS[fmt](tmp_path / name, marker)
    with pytest.raises(error) as caught:
        load(path)
    assert path.name in str(caught.value)
    assert not marker.exists(), "unpickling ran code from the file"


@pytest.mark.parametrize("command", ["info", "score", "eval"])
def test_exception_cli_refuses_malicious_detector_in_one_line(tmp_path, command, capsys):
    marker = tmp_path / "pwned"
    path = _torch_zip(tmp_path / "detector.safetensors", marker)
    argv = {
        "info": ["info", str(path)],
        "score": ["score", "--detector", str(path), str(tmp_path)],
        "eval": ["eval", "--detector", str(path), "--manifest", "m.csv", "--out", "o.csv"],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "detector.safetensors" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists()


# --------------------------------------------------------------------------- manifest paths


def _face(path: Path, side: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), 128, np.uint8)).save(path)
    return path


def _manifest(root: Path, first_path: str) -> Path:
    """A valid 4-row manifest in ``root`` whose first row points at ``first_path``."""
    for name in ("b.png", "c.png", "d.png"):
        _face(root / name)
    frame = pd.DataFrame(
        {
            "path": [first_path, "b.png", "c.png", "d.png"],
            "label": [1, 0, 1, 0],
            "attack_type": ["Live", "Print", "Live", "Print"],
            "split": ["train", "train", "dev", "dev"],
            "subject": ["s0", "s1", "s2", "s3"],
        }
    )
    path = root / "manifest.csv"
    frame.to_csv(path, index=False)
    return path


def _escape_case(tmp_path: Path, case: str) -> tuple[Path, Path]:
    """(manifest, outside file) for one way of pointing outside the manifest's folder."""
    root = tmp_path / "root"
    outside = _face(tmp_path / "outside" / "secret.png")
    if case == "dotdot":
        entry = "../outside/secret.png"
    elif case == "nested-dotdot":
        (root / "sub").mkdir(parents=True)
        entry = "sub/../../outside/secret.png"
    elif case == "dot-slash-dotdot":
        entry = "./../outside/secret.png"
    elif case == "absolute":
        entry = str(outside)
    elif case == "symlinked-file":
        root.mkdir(parents=True)
        (root / "link.png").symlink_to(outside)
        entry = "link.png"
    elif case == "symlinked-folder":
        root.mkdir(parents=True)
        (root / "faces").symlink_to(outside.parent, target_is_directory=True)
        entry = "faces/secret.png"
    else:  # pragma: no cover
        raise AssertionError(case)
    return _manifest(root, entry), outside


ESCAPES = [
    "dotdot",
    "nested-dotdot",
    "dot-slash-dotdot",
    "absolute",
    "symlinked-file",
    "symlinked-folder",
]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
@pytest.mark.parametrize("case", ESCAPES)
def test_exception_manifest_path_cannot_escape_root_unless_allowed(tmp_path, case):
    path, outside = _escape_case(tmp_path, case)
    with pytest.raises(ManifestError, match=r"row 1 \(line 2\), column 'path'") as caught:
        read_manifest(path)
    assert "allow_outside_root=True" in str(caught.value)
    allowed = read_manifest(path, allow_outside_root=True)
    assert allowed.paths[0].resolve() == outside.resolve()


def test_paths_that_stay_inside_the_root_are_accepted(tmp_path):
    root = tmp_path / "root"
    _face(root / "sub" / "a.png")
    (root / "inner").mkdir()
    (root / "inner" / "alias.png").symlink_to(root / "sub" / "a.png")
    manifest = read_manifest(_manifest(root, "sub/../sub/./a.png"))
    assert manifest.paths[0] == root / "sub" / "a.png"
    assert len(read_manifest(_manifest(root, "inner/alias.png"))) == 4


def test_exception_cli_eval_refuses_escaping_manifest_in_one_line(tmp_path, capsys):
    path, _ = _escape_case(tmp_path, "dotdot")
    trained = tmp_path / "detector.safetensors"
    save_detector(create_detector("facecat-tiny"), trained)
    argv = ["eval", "--detector", str(trained), "--manifest", str(path), "--out", "o.csv"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "leaves the manifest's folder" in err and "Traceback" not in err


def test_exception_protocol_key_validates_manifest_before_reading_files(tmp_path):
    """Building the protocol hashes the image files: only after the paths were checked."""
    path, _ = _escape_case(tmp_path, "absolute")
    with pytest.raises(ManifestError, match="absolute path"):
        build_key(path, 0, {})


# --------------------------------------------------------------------------- bombs and limits


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(info), 0, 0, 54) + info


def _gif_header(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)  # logical screen size
    return bytes(data)


def _jpeg_header(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


BOMBS = {"png": _png_header, "bmp": _bmp_header, "gif": _gif_header, "jpg": _jpeg_header}


@pytest.mark.parametrize("fmt", sorted(BOMBS))
def test_exception_decompression_bomb_refused_from_header(tmp_path, fmt):
    """A tiny file declaring a 60000x60000 image is refused before any pixel is decoded."""
    path = tmp_path / f"bomb.{fmt}"
    path.write_bytes(BOMBS[fmt](60_000, 60_000))
    assert path.stat().st_size < 1000
    with pytest.raises(ImageLoadError, match=rf"bomb\.{fmt}: .*decompression bomb"):
        load_image(path, size=8)


def test_max_pixels_configurable_through_the_environment(tmp_path, monkeypatch):
    path = _face(tmp_path / "face.png", side=40)
    assert load_image(path, size=8).shape == (3, 8, 8)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    assert default_max_pixels() == 1000
    with pytest.raises(
        ImageLoadError, match=rf"1600 pixels exceeds max_pixels=1000.*{MAX_PIXELS_ENV}"
    ):
        load_image(path, size=8)
    assert load_image(path, size=8, max_pixels=1600).shape == (3, 8, 8)  # explicit wins
    with pytest.raises(ImageLoadError, match=r"face\.png"):
        ImageFiles([path], 8)[0]  # the cache and the CLI read images the same way
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=rf"{MAX_PIXELS_ENV}='lots' must be a positive integer"):
        load_image(path, size=8)


def test_exception_cli_score_refuses_bomb_in_one_line(tmp_path, capsys):
    detector = tmp_path / "detector.safetensors"
    save_detector(create_detector("facecat-tiny"), detector)
    bomb = tmp_path / "images" / "bomb.png"
    bomb.parent.mkdir()
    bomb.write_bytes(_png_header(30_000, 30_000))
    assert main(["score", "--detector", str(detector), str(bomb.parent)]) == 2
    err = capsys.readouterr().err
    assert "bomb.png" in err and "decompression bomb" in err and "Traceback" not in err


# --------------------------------------------------------------------------- corrupted files


def _png_bytes(side: int = 16) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


IMAGE_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",
    "truncated-half": lambda data: data[: len(data) // 2],
    "header-only": lambda data: data[:33],
    "html-renamed": lambda data: b"<html><body>not an image</body></html>",
    "flipped-idat": lambda data: data[:60] + bytes(b ^ 0xFF for b in data[60:90]) + data[90:],
}


@pytest.mark.parametrize("damage", sorted(IMAGE_DAMAGE))
def test_exception_corrupted_image_one_error_naming_file(tmp_path, damage):
    path = tmp_path / f"{damage}.png"
    path.write_bytes(IMAGE_DAMAGE[damage](_png_bytes()))
    with pytest.raises(ImageLoadError) as caught:
        load_image(path, size=8)
    assert str(path) in str(caught.value)


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory) -> bytes:
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(4):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def face_detector():
    pytest.importorskip("facenet_pytorch")
    from facecat.core.landmarks import FaceDetector

    return FaceDetector(upsample=1)


VIDEO_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",
    "truncated-half": lambda data: data[: len(data) // 2],
    "garbage": lambda data: os.urandom(2000),
}


@pytest.mark.parametrize("damage", sorted(VIDEO_DAMAGE))
def test_exception_corrupted_video_one_error_naming_file(
    tmp_path, video_bytes, face_detector, damage
):
    path = tmp_path / f"{damage}.mp4"
    path.write_bytes(VIDEO_DAMAGE[damage](video_bytes))
    with pytest.raises(ImageLoadError, match=rf"{damage}\.mp4: cannot decode video"):
        crop_faces([path], tmp_path / "out", detector=face_detector)
    assert not (tmp_path / "out" / "crops.csv").exists()  # no partial table left behind


def test_exception_huge_video_frames_refused(tmp_path, video_bytes, face_detector, monkeypatch):
    path = tmp_path / "clip.mp4"
    path.write_bytes(video_bytes)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(ImageLoadError, match=r"clip\.mp4: 64x64 video frames exceed max_pixels"):
        crop_faces([path], tmp_path / "out", detector=face_detector)


def _training_checkpoint(path: Path) -> Path:
    from facecat.core.checkpoints import save_training_state

    model = torch.nn.Linear(2, 2)
    state = {"epoch": 1, "best_epoch": 1, "best_eer": 0.5, "best_model": None, "history": []}
    save_training_state(path, "key", state, model, torch.optim.SGD(model.parameters(), lr=0.1))
    return path


CHECKPOINT_DAMAGE: dict[str, Callable[[Path], None]] = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "random-bytes": lambda p: p.write_bytes(os.urandom(4096)),
    "plain-tensor": lambda p: torch.save(torch.zeros(3), p),
    "other-dict": lambda p: torch.save({"weights": torch.zeros(3)}, p),
}


@pytest.mark.parametrize("damage", sorted(CHECKPOINT_DAMAGE))
def test_exception_corrupted_training_checkpoint_names_file(tmp_path, damage):
    path = _training_checkpoint(tmp_path / "checkpoint.pt")
    _load_training_checkpoint(path)  # intact: loads
    CHECKPOINT_DAMAGE[damage](path)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt.*delete it to start over"):
        _load_training_checkpoint(path)


@pytest.mark.parametrize("damage", ["empty", "truncated", "random-bytes"])
def test_exception_corrupted_unet_weights_name_file(tmp_path, damage):
    import safetensors.torch

    detector = create_detector("facecat-tiny")
    path = tmp_path / "unet.safetensors"
    safetensors.torch.save_file(detector.extractor.unet.state_dict(), str(path))
    create_detector("facecat-tiny", unet_weights=path)  # intact: loads strictly
    CHECKPOINT_DAMAGE[damage](path)
    with pytest.raises(CheckpointError, match=r"unet\.safetensors"):
        create_detector("facecat-tiny", unet_weights=path)


# --------------------------------------------------------------------------- cache files


@pytest.fixture(scope="module")
def cache_setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache-images")
    manifest = read_manifest(write_lfw_manifest(folder, size=32, faces=2))
    detector = create_detector("facecat-tiny")
    return detector, ImageFiles(manifest.paths, 32)


def _cache_rows(cache: FeatureCache, detector, images) -> np.ndarray:
    return np.array(
        cache.features(detector.extractor, detector.backbone_digest(), images, progress=False)
    )


def _object_npy(data: Path, marker: Path) -> None:
    np.save(data, np.array([_Exploit(marker)], dtype=object), allow_pickle=True)


def _flip_last_bytes(data: Path) -> None:
    """Same size, same header, different numbers (bit rot or an edit in place)."""
    raw = bytearray(data.read_bytes())
    raw[-8:] = bytes(b ^ 0x5A for b in raw[-8:])
    data.write_bytes(bytes(raw))


def _nan_in_place(data: Path) -> None:
    rows = np.load(data, mmap_mode="r+")
    rows[0, 0] = np.nan
    rows.flush()
    del rows


CACHE_DAMAGE: dict[str, Callable[[Path, Path, Path], None]] = {
    "data-bytes-flipped-same-size": lambda data, meta, marker: _flip_last_bytes(data),
    "data-nan-written-in-place": lambda data, meta, marker: _nan_in_place(data),
    "data-empty": lambda data, meta, marker: data.write_bytes(b""),
    "data-garbage": lambda data, meta, marker: data.write_bytes(os.urandom(512)),
    "data-pickled-objects": lambda data, meta, marker: _object_npy(data, marker),
    "data-missing": lambda data, meta, marker: data.unlink(),
    "meta-garbage": lambda data, meta, marker: meta.write_bytes(b"\x00{not json"),
    "meta-other-key": lambda data, meta, marker: meta.write_text(
        json.dumps({**json.loads(meta.read_text()), "images_key": "0" * 64})
    ),
    "meta-missing": lambda data, meta, marker: meta.unlink(),
    "meta-not-a-dict": lambda data, meta, marker: meta.write_text("[1, 2]"),
}


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGE))
def test_damaged_cache_entry_rebuilt_without_unpickling(tmp_path, cache_setup, damage):
    detector, images = cache_setup
    cache = FeatureCache(tmp_path / "cache")
    good = _cache_rows(cache, detector, images)
    (data,) = (tmp_path / "cache").glob("*/*.npy")
    (meta,) = (tmp_path / "cache").glob("*/*.json")
    marker = tmp_path / "pwned"
    CACHE_DAMAGE[damage](data, meta, marker)
    np.testing.assert_array_equal(_cache_rows(cache, detector, images), good)
    assert not marker.exists()
    assert json.loads(meta.read_text())["images_key"] != "0" * 64
