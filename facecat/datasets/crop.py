"""Detect, align and crop faces from images and videos into a folder of PNGs.

Each image, and every n-th frame of each video, goes through MTCNN
(:class:`facecat.core.landmarks.FaceDetector`); the most confident face is warped so that its five
landmarks land on the canonical template (:func:`facecat.core.landmarks.align_face`) and saved as
a ``size`` x ``size`` PNG. A CSV beside the crops lists them::

    path,source,frame,landmarks,probability

* ``path``: the crop, relative to the CSV's folder.
* ``source``: the absolute path of the input image or video.
* ``frame``: 0-based frame index in decoding order for videos, empty for images.
* ``landmarks``: ``"x1 y1 ... x5 y5"`` in crop pixels (the manifest's landmark format).
* ``probability``: MTCNN's face confidence.

Videos are decoded with PyAV (``pip install av``); without it images still work and any
video input raises an ImportError naming the package.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import torch
from PIL import Image

from facecat.core.checkpoints import atomic_write
from facecat.core.images import MAX_PIXELS_ENV, ImageLoadError, default_max_pixels, load_image
from facecat.core.landmarks import FaceDetector, align_face

__all__ = [
    "CROPS_CSV",
    "CROP_COLUMNS",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "crop_faces",
    "expand_inputs",
    "image_pixels",
    "import_av",
    "video_frames",
]

logger = logging.getLogger(__name__)

#: Name of the CSV written into the output folder.
CROPS_CSV = "crops.csv"
CROP_COLUMNS: tuple[str, ...] = ("path", "source", "frame", "landmarks", "probability")
#: Input suffixes read as still images / as videos (case-insensitive).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg")


def crop_faces(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    size: int = 64,
    scale: float = 1.0,
    every_nth_frame: int = 10,
    detector: FaceDetector | None = None,
) -> Path:
    """Crop the most confident face of each image and of every n-th video frame.

    Crops are written as ``<stem>.png`` for images and ``<stem>/<frame>.png`` for videos
    (``<stem>-2`` etc. when stems repeat). Images and frames without a face are skipped and
    listed in one warning.

    Args:
        inputs: Image files, video files, or folders (searched recursively for both).
        out_dir: Output folder, created if needed.
        size: Side length of the square crops.
        scale: Template zoom (< 1 keeps more context around the face).
        every_nth_frame: Process frames 0, n, 2n, ... of each video.
        detector: Face detector; None builds ``FaceDetector()``.

    Returns:
        The path of the CSV listing the crops (:data:`CROPS_CSV` in ``out_dir``).

    Raises:
        FileNotFoundError: If an input does not exist.
        ValueError: If an input file has an unknown suffix or an argument is out of range.
        ImportError: If a video is given and PyAV (``av``) is not installed.
        facecat.core.landmarks.LandmarkError: If ``detector`` is None and facenet-pytorch is
            missing.
        ImageLoadError: If an image or video cannot be decoded.
    """
    if size < 1 or scale <= 0 or every_nth_frame < 1:
        raise ValueError(
            f"need size >= 1, scale > 0, every_nth_frame >= 1; got size={size}, "
            f"scale={scale}, every_nth_frame={every_nth_frame}"
        )
    sources = expand_inputs(inputs)
    videos = [s for s in sources if s.suffix.lower() in VIDEO_SUFFIXES]
    av = import_av(videos[0]) if videos else None
    detector = FaceDetector() if detector is None else detector
    out_dir = Path(os.path.abspath(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, object]] = []
    no_face: list[str] = []
    stems: set[str] = set()
    for source in sources:
        stem = _unique_stem(source.stem, stems)
        frames: Iterable[tuple[int | None, np.ndarray]]
        if source.suffix.lower() in VIDEO_SUFFIXES:
            frames = video_frames(av, source, every_nth_frame)
        else:
            frames = [(None, image_pixels(source))]
        for index, pixels in frames:
            detection = detector.detect(pixels)
            if detection is None:
                no_face.append(str(source) + ("" if index is None else f" frame {index}"))
                continue
            image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
            crop, points = align_face(image, torch.from_numpy(detection.landmarks), size, scale)
            name = f"{stem}.png" if index is None else f"{stem}/{index:06d}.png"
            array = (crop.permute(1, 2, 0) * 255.0).round().to(torch.uint8).numpy()
            (out_dir / name).parent.mkdir(exist_ok=True)
            Image.fromarray(array).save(out_dir / name)
            rows.append(
                {
                    "path": name,
                    "source": str(source),
                    "frame": "" if index is None else index,
                    "landmarks": " ".join(f"{v:.2f}" for v in points.flatten().tolist()),
                    "probability": round(detection.probability, 6),
                }
            )
    if no_face:
        listed = ", ".join(no_face[:5]) + (", ..." if len(no_face) > 5 else "")
        logger.warning("no face found in %d input(s), skipped: %s", len(no_face), listed)
    csv = out_dir / CROPS_CSV
    table = pd.DataFrame(rows, columns=list(CROP_COLUMNS))
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False))
    logger.info("wrote %d face crops of %d input(s) to %s", len(rows), len(sources), csv)
    return csv


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Input files, with folders replaced by their image and video files (sorted)."""
    known = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    sources: list[Path] = []
    for item in inputs:
        path = Path(os.path.abspath(item))
        if path.is_dir():
            sources.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in known)
            )
        elif not path.exists():
            raise FileNotFoundError(f"input not found: {path}")
        elif path.suffix.lower() not in known:
            raise ValueError(f"{path}: unknown suffix; images: {IMAGE_SUFFIXES}, videos: {known}")
        else:
            sources.append(path)
    return sources


def _unique_stem(stem: str, used: set[str]) -> str:
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


def image_pixels(path: Path) -> np.ndarray:
    """An image as RGB uint8 (H, W, 3)."""
    image = load_image(path, size=None)
    return (image * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def import_av(video: Path) -> ModuleType:
    """PyAV, or an ImportError naming the package and the video that needs it."""
    try:
        import av
    except ImportError as error:
        raise ImportError(
            f"{video}: reading videos needs PyAV (the 'av' package): pip install av"
        ) from error
    return av


def video_frames(av: ModuleType, path: Path, every_nth: int) -> Iterator[tuple[int, np.ndarray]]:
    """Every ``every_nth`` decoded frame of a video as ``(index, RGB uint8 (H, W, 3))``."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ImageLoadError(f"{path}: no video stream")
            stream = container.streams.video[0]
            limit = default_max_pixels()
            if stream.width * stream.height > limit:
                raise ImageLoadError(
                    f"{path}: {stream.width}x{stream.height} video frames exceed max_pixels="
                    f"{limit}; refused (set {MAX_PIXELS_ENV} if the video is genuine)"
                )
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index % every_nth == 0:
                    yield index, frame.to_ndarray(format="rgb24")
    except av.FFmpegError as error:
        raise ImageLoadError(f"{path}: cannot decode video ({error})") from error
