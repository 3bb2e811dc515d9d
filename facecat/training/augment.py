"""Degraded copies of training images (JPEG, posterized), written once and addressed by content.

Head training reads cached backbone features, so an augmentation that changes pixels must
exist as images before the features are extracted. :func:`jpeg_copies` resizes each training
image to the detector's input size and encodes it with libjpeg (Pillow, 4:2:0 chroma) at a
quality drawn from a seeded range; :func:`posterize_copies` keeps a drawn number of bits per
channel (Pillow's ``ImageOps.posterize``, the robustness suite's ``bit_depth``) and writes a
PNG. Each copy is named from the source image's bytes, the size and the drawn level, so a
later run with the same images and settings finds the files in place; their features then
come from the feature cache like any other image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

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
    draws = np.random.default_rng(seed).integers(low, high + 1, size=(copies, len(paths)))
    return _write_copies(paths, Path(folder), draws, size, ".jpg", _write_jpeg)


def posterize_copies(
    paths: Sequence[Path],
    folder: str | Path,
    *,
    copies: int,
    bits: tuple[int, int],
    size: int,
    seed: int = 0,
) -> list[Path]:
    """Write ``copies`` posterized versions of every image (PNG) and return their paths.

    Args:
        paths, folder, copies, size: as :func:`jpeg_copies`.
        bits: inclusive range of the bits kept per channel (1..8), one value drawn per copy.
        seed: seed of the bit draws (a stream apart from :func:`jpeg_copies`' draws).

    Returns:
        ``copies * len(paths)`` paths, ordered as :func:`jpeg_copies` orders them.
    """
    low, high = bits
    if not 1 <= low <= high <= 8:
        raise ValueError(f"posterize bits range must satisfy 1 <= low <= high <= 8, got {bits}")
    if copies < 0:
        raise ValueError(f"posterize copies must be >= 0, got {copies}")
    draws = np.random.default_rng([seed, 1]).integers(low, high + 1, size=(copies, len(paths)))
    return _write_copies(paths, Path(folder), draws, size, ".png", _write_posterized)


def _write_copies(
    paths: Sequence[Path],
    folder: Path,
    levels: np.ndarray,
    size: int,
    suffix: str,
    write: Callable[[Image.Image, Path, int], None],
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    digests = [file_digest(Path(p)) for p in paths]
    out = []
    for copy_levels in levels:
        for path, digest, level in zip(paths, digests, copy_levels, strict=True):
            name = hashlib.sha256(f"{digest}:{size}:{int(level)}".encode()).hexdigest()[:32]
            target = folder / f"{name}{suffix}"
            if not target.is_file():
                write(_as_pil(load_image(path, size=size)), target, int(level))
            out.append(target)
    return out


def _as_pil(image: torch.Tensor) -> Image.Image:
    array = (image.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(array)


def _write_jpeg(image: Image.Image, target: Path, quality: int) -> None:
    atomic_write(target, lambda tmp: image.save(tmp, "JPEG", quality=quality))


def _write_posterized(image: Image.Image, target: Path, bits: int) -> None:
    atomic_write(target, lambda tmp: ImageOps.posterize(image, bits).save(tmp, "PNG"))
