"""Face cropping on real faces (scikit-image's astronaut) with the real MTCNN detector."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from facecat.core.images import ImageLoadError
from facecat.core.landmarks import FaceDetector, LandmarkError, template
from facecat.datasets.crop import CROP_COLUMNS, crop_faces

SIZE = 64


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    pytest.importorskip("facenet_pytorch")
    return FaceDetector(upsample=1)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real face (256x256 around the astronaut's head) and a face-free noise image."""
    folder = tmp_path_factory.mktemp("images")
    face = folder / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()[:256, 96:352]).save(face)
    noise = folder / "noise.png"
    pixels = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(noise)
    return {"face": face, "noise": noise}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 256x256 astronaut frames, the head moving 4 px down and 3 px right per frame."""
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("video") / "astronaut.mp4"
    full = skimage.data.astronaut()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 256
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        for k in range(6):
            pixels = np.ascontiguousarray(full[4 * k : 4 * k + 256, 96 + 3 * k : 352 + 3 * k])
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _landmarks(text: str) -> np.ndarray:
    return np.asarray(text.split(), dtype=np.float64).reshape(5, 2)


def _distance_to_template(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points - template(SIZE).numpy(), axis=1)


def _read(csv: Path) -> pd.DataFrame:
    return pd.read_csv(csv, dtype={"frame": str}, keep_default_na=False)


def test_crop_image(
    detector: FaceDetector,
    images: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="facecat.datasets.crop"):
        csv = crop_faces([images["face"], images["noise"]], tmp_path, size=SIZE, detector=detector)
    assert csv == tmp_path / "crops.csv"
    table = _read(csv)
    assert tuple(table.columns) == CROP_COLUMNS
    assert table["path"].tolist() == ["astronaut.png"]  # the noise image is skipped ...
    assert "no face found in 1 input(s)" in caplog.text
    assert str(images["noise"]) in caplog.text  # ... and named in the warning
    row = table.iloc[0]
    assert row["source"] == str(images["face"])
    assert row["frame"] == ""
    assert row["probability"] > 0.99
    crop = np.asarray(Image.open(tmp_path / row["path"]))
    assert crop.shape == (SIZE, SIZE, 3)
    # the fitted landmarks and a fresh detection on the saved crop both sit on the template
    for points in (_landmarks(row["landmarks"]), detector.detect(crop).landmarks):
        distance = _distance_to_template(points)
        assert distance.mean() < 3.0
        assert distance.max() < 5.0


def test_crop_video_and_folder(
    detector: FaceDetector, images: dict[str, Path], video: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "inputs"
    (folder / "more").mkdir(parents=True)
    shutil.copy(video, folder)
    shutil.copy(images["face"], folder / "more" / "astronaut.png")
    csv = crop_faces([folder], tmp_path / "out", size=SIZE, every_nth_frame=2, detector=detector)
    table = _read(csv)
    # the video's stem comes first; the image with the same stem gets a distinct name
    assert table["path"].tolist() == [
        "astronaut/000000.png",
        "astronaut/000002.png",
        "astronaut/000004.png",
        "astronaut-2.png",
    ]
    assert table["frame"].tolist() == ["0", "2", "4", ""]
    crops = [
        np.asarray(Image.open(tmp_path / "out" / p), dtype=np.float64) / 255 for p in table.path
    ]
    for points in table["landmarks"]:
        assert _distance_to_template(_landmarks(points)).max() < 5.0
    # alignment undoes the head's motion (16 px down, 12 px right from frame 0 to 4): the two
    # aligned crops differ far less than the first crop and itself moved by 2 px
    aligned = np.abs(crops[0] - crops[2]).mean()
    assert aligned < 0.5 * np.abs(crops[0] - np.roll(crops[0], (2, 2), axis=(0, 1))).mean()


def test_missing_facenet_raises_landmark_error(
    images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # hide the installed package
    with pytest.raises(LandmarkError, match="facenet-pytorch"):
        crop_faces([images["face"]], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_av(
    detector: FaceDetector,
    images: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # hide PyAV
    movie = tmp_path / "clip.mov"
    movie.write_bytes(b"")
    with pytest.raises(ImportError, match=r"clip\.mov: reading videos needs PyAV.*pip install av"):
        crop_faces([images["noise"], movie], tmp_path / "out", detector=detector)
    csv = crop_faces([images["noise"]], tmp_path / "out", detector=detector)  # images still work
    assert len(_read(csv)) == 0


def test_undecodable_video(detector: FaceDetector, tmp_path: Path) -> None:
    pytest.importorskip("av")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ImageLoadError, match=r"broken\.mp4: cannot decode video"):
        crop_faces([broken], tmp_path / "out", detector=detector)


def test_bad_arguments(detector: FaceDetector, images: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="input not found"):
        crop_faces([tmp_path / "absent.png"], tmp_path, detector=detector)
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(ValueError, match="unknown suffix"):
        crop_faces([notes], tmp_path, detector=detector)
    with pytest.raises(ValueError, match="every_nth_frame"):
        crop_faces([images["face"]], tmp_path, every_nth_frame=0, detector=detector)
