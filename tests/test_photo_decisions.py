"""Photographs and videos in, decisions out: real MTCNN on real portraits, error rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from PIL import Image

from facecat import create_detector
from facecat.cli import main
from facecat.core.landmarks import FaceDetector, align_face
from facecat.datasets.bona_fide import PORTRAIT_FRAMINGS
from facecat.evaluation.photo_decisions import DECISION_COLUMNS, decide_files, detector_threshold
from facecat.models.registry import save_detector

GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def face_detector() -> FaceDetector:
    pytest.importorskip("facenet_pytorch")
    return FaceDetector()


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("detector") / "tiny.safetensors"
    detector = create_detector("facecat-tiny", text_guided=False, unet_weights="random")
    save_detector(detector, path, metadata={"dev_threshold": 0.5})
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real portraits, a two-face picture and inputs that hold no face."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut = skimage.data.astronaut()
    grace = np.asarray(Image.open(GRACE).convert("RGB").resize((256, 292)))
    pictures = {
        "astronaut.png": astronaut,
        "pair.png": np.concatenate([astronaut[:292, 96:352], grace], axis=1),
        "grey.png": np.full((200, 300, 3), 128, np.uint8),
        "one_pixel.png": np.zeros((1, 1, 3), np.uint8),
    }
    paths = {}
    for name, pixels in pictures.items():
        paths[name] = folder / name
        Image.fromarray(pixels).save(paths[name])
    paths["blank.png"] = folder / "blank.png"
    Image.new("RGBA", (200, 200), (0, 0, 0, 0)).save(paths["blank.png"])
    paths["grace.jpg"] = GRACE
    return paths


def _decide(detector_file, photos, names, face_detector, **options) -> pd.DataFrame:
    from facecat.models.registry import load_detector

    return decide_files(
        load_detector(detector_file),
        [photos[n] for n in names],
        face_detector=face_detector,
        **options,
    )


def test_portraits_get_a_score_and_a_decision(detector_file, photos, face_detector) -> None:
    table = _decide(detector_file, photos, ["astronaut.png", "grace.jpg"], face_detector)
    assert list(table.columns) == list(DECISION_COLUMNS)
    assert (table["error"] == "").all()
    assert table["frames"].tolist() == [1, 1]
    assert table["p_real"].between(0, 1).all()
    assert (table["threshold"] == 0.5).all()
    expected = np.where(table["p_real"] >= 0.5, "bona fide", "attack")
    assert table["decision"].tolist() == expected.tolist()


def test_p_real_is_the_mean_over_the_bona_fide_framings(
    detector_file, photos, face_detector
) -> None:
    from facecat.models.registry import load_detector

    detector = load_detector(detector_file)
    (row,) = _decide(detector_file, photos, ["grace.jpg"], face_detector).itertuples()
    pixels = np.asarray(Image.open(GRACE).convert("RGB"))
    (face,) = face_detector.detect_all(pixels)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    landmarks = torch.from_numpy(face.landmarks)
    size = detector.image_size
    crops = torch.stack([align_face(image, landmarks, size, zoom)[0] for zoom in PORTRAIT_FRAMINGS])
    with torch.no_grad():
        expected = detector.scores(crops).mean().item()
    assert row.p_real == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("blank.png", "no face found"),
        ("grey.png", "no face found"),
        ("one_pixel.png", "1x1 pixels is too small to hold a face"),
        ("pair.png", "2 faces found; pass --largest"),
    ],
)
def test_inputs_without_one_face_get_an_error_row_and_no_score(
    detector_file, photos, face_detector, name, message
) -> None:
    table = _decide(detector_file, photos, [name], face_detector)
    row = table.iloc[0]
    assert message in row["error"] and name in row["error"]
    assert math.isnan(row["p_real"]) and row["decision"] == "" and row["frames"] == 0


def test_largest_scores_the_bigger_of_two_faces(detector_file, photos, face_detector) -> None:
    table = _decide(detector_file, photos, ["pair.png"], face_detector, largest=True)
    assert table.iloc[0]["error"] == "" and 0 <= table.iloc[0]["p_real"] <= 1


def test_aligned_inputs_skip_face_detection(detector_file, photos) -> None:
    table = _decide(detector_file, photos, ["grey.png", "one_pixel.png"], None, aligned=True)
    assert table.iloc[0]["error"] == "" and table.iloc[0]["frames"] == 1
    assert "too small" in table.iloc[1]["error"]


def test_video_is_scored_per_frame_and_aggregated(detector_file, face_detector, tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "astronaut.mp4"
    full = skimage.data.astronaut()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 256
        stream.pix_fmt = "yuv420p"
        for k in range(4):
            pixels = np.ascontiguousarray(full[4 * k : 4 * k + 256, 96:352])
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    table = _decide(detector_file, {"v": path}, ["v"], face_detector, every_nth_frame=2)
    row = table.iloc[0]
    assert row["error"] == "" and row["frames"] == 2
    assert row["frames_over_threshold"] in (0.0, 0.5, 1.0)


def test_thresholds_come_from_the_file_or_are_refused(detector_file) -> None:
    from facecat.models.registry import load_detector

    detector = load_detector(detector_file)
    assert detector_threshold(detector) == 0.5
    assert detector_threshold(detector, 0.25) == 0.25
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\]"):
        detector_threshold(detector, 1.5)
    bare = create_detector("facecat-tiny", text_guided=False, unet_weights="random")
    with pytest.raises(ValueError, match="carries no dev-split threshold"):
        detector_threshold(bare)


def test_cli_prints_rows_and_exits_non_zero_on_any_error(detector_file, photos, capsys) -> None:
    pytest.importorskip("facenet_pytorch")
    argv = ["score", "--detector", str(detector_file), str(photos["astronaut.png"])]
    assert main(argv) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert table.iloc[0]["decision"] in ("bona fide", "attack")
    argv = ["score", "--detector", str(detector_file), "--format", "json"]
    assert main([*argv, str(photos["astronaut.png"]), str(photos["blank.png"])]) == 2
    captured = capsys.readouterr()
    records = json.loads(captured.out)
    assert [bool(r["error"]) for r in records] == [False, True]
    assert captured.err.strip().splitlines() == [f"facecat score: error: {records[1]['error']}"]
