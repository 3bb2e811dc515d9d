"""The camera of the embedded protocol: one seeded capture pipeline for every image it holds.

The bona fide sources differ in how they were made: DCGAN faces are rendered at 64x64 and
are smooth and noiseless, the LFW crops are upscaled from 25x25, and the two colour portraits
are downscaled from sharp JPEG photographs. Left as they are, the source is a shortcut (a
detector learns "smooth like the DCGAN" for bona fide and rejects sharp real photographs).
The protocol therefore shows every image to the same simulated camera as its last stage: a
bona fide face is ``capture(face)``, a presentation attack is ``capture(attack(face))``
(the instrument is presented to the camera), so no capture statistic (resampling, blur,
noise, sharpening, JPEG blocks) tells the classes apart. An attack is not simulated on an
already captured face: the double JPEG of a local attack on top of a capture would itself
be a class cue. Adversarial faces are digital: they are crafted on the captured bona fide
face and reach the detector without another capture.

Stages, each strength drawn per image from :class:`CaptureSettings`: resampling (down by a
factor, back up), Gaussian optical blur, Poisson-Gaussian sensor noise, unsharp-mask
sharpening (the camera's image processor), 8-bit quantisation and JPEG (Pillow's libjpeg,
4:2:0 chroma). ``VERSION`` is part of the protocol's build key: raise it whenever the output
for the same image, settings and seed changes.

Example:
    >>> import torch
    >>> capture(torch.rand(3, 64, 64), seed=0).shape
    torch.Size([3, 64, 64])
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from PIL import Image
from torch import Tensor

__all__ = ["VERSION", "CaptureSettings", "capture"]

VERSION = 1


@dataclass(frozen=True)
class CaptureSettings:
    """Uniform ranges ``(low, high)`` of the capture conditions, one draw per image.

    Args:
        scale: resampling factor (the camera's resolution relative to the crop).
        blur: optical blur sigma in pixels of the crop.
        read_noise: sensor read-noise sigma (intensity units in ``[0, 1]``).
        shot_noise: shot-noise gain: variance ``shot_noise * intensity``.
        sharpen: unsharp-mask amount (radius 1 px).
        quality: JPEG quality (integers, inclusive).
    """

    scale: tuple[float, float] = (0.5, 1.0)
    blur: tuple[float, float] = (0.0, 0.6)
    read_noise: tuple[float, float] = (0.002, 0.012)
    shot_noise: tuple[float, float] = (0.0, 1.5e-4)
    sharpen: tuple[float, float] = (0.0, 0.8)
    quality: tuple[int, int] = (40, 95)

    def __post_init__(self) -> None:
        for name, (low, high) in asdict(self).items():
            if not 0 <= low <= high:
                raise ValueError(f"capture {name}: need 0 <= low <= high, got ({low}, {high})")
        if not (self.scale[0] > 0 and self.scale[1] <= 1):
            raise ValueError(f"capture scale must lie in (0, 1], got {self.scale}")
        if not (self.quality[0] >= 1 and self.quality[1] <= 95):
            raise ValueError(f"capture quality must lie in [1, 95], got {self.quality}")

    def as_dict(self) -> dict[str, list[float]]:
        """The ranges as plain lists (for build keys and manifests)."""
        return {name: list(bounds) for name, bounds in asdict(self).items()}


def capture(image: Tensor, *, seed: int, settings: CaptureSettings | None = None) -> Tensor:
    """Photograph ``image`` with the simulated camera, deterministically under ``seed``.

    Args:
        image: RGB image in ``[0, 1]``.
        seed: seed of every draw (strengths and noise).
        settings: the ranges of the conditions (default :class:`CaptureSettings`).

    Shape:
        - image, output: :math:`(3, H, W)`

    Returns:
        The captured image (float32, on the CPU), 8-bit values in ``[0, 1]`` as decoded from
        the JPEG.

    Raises:
        ValueError: for an image that is not ``(3, H, W)`` with ``H, W >= 8`` and values in
            ``[0, 1]``.
    """
    if image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 8:
        raise ValueError(
            f"capture expects a (3, H, W) image with H, W >= 8, got {tuple(image.shape)}"
        )
    if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError("capture expects finite values in [0, 1]")
    settings = settings or CaptureSettings()
    rng = torch.Generator().manual_seed(seed)

    def draw(bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low + (high - low) * float(torch.rand((), generator=rng))

    out = image.detach().float().cpu()[None]
    height, width = out.shape[-2:]
    scale = draw(settings.scale)
    small = (max(8, round(height * scale)), max(8, round(width * scale)))
    out = F.interpolate(out, size=small, mode="bilinear", antialias=True, align_corners=False)
    out = F.interpolate(out, size=(height, width), mode="bicubic", align_corners=False)
    sigma = draw(settings.blur)
    if sigma > 0.05:
        out = gaussian_blur2d(out, (5, 5), (sigma, sigma), border_type="reflect")
    out = out.clamp(0, 1)
    variance = draw(settings.read_noise) ** 2 + draw(settings.shot_noise) * out
    out = out + variance.sqrt() * torch.randn(out.shape, generator=rng)
    amount = draw(settings.sharpen)
    out = out + amount * (out - gaussian_blur2d(out, (5, 5), (1.0, 1.0), border_type="reflect"))
    low, high = settings.quality
    quality = int(torch.randint(low, high + 1, (), generator=rng))
    return _jpeg(out[0].clamp(0, 1), quality)


def _jpeg(image: Tensor, quality: int) -> Tensor:
    array = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality, subsampling="4:2:0")
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1)
