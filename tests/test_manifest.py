"""Tests of facecat.datasets.manifest: manifest validation, image loading, batch checks."""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import facecat.core.images as image_io
from facecat.core.images import (
    ImageBatchError,
    ImageLoadError,
    ImageLoadWarning,
    check_image_batch,
    load_image,
    load_images,
)
from facecat.datasets.manifest import (
    BONA_FIDE,
    Manifest,
    ManifestError,
    check_landmarks,
    read_manifest,
    write_manifest,
)

LANDMARKS = "10 12 22 12 16 18 11 24 21 24"


def save_image(path: Path, size: tuple[int, int] = (32, 32), mode: str = "RGB") -> Path:
    """Write a small noise image of the given (width, height) and PIL mode."""
    rng = np.random.default_rng(0)
    width, height = size
    if mode == "I;16":
        data = rng.integers(0, 65536, (height, width), dtype=np.uint16)
        image = Image.fromarray(data)  # uint16 -> mode I;16
    else:
        data = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        image = Image.fromarray(data, mode="RGBA").convert(mode)
    image.save(path)
    return path


def base_frame(root: Path, n: int = 4) -> pd.DataFrame:
    """A valid manifest frame over n images written into root."""
    rows = []
    for i in range(n):
        name = f"img{i}.png"
        save_image(root / name)
        live = i % 2 == 0
        rows.append(
            {
                "path": name,
                "label": int(live),
                "attack_type": BONA_FIDE if live else "Print",
                "split": ["train", "dev", "test", "train"][i % 4],
                "subject": f"s{i}",
                "landmarks": LANDMARKS,
                "camera": f"cam{i}",
            }
        )
    return pd.DataFrame(rows)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def frame(tmp_path: Path) -> pd.DataFrame:
    return base_frame(tmp_path)


# --------------------------------------------------------------------------- manifest


