"""Images in and out of the models: decoding, validation, and the image-file dataset.

Images are handed to models as BCHW float32 tensors in [0, 1], RGB; :func:`load_image` decodes
one file (mode conversion, size and resize policy, a pixel-count limit against decompression
bombs) and :func:`check_image_batch` is the one check every detector runs on its input.
:class:`ImageFiles` is a ``Dataset`` of files read this way.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

RESIZE_POLICIES: tuple[str, ...] = ("resize", "center_crop", "error")

#: Largest image (width * height) :func:`load_image` accepts unless ``max_pixels`` is given
#: or the environment variable ``FACECAT_MAX_PIXELS`` sets another default (so the command
#: line can be configured too). PIL's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 179 M
#: pixels) still applies on top.
DEFAULT_MAX_PIXELS = 1 << 26
MAX_PIXELS_ENV = "FACECAT_MAX_PIXELS"


class ImageLoadError(OSError):
    """An image file cannot be read or does not meet the requested policy."""


class ImageBatchError(ValueError):
    """A batch of images is not a BCHW float tensor with 3 channels and values in [0, 1]."""


class ImageLoadWarning(UserWarning):
    """An image was converted (mode, aspect ratio) while loading."""


_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def default_max_pixels() -> int:
    """``$FACECAT_MAX_PIXELS`` when set (a positive integer), else :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        ValueError: If the variable is set but is not a positive integer.
    """
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV}={text!r} must be a positive integer (pixels)")
    return value


def _decode(
    path: Path, max_pixels: int | None, size: int | None, resize: str
) -> tuple[np.ndarray, str | None, tuple[int, int]]:
    """Open, check and decode one image into an RGB HWC array (uint8 or float32)."""
    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{path}: image file not found") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"{path}: refused as a possible decompression bomb ({exc}); PIL's global limit "
            "PIL.Image.MAX_IMAGE_PIXELS applies on top of max_pixels"
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct.error, ...
        raise ImageLoadError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageLoadError(f"{path}: image has no pixels ({width}x{height})")
        if width * height > limit:
            raise ImageLoadError(
                f"{path}: {width}x{height} = {width * height} pixels exceeds max_pixels={limit}; "
                "refused as a possible decompression bomb (if the image is genuine, pass a "
                f"larger max_pixels or set {MAX_PIXELS_ENV})"
            )
        if resize == "error" and size is not None and (width, height) != (size, size):
            raise ImageLoadError(
                f"{path}: image is {width}x{height}, expected {size}x{size} (resize='error')"
            )
        mode = im.mode
        has_alpha = "A" in mode or "a" in mode or "transparency" in im.info
        try:
            im.load()
            if mode == "RGB":
                array = np.array(im)
            elif mode in _SIXTEEN_BIT:
                gray = np.asarray(im).astype(np.float32) / 65535.0
                array = np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
            elif mode == "F":
                raise ImageLoadError(f"{path}: unsupported image mode 'F' (32-bit float)")
            else:
                rgb = im.convert("RGBA").convert("RGB") if has_alpha else im.convert("RGB")
                array = np.array(rgb)
        except ImageLoadError:
            raise
        except MemoryError:
            raise
        except Exception as exc:  # truncated data, broken streams, decoder errors
            raise ImageLoadError(
                f"{path}: cannot decode image ({type(exc).__name__}: {exc})"
            ) from exc
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageLoadError(f"{path}: decoded to an unexpected shape {array.shape}")
    note = None
    if mode != "RGB":
        note = mode + (", alpha dropped" if has_alpha else "")
    return array, note, (width, height)


def _to_tensor(array: np.ndarray, size: int | None, resize: str) -> tuple[torch.Tensor, bool]:
    """HWC array to CHW float32 in [0, 1], cropped/resized; also says if it was non-square."""
    if array.dtype == np.uint8:
        image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0
    else:
        image = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)
    height, width = image.shape[1:]
    non_square = height != width
    if size is None or resize == "error":
        return image.contiguous(), False
    if resize == "center_crop" and non_square:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[:, top : top + side, left : left + side]
    if tuple(image.shape[1:]) != (size, size):
        image = F.interpolate(
            image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )[0].clamp_(0.0, 1.0)
    return image.contiguous(), non_square and resize == "resize"


def _check_policy(size: int | None, resize: str) -> None:
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"unknown resize policy {resize!r}; expected one of {RESIZE_POLICIES}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ValueError(f"size must be a positive int or None, got {size!r}")


def load_image(
    path: str | os.PathLike[str],
    *,
    size: int | None,
    resize: str = "resize",
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Load one image as an RGB float32 tensor in [0, 1].

    Grayscale, palette, alpha and 16-bit images are converted to RGB with one
    :class:`ImageLoadWarning` naming the file and its mode.

    Args:
        path: Image file.
        size: Output side length, or None to keep the image's size.
        resize: ``"resize"`` (bilinear with antialias to size x size; warns if the image is
            not square), ``"center_crop"`` (crop the central square, then resize) or
            ``"error"`` (raise unless the image is already size x size).
        max_pixels: Largest accepted width * height; None uses :func:`default_max_pixels`
            (``$FACECAT_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`).

    Returns:
        Tensor [3, H, W] (H = W = size when size is given), float32 in [0, 1].

    Raises:
        ImageLoadError: If the file is missing, unreadable, truncated, too large, or of the
            wrong size under ``resize="error"``.
    """
    _check_policy(size, resize)
    path = Path(path)
    array, note, (width, height) = _decode(path, max_pixels, size, resize)
    if note:
        warnings.warn(f"{path}: mode {note} converted to RGB", ImageLoadWarning, stacklevel=2)
    image, distorted = _to_tensor(array, size, resize)
    if distorted:
        warnings.warn(
            f"{path}: {width}x{height} is not square; resizing to {size}x{size} distorts the "
            "aspect ratio (use resize='center_crop' to keep it)",
            ImageLoadWarning,
            stacklevel=2,
        )
    return image


