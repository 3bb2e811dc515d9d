"""JPEG-recompressed copies of training images, written once and addressed by content.

Head training reads cached backbone features, so an augmentation that changes pixels must
exist as images before the features are extracted. :func:`jpeg_copies` resizes each training
image to the detector's input size, encodes it with libjpeg (Pillow, 4:2:0 chroma) at a
quality drawn from a seeded range and writes it under a name derived from the source image's
bytes, the size and the quality. A later run with the same images and settings finds the
files in place; their features then come from the feature cache like any other image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facecat.core.checkpoints import atomic_write
from facecat.core.images import load_image
from facecat.training.cache import file_digest


def jpeg_copies(
    paths: Sequence[Path],
    folder: str | Path,
    *,
    copies: int,
    quality: tuple[int, int],
    size: int,
    seed: int = 0,
) -> list[Path]:
    """Write ``copies`` JPEG re-encodings of every image and return their paths.

    Args:
        paths: the source images.
        folder: where the copies are written (created when needed).
        copies: re-encodings per image.
        quality: inclusive range of the JPEG quality, one value drawn per copy.
        size: side length the source is resized to before encoding.
        seed: seed of the quality draws.

    Returns:
        ``copies * len(paths)`` paths: every image's first copy in the order of ``paths``,
        then every image's second copy, and so on.
    """
    low, high = quality
    if not 1 <= low <= high <= 95:
        raise ValueError(f"jpeg quality range must satisfy 1 <= low <= high <= 95, got {quality}")
    if copies < 0:
        raise ValueError(f"jpeg copies must be >= 0, got {copies}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    draws = np.random.default_rng(seed).integers(low, high + 1, size=(copies, len(paths)))
    digests = [file_digest(Path(p)) for p in paths]
    out = []
    for copy in range(copies):
        for path, digest, level in zip(paths, digests, draws[copy], strict=True):
            name = hashlib.sha256(f"{digest}:{size}:{int(level)}".encode()).hexdigest()[:32]
            target = folder / f"{name}.jpg"
            if not target.is_file():
                _write_jpeg(load_image(path, size=size), target, int(level))
            out.append(target)
    return out


def _write_jpeg(image: torch.Tensor, target: Path, quality: int) -> None:
    array = (image.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    atomic_write(target, lambda tmp: Image.fromarray(array).save(tmp, "JPEG", quality=quality))
