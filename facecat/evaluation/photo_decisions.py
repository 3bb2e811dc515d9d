"""Ordinary photographs and videos in, a bona fide / attack decision per file out.

Each input goes through the steps a deployed face anti-spoofing check takes: MTCNN finds the
face (:class:`facecat.core.landmarks.FaceDetector`), the five landmarks align it onto the
detector's template at the detector's input size in the three framings that the bona fide
set's real photographs were captured in (:data:`facecat.datasets.bona_fide.PORTRAIT_FRAMINGS`),
the detector's P(real) is averaged over the three crops, and the detector's dev-split
threshold turns that into a decision.
A video is scored on every n-th frame that holds a face; its P(real) is the mean over those
frames and ``frames_over_threshold`` the share of frames judged bona fide, the convention of
video face anti-spoofing benchmarks.

An input that cannot give a trustworthy score gets an ``error`` row and no score: a file
that does not decode, an image too small to hold a face, no face, or more than one face
(unless ``largest`` picks the largest).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from facecat.core.images import ImageLoadError
from facecat.core.landmarks import Detection, FaceDetector, align_face
from facecat.datasets.bona_fide import PORTRAIT_FRAMINGS
from facecat.datasets.crop import (
    VIDEO_SUFFIXES,
    expand_inputs,
    image_pixels,
    import_av,
    video_frames,
)

#: Smallest width and height (pixels) of an input that can hold a detectable face.
MIN_SIDE = 32
#: MTCNN confidence from which a detection counts as a face.
MIN_FACE_PROBABILITY = 0.9
DECISION_COLUMNS = (
    "path",
    "frames",
    "p_real",
    "threshold",
    "decision",
    "frames_over_threshold",
    "error",
)


@dataclass
class Decision:
    """The outcome for one input file; ``error`` is set exactly when there is no score."""

    path: str
    frames: int = 0
    p_real: float = math.nan
    threshold: float = math.nan
    decision: str = ""
    frames_over_threshold: float = math.nan
    error: str = ""


def detector_threshold(detector: nn.Module, threshold: float | None = None) -> float:
    """The decision threshold: ``threshold`` if given, else the detector file's dev threshold.

    A NaN ``threshold`` stands for "no decisions, P(real) only" and is returned as is.

    Raises:
        ValueError: when neither is available or the value lies outside [0, 1].
    """
    if threshold is not None and math.isnan(threshold):
        return math.nan
    if threshold is None:
        threshold = getattr(detector, "file_metadata", {}).get("dev_threshold")
    if threshold is None:
        raise ValueError(
            f"detector {getattr(detector, 'name', type(detector).__name__)} carries no "
            "dev-split threshold (trained before thresholds were recorded); pass --threshold"
        )
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    return float(threshold)


def decide_files(
    detector: nn.Module,
    inputs: Sequence[str | os.PathLike[str]],
    *,
    threshold: float | None = None,
    aligned: bool = False,
    largest: bool = False,
    every_nth_frame: int = 10,
    face_detector: FaceDetector | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Decide bona fide or attack for every image and video among ``inputs``.

    Args:
        detector: anything with ``scores(images) -> P(real)`` and an ``image_size``.
        inputs: image files, video files or folders (searched recursively).
        threshold: P(real) at or above which a face is bona fide (default: the detector
            file's ``dev_threshold``).
        aligned: inputs are already aligned face crops: skip face detection.
        largest: with several faces in an image, score the largest instead of refusing.
        every_nth_frame: score frames 0, n, 2n, ... of each video.
        face_detector: MTCNN wrapper; None builds one (needs facenet-pytorch).
        device: where the detector runs.
        progress: show a progress bar over the inputs.

    Returns:
        One row per input file with the columns of :data:`DECISION_COLUMNS`.

    Raises:
        FileNotFoundError: when an input does not exist.
        ValueError: for an unknown file suffix, a bad threshold or ``every_nth_frame`` < 1.
    """
    if every_nth_frame < 1:
        raise ValueError(f"every_nth_frame must be >= 1, got {every_nth_frame}")
    cut = detector_threshold(detector, threshold)
    sources = expand_inputs(inputs)
    if not sources:
        raise FileNotFoundError(f"no image or video files in {[str(i) for i in inputs]}")
    if not aligned and face_detector is None:
        face_detector = FaceDetector()
    rows = []
    for source in tqdm(sources, desc="scoring", unit="file", disable=not progress):
        decision = Decision(str(source), threshold=cut)
        try:
            crops = _face_crops(
                source, detector.image_size, aligned, largest, face_detector, every_nth_frame
            )
        except (ImageLoadError, ImportError, _UnscorableError) as error:
            decision.error = str(error)
            decision.threshold = math.nan
            rows.append(asdict(decision))
            continue
        with torch.no_grad():
            batch = torch.cat(crops).to(device)
            scores = detector.scores(batch).float().cpu().numpy().reshape(len(crops), -1)
        scores = scores.mean(axis=1)  # one P(real) per frame: the mean over its framings
        if not np.isfinite(scores).all():
            raise FloatingPointError(f"{source}: the detector returned a non-finite score")
        decision.frames = len(scores)
        decision.p_real = float(scores.mean())
        if not math.isnan(cut):
            decision.frames_over_threshold = float((scores >= cut).mean())
            decision.decision = "bona fide" if decision.p_real >= cut else "attack"
        rows.append(asdict(decision))
    return pd.DataFrame(rows, columns=list(DECISION_COLUMNS))


class _UnscorableError(Exception):
    """An input that cannot be scored; the message goes into its error row."""


def _face_crops(
    source: Path,
    size: int,
    aligned: bool,
    largest: bool,
    face_detector: FaceDetector | None,
    every_nth: int,
) -> list[torch.Tensor]:
    video = source.suffix.lower() in VIDEO_SUFFIXES
    if video:
        frames = video_frames(import_av(source), source, every_nth)
    else:
        frames = iter([(None, image_pixels(source))])
    crops = [
        _crop_one(
            pixels,
            size,
            aligned,
            largest,
            face_detector,
            str(source) if index is None else f"{source} frame {index}",
        )
        for index, pixels in frames
    ]
    found = [crop for crop in crops if crop is not None]
    if not found:
        raise _UnscorableError(
            f"{source}: no face found" + (f" in any of {len(crops)} frames read" if video else "")
        )
    return found


def _crop_one(
    pixels: np.ndarray,
    size: int,
    aligned: bool,
    largest: bool,
    face_detector: FaceDetector | None,
    where: str,
) -> torch.Tensor | None:
    """The crops of the face in one image, (framings, 3, size, size); None without a face."""
    _check_side(pixels, where)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    if aligned:
        return torch.nn.functional.interpolate(
            image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    faces = [
        face
        for face in face_detector.detect_all(pixels)
        if face.probability >= MIN_FACE_PROBABILITY
    ]
    if not faces:
        return None
    if len(faces) > 1 and not largest:
        raise _UnscorableError(
            f"{where}: {len(faces)} faces found; pass --largest to score the largest"
        )
    landmarks = torch.from_numpy(max(faces, key=_box_area).landmarks)
    return torch.stack([align_face(image, landmarks, size, zoom)[0] for zoom in PORTRAIT_FRAMINGS])


def _check_side(pixels: np.ndarray, where: str) -> None:
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise _UnscorableError(
            f"{where}: {width}x{height} pixels is too small to hold a face (at least "
            f"{MIN_SIDE}x{MIN_SIDE} needed)"
        )


def _box_area(face: Detection) -> float:
    x1, y1, x2, y2 = face.box.tolist()
    return (x2 - x1) * (y2 - y1)