def load_images(
    paths: Iterable[str | os.PathLike[str]],
    *,
    size: int | None,
    resize: str = "resize",
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Load images into one batch; conversion warnings are grouped into one per kind.

    Args:
        paths: Image files.
        size: Output side length; None requires all images to have the same size.
        resize: Resize policy, as in :func:`load_image`.
        max_pixels: Largest accepted width * height per image, as in :func:`load_image`.

    Returns:
        Tensor [N, 3, S, S] float32 in [0, 1].

    Raises:
        ImageLoadError: As :func:`load_image`, for the first failing file.
        ValueError: If ``size`` is None and the images differ in size, or no paths with
            ``size`` None.
    """
    _check_policy(size, resize)
    paths = [Path(p) for p in paths]
    if not paths:
        if size is None:
            raise ValueError("no paths given and size is None: cannot infer the batch shape")
        return torch.empty(0, 3, size, size)
    converted: list[str] = []
    distorted: list[str] = []
    batch: torch.Tensor | None = None
    for i, path in enumerate(paths):
        array, note, (width, height) = _decode(path, max_pixels, size, resize)
        image, was_distorted = _to_tensor(array, size, resize)
        if note:
            converted.append(f"{path} ({note})")
        if was_distorted:
            distorted.append(f"{path} ({width}x{height})")
        if batch is None:
            batch = torch.empty(len(paths), *image.shape)
        elif image.shape != batch.shape[1:]:
            raise ValueError(
                f"{path}: image is {image.shape[2]}x{image.shape[1]} but {paths[0]} is "
                f"{batch.shape[3]}x{batch.shape[2]}; pass size= to resize them"
            )
        batch[i] = image
    for found, what in (
        (converted, "converted to RGB"),
        (distorted, f"not square, resized to {size}x{size} (aspect ratio distorted)"),
    ):
        if found:
            listed = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            warnings.warn(
                f"{len(found)} of {len(paths)} images {what}: {listed}",
                ImageLoadWarning,
                stacklevel=2,
            )
    assert batch is not None
    return batch


def check_image_batch(images: torch.Tensor, *, name: str = "images") -> None:
    """Check a detector's input: a [B, 3, H, W] float tensor, finite, with values in [0, 1].

    One fused min/max reduction on the happy path; details are computed only on failure.

    Args:
        images: The batch.
        name: Name used in messages.

    Raises:
        ImageBatchError: Naming what is wrong (shape, dtype, range with min/max, or the count
            and first batch index of NaN/Inf values).
    """
    if not isinstance(images, torch.Tensor):
        raise ImageBatchError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ImageBatchError(
            f"{name}: expected a 4-D tensor [B, 3, H, W], got shape {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ImageBatchError(
            f"{name}: expected a floating-point tensor in [0, 1], got {images.dtype}"
            + (" (divide uint8 images by 255)" if images.dtype == torch.uint8 else "")
        )
    if images.shape[1] != 3:
        raise ImageBatchError(
            f"{name}: expected 3 (RGB) channels in dim 1 of [B, 3, H, W], got shape "
            f"{tuple(images.shape)}"
        )
    if images.numel() == 0:
        return
    low, high = torch.aminmax(images.detach())
    if bool((low >= 0) & (high <= 1)):  # False for NaN
        return
    flat = images.detach().reshape(images.shape[0], -1)
    finite = torch.isfinite(flat)
    if not bool(finite.all()):
        bad = ~finite
        count = int(bad.sum())
        first = int(bad.any(dim=1).nonzero()[0, 0])
        raise ImageBatchError(
            f"{name}: {count} non-finite value(s) (NaN/Inf); first in batch index {first}"
        )
    outside = ((flat < 0) | (flat > 1)).any(dim=1)
    first = int(outside.nonzero()[0, 0])
    raise ImageBatchError(
        f"{name}: values must lie in [0, 1]; found min {float(low):.6g}, max {float(high):.6g} "
        f"(first out-of-range image: batch index {first})"
    )


class ImageFiles(Dataset):
    """Images read from files, RGB float in [0, 1], resized to a square size.

    Args:
        paths: image files.
        size: output side length.
        resize: resize policy of :func:`load_image`.
    """

    def __init__(self, paths: Sequence[Path], size: int, resize: str = "resize") -> None:
        self.paths = [Path(p) for p in paths]
        self.size = size
        self.resize = resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.paths[index], size=self.size, resize=self.resize)