def test_round_trip(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "manifest.csv"
    write_manifest(frame, path)
    manifest = read_manifest(path)
    assert len(manifest) == 4
    assert manifest.paths == [tmp_path / f"img{i}.png" for i in range(4)]
    assert all(p.is_absolute() for p in manifest.paths)
    np.testing.assert_array_equal(manifest.labels, [1, 0, 1, 0])
    assert manifest.labels.dtype == np.int64
    assert list(manifest.attack_types) == ["Live", "Print", "Live", "Print"]
    assert list(manifest.subjects) == ["s0", "s1", "s2", "s3"]
    assert list(manifest.frame["camera"]) == ["cam0", "cam1", "cam2", "cam3"]  # extra kept
    landmarks = manifest.landmarks
    assert landmarks is not None and landmarks.shape == (4, 5, 2)
    assert landmarks.dtype == np.float32
    np.testing.assert_allclose(landmarks[0, 2], [16, 18])

    again = tmp_path / "again.csv"
    write_manifest(manifest, again)
    assert again.read_text() == path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


def test_write_manifest_elsewhere_rewrites_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_manifest(base_frame(data), data / "m.csv")
    manifest = read_manifest(data / "m.csv")
    write_manifest(manifest, tmp_path / "top.csv")
    moved = read_manifest(tmp_path / "top.csv")
    assert moved.paths == manifest.paths
    assert list(moved.frame["path"]) == [f"data/img{i}.png" for i in range(4)]


def test_write_manifest_is_atomic_on_failure(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = write_csv(frame, tmp_path / "m.csv")
    before = path.read_text()
    with pytest.raises(ManifestError, match=r"row 2, column 'label'"):
        write_manifest(frame.assign(label=[1, 5, 1, 0]), path)
    assert path.read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_no_landmarks_column(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = write_csv(frame.drop(columns="landmarks"), tmp_path / "m.csv")
    manifest = read_manifest(path)
    assert manifest.landmarks is None
    check_landmarks(manifest)  # nothing to check


def _set(column: str, row: int, value: object):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object})
        frame.loc[row - 1, column] = value
        return frame

    return edit


INVALID = {
    "missing_file": (_set("path", 3, "nope.png"), r"row 3 \(line 4\), column 'path'.*nope\.png"),
    "label_2": (_set("label", 2, 2), r"row 2 \(line 3\), column 'label': label '2' is not 0 or 1"),
    "label_text": (_set("label", 4, "x"), r"row 4 \(line 5\), column 'label'.*'x'"),
    "live_with_attack_type": (
        _set("attack_type", 1, "Print"),
        r"row 1 \(line 2\), column 'attack_type': label 1 .*requires attack_type 'Live'",
    ),
    "attack_with_live": (
        _set("attack_type", 2, "Live"),
        r"row 2 \(line 3\), column 'attack_type': label 0 \(attack\) with attack_type 'Live'",
    ),
    "empty_attack_type": (_set("attack_type", 2, ""), r"row 2 .*'attack_type': empty"),
    "unknown_split": (_set("split", 3, "val"), r"row 3 \(line 4\), column 'split'.*'val'"),
    "empty_subject": (_set("subject", 2, ""), r"row 2 \(line 3\), column 'subject'"),
    "duplicate_path": (
        _set("path", 4, "./img1.png"),
        r"row 4 \(line 5\), column 'path': duplicate path.*rows 2, 4",
    ),
    "subject_leakage": (
        _set("subject", 2, "s0"),
        r"subject leakage.*subject 's0' appears in 2 splits: train \(row 1\), dev \(row 2\)",
    ),
    "landmarks_short": (
        _set("landmarks", 3, "1 2 3 4 5 6 7 8 9"),
        r"row 3 \(line 4\), column 'landmarks': expected 10 numbers.*got 9",
    ),
    "landmarks_text": (
        _set("landmarks", 1, "1 2 3 4 5 6 7 8 9 eye"),
        r"row 1 \(line 2\), column 'landmarks'.*not a number",
    ),
    "landmarks_nan": (
        _set("landmarks", 1, "1 2 3 4 5 6 7 8 9 nan"),
        r"row 1 \(line 2\), column 'landmarks'.*non-finite",
    ),
    "absolute_path": (_set("path", 2, "/etc/passwd"), r"row 2 .*column 'path': absolute path"),
    "dotdot_path": (
        _set("path", 2, "../outside.png"),
        r"row 2 \(line 3\), column 'path'.*leaves the manifest's folder",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_validation_errors(tmp_path: Path, frame: pd.DataFrame, case: str) -> None:
    edit, pattern = INVALID[case]
    path = write_csv(edit(frame), tmp_path / "m.csv")
    with pytest.raises(ManifestError, match=re.escape(str(path)) + ".*" + pattern):
        read_manifest(path)


def test_missing_columns(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = write_csv(frame.drop(columns=["split", "subject"]), tmp_path / "m.csv")
    with pytest.raises(
        ManifestError, match=r"missing required column\(s\) \['split', 'subject'\]; found columns"
    ):
        read_manifest(path)


def test_empty_and_missing_manifest(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = write_csv(frame.iloc[:0], tmp_path / "m.csv")
    with pytest.raises(ManifestError, match="no data rows"):
        read_manifest(path)
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(ManifestError, match=r"blank\.csv.*empty"):
        read_manifest(tmp_path / "blank.csv")
    with pytest.raises(FileNotFoundError, match=r"absent\.csv"):
        read_manifest(tmp_path / "absent.csv")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("a.png,1,Live,train,s1,extra\n", "more fields than the header"),
        ("a.png,1,Live,train,s1\nb.png,0,Print,train,s1,x\n", "Expected 5 fields in line 3"),
    ],
)
def test_ragged_csv(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path,label,attack_type,split,subject\n" + text)
    with pytest.raises(ManifestError, match=r"m\.csv: .*" + pattern):
        read_manifest(path, check_files=False)


def test_tolerant_csv_spelling(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("\ufeffpath, label, attack_type, split, subject\na.png, 1, Live, train, NA\n")
    manifest = read_manifest(path, check_files=False)
    assert list(manifest.subjects) == ["NA"] and list(manifest.labels) == [1]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no real pixel data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_outside_root_allowed_with_flag(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    frame = base_frame(root)
    save_image(tmp_path / "outside.png")
    frame.loc[1, "path"] = "../outside.png"
    frame.loc[3, "path"] = str(tmp_path / "outside.png")
    frame.loc[3, "subject"] = "s3"
    frame = frame.drop(index=3)  # absolute + relative to the same file would duplicate
    path = write_csv(frame, root / "m.csv")
    with pytest.raises(ManifestError, match="leaves the manifest's folder"):
        read_manifest(path)
    manifest = read_manifest(path, allow_outside_root=True)
    assert manifest.paths[1] == tmp_path / "outside.png"

    frame.loc[1, "path"] = str(tmp_path / "outside.png")
    path = write_csv(frame, root / "m.csv")
    with pytest.raises(ManifestError, match="absolute path"):
        read_manifest(path)
    assert read_manifest(path, allow_outside_root=True).paths[1] == tmp_path / "outside.png"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlink_escaping_root_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    frame = base_frame(root)
    save_image(tmp_path / "secret.png")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    frame.loc[1, "path"] = "link.png"
    path = write_csv(frame, root / "m.csv")
    with pytest.raises(ManifestError, match=r"row 2 \(line 3\), column 'path'.*symlink"):
        read_manifest(path)
    assert len(read_manifest(path, allow_outside_root=True)) == 4


def test_check_files_false(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.loc[0, "path"] = "not_there.png"
    path = write_csv(frame, tmp_path / "m.csv")
    assert len(read_manifest(path, check_files=False)) == 4


def test_split_leave_out_filter(tmp_path: Path, frame: pd.DataFrame) -> None:
    manifest = read_manifest(write_csv(frame, tmp_path / "m.csv"))
    train = manifest.split("train")
    assert list(train.subjects) == ["s0", "s3"]
    assert list(train.frame.index) == [1, 4]  # original row numbers kept
    assert len(manifest.leave_out("Print")) == 2
    with pytest.raises(ManifestError, match="no rows with attack_type 'Replay'"):
        manifest.leave_out("Replay")
    with pytest.raises(ManifestError, match="unknown split 'val'"):
        manifest.split("val")
    only_train = read_manifest(write_csv(frame.assign(split="train"), tmp_path / "t.csv"))
    with pytest.raises(ManifestError, match=r"t\.csv: split 'dev' has no rows"):
        only_train.split("dev")
    assert len(manifest.filter(manifest.labels == 1)) == 2


def test_check_landmarks(tmp_path: Path, frame: pd.DataFrame) -> None:
    manifest = read_manifest(write_csv(frame, tmp_path / "m.csv"))
    check_landmarks(manifest)
    frame.loc[2, "landmarks"] = "10 12 22 12 40 18 11 24 21 24"
    path = write_csv(frame, tmp_path / "m.csv")
    with pytest.raises(
        ManifestError,
        match=r"row 3 \(line 4\), column 'landmarks': nose at \(40, 18\) lies outside the 32x32"
        r" image .*img2\.png",
    ):
        check_landmarks(read_manifest(path).split("test"))


def test_from_frame_reports_rows_without_lines(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.loc[1, "split"] = "validation"
    with pytest.raises(ManifestError, match=r"<DataFrame>: row 2, column 'split'"):
        Manifest.from_frame(frame, tmp_path)


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "I;16", "1", "CMYK"])
def test_non_rgb_modes_warn_and_become_rgb(tmp_path: Path, mode: str) -> None:
    path = save_image(tmp_path / ("img.tif" if mode == "CMYK" else "img.png"), (20, 20), mode)
    with Image.open(path) as opened:
        opened_mode = opened.mode
    with pytest.warns(ImageLoadWarning, match=re.escape(f"{path}: mode {opened_mode}")) as rec:
        image = load_image(path, size=16)
    assert len(rec) == 1
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1


def test_rgb_loads_exactly_without_warning(tmp_path: Path) -> None:
    path = save_image(tmp_path / "rgb.png", (24, 16))
    with Image.open(path) as opened:
        expected = torch.from_numpy(np.array(opened)).permute(2, 0, 1) / 255
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = load_image(path, size=None)
    assert image.shape == (3, 16, 24)
    torch.testing.assert_close(image, expected.float())


def test_sixteen_bit_scaled(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(path)
    with pytest.warns(ImageLoadWarning):
        image = load_image(path, size=None)
    torch.testing.assert_close(image, torch.ones(3, 8, 8))


def test_resize_policies(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    data = np.zeros((10, 30, 3), dtype=np.uint8)
    data[:, 10:20] = 255  # white centre square, black sides
    Image.fromarray(data).save(path)

    with pytest.warns(ImageLoadWarning, match=r"wide\.png: 30x10 is not square") as rec:
        resized = load_image(path, size=8)
    assert len(rec) == 1 and resized.shape == (3, 8, 8)
    assert 0.2 < resized.mean() < 0.5

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cropped = load_image(path, size=5, resize="center_crop")
        kept = load_image(path, size=None, resize="center_crop")
    torch.testing.assert_close(cropped, torch.ones(3, 5, 5))
    assert kept.shape == (3, 10, 30)

    with pytest.raises(ImageLoadError, match=r"wide\.png: image is 30x10, expected 8x8"):
        load_image(path, size=8, resize="error")
    square = save_image(tmp_path / "sq.png", (8, 8))
    assert load_image(square, size=8, resize="error").shape == (3, 8, 8)
    with pytest.raises(ValueError, match="unknown resize policy"):
        load_image(square, size=8, resize="stretch")
    with pytest.raises(ValueError, match="positive int"):
        load_image(square, size=0)


def _truncated(tmp_path: Path, fmt: str) -> Path:
    buffer = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_refused(tmp_path: Path, fmt: str) -> None:
    path = _truncated(tmp_path, fmt)
    with pytest.raises(ImageLoadError, match=re.escape(str(path)) + ": cannot decode"):
        load_image(path, size=None)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(os.urandom(200))
    with pytest.raises(ImageLoadError, match=r"junk\.png: not a readable image"):
        load_image(junk, size=8)
    with pytest.raises(ImageLoadError, match=r"gone\.png: image file not found"):
        load_image(tmp_path / "gone.png", size=8)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageLoadError, match=r"folder\.png: not a readable image"):
        load_image(tmp_path / "folder.png", size=8)


def test_decompression_bomb_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_image(tmp_path / "big.png", (40, 40))
    with pytest.raises(ImageLoadError, match=r"big\.png: 40x40 = 1600 pixels exceeds max_pixels"):
        load_image(path, size=8, max_pixels=1000)
    assert load_image(path, size=8, max_pixels=1600).shape == (3, 8, 8)
    monkeypatch.setattr(image_io, "DEFAULT_MAX_PIXELS", 100)
    with pytest.raises(ImageLoadError, match="max_pixels=100"):
        load_image(path, size=8)


@pytest.mark.parametrize(
    ("side", "pattern"),
    [(10_000, "exceeds max_pixels=67108864"), (20_000, "PIL.Image.MAX_IMAGE_PIXELS")],
)
def test_decompression_bomb_header(tmp_path: Path, side: int, pattern: str) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak out
        with pytest.raises(ImageLoadError, match=r"bomb\.png: .*decompression bomb"):
            load_image(path, size=8)
        with pytest.raises(ImageLoadError, match=pattern):
            load_image(path, size=8)


def test_load_images(tmp_path: Path) -> None:
    paths = [
        save_image(tmp_path / "a.png", (16, 16)),
        save_image(tmp_path / "b.png", (20, 12), "L"),
        save_image(tmp_path / "c.png", (12, 20), "RGBA"),
    ]
    with pytest.warns(ImageLoadWarning) as rec:
        batch = load_images(paths, size=8)
    assert batch.shape == (3, 3, 8, 8) and batch.dtype == torch.float32
    messages = sorted(str(w.message) for w in rec)
    assert len(messages) == 2
    assert messages[0].startswith("2 of 3 images converted to RGB")
    assert messages[1].startswith("2 of 3 images not square")
    torch.testing.assert_close(batch[0], load_image(paths[0], size=8))
    assert load_images([], size=4).shape == (0, 3, 4, 4)
    with pytest.raises(ValueError, match=r"pass size="):
        load_images([paths[0], paths[1]], size=None)
    with pytest.raises(ImageLoadError, match=r"nope\.png"):
        load_images([paths[0], tmp_path / "nope.png"], size=8)


# --------------------------------------------------------------------------- batches


def test_check_image_batch_accepts_valid() -> None:
    check_image_batch(torch.rand(2, 3, 4, 4))
    check_image_batch(torch.rand(2, 3, 4, 4, dtype=torch.float16))
    check_image_batch(torch.zeros(0, 3, 4, 4))
    check_image_batch(torch.ones(1, 3, 2, 2))


@pytest.mark.parametrize(
    ("images", "pattern"),
    [
        (np.zeros((1, 3, 4, 4), dtype=np.float32), "expected a torch.Tensor, got ndarray"),
        (torch.rand(3, 4, 4), r"batch: expected a 4-D tensor .* got shape \(3, 4, 4\)"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), r"floating-point .*torch.uint8.*255"),
        (torch.rand(1, 1, 4, 4), r"3 \(RGB\) channels .*\(1, 1, 4, 4\)"),
        (torch.rand(2, 4, 4, 3), r"3 \(RGB\) channels"),
        (
            torch.cat([torch.rand(1, 3, 2, 2), torch.full((1, 3, 2, 2), 2.0)]),
            r"values must lie in \[0, 1\]; found min [0-9.e-]+, max 2 .*batch index 1",
        ),
        (torch.full((2, 3, 2, 2), -0.5), r"min -0.5, max -0.5 .*batch index 0"),
    ],
)
def test_check_image_batch_errors(images: object, pattern: str) -> None:
    with pytest.raises(ImageBatchError, match=pattern):
        check_image_batch(images, name="batch")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_image_batch_non_finite(bad: float) -> None:
    images = torch.rand(4, 3, 5, 5)
    images[2, 1, 3, 3] = bad
    images[3, 0, 0, 0] = bad
    with pytest.raises(ImageBatchError, match=r"images: 2 non-finite value\(s\).*batch index 2"):
        check_image_batch(images)


# --------------------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hypothesis")


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=300))
def test_random_bytes_always_image_load_error(scratch: Path, prefix: bytes, body: bytes) -> None:
    path = scratch / "random.png"
    path.write_bytes(prefix + body)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_image(path, size=8, max_pixels=10_000)
    except ImageLoadError as exc:
        assert str(path) in str(exc)
    # a valid tiny image out of random bytes is allowed, any other exception is a failure


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    mode=st.sampled_from(["RGB", "L", "RGBA", "LA", "P", "1", "I;16"]),
    size=st.integers(1, 16),
    policy=st.sampled_from(["resize", "center_crop"]),
)
def test_random_images_give_rgb_unit_tensors(
    scratch: Path, width: int, height: int, mode: str, size: int, policy: str
) -> None:
    path = save_image(scratch / "random_image.png", (width, height), mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageLoadWarning)
        image = load_image(path, size=size, resize=policy)
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
