"""A small demonstration manifest built from real LFW faces shipped with scikit-image.

Bona fide rows are the 100 real LFW face crops of ``skimage.data.lfw_subset()``; attack rows
are the same faces passed through two crude recapture simulations (a colour-shifted print
half-toned through the protocol's clustered-dot screen, and a screen replay with a moire
grid). Every face is its own subject, and subjects are split 60 / 20 / 20 into train / dev /
test. It exists for the quick start, the tests and the benchmarks; the embedded protocol is
the real evaluation set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from facecat.datasets.manifest import write_manifest
from facecat.datasets.presentation_attacks.halftone import clustered_dot_screen


def _print_attack(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = face.shape[0]
    phase = (rng.uniform(0, 4), rng.uniform(0, 4))
    screen = clustered_dot_screen(size, size, 4.0, (45.0,), phase, like=torch.zeros(()))[0]
    dots = (1 - face.mean(axis=2) <= screen.numpy()).astype(np.float64)  # paper left white
    halftoned = 0.6 * face + 0.4 * dots[..., None]
    tint = np.array([1.05, 0.95, 0.8]) * rng.uniform(0.9, 1.0)
    return np.clip(halftoned * tint + 0.05, 0, 1)


def _replay_attack(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = face.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    period = rng.uniform(2.5, 4.0)
    moire = 0.5 + 0.5 * np.sin(2 * np.pi * (xx + 0.3 * yy) / period)
    screen = face**0.8 * (0.85 + 0.15 * moire[..., None]) * np.array([0.9, 1.0, 1.1])
    return np.clip(screen, 0, 1)


def write_lfw_manifest(folder: Path, size: int = 32, faces: int = 100, seed: int = 0) -> Path:
    """Write the demonstration images and their manifest.

    Args:
        folder: output folder (created).
        size: side length of the square images.
        faces: number of LFW faces used (at most 100).
        seed: seed of the attack simulations.

    Returns:
        The manifest path (``folder/manifest.csv``).
    """
    from skimage.data import lfw_subset

    rng = np.random.default_rng(seed)
    gray = lfw_subset()[:faces]
    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(gray):
        resized = Image.fromarray((image * 255).astype(np.uint8)).resize((size, size))
        face = np.repeat(np.asarray(resized, dtype=np.float64)[..., None] / 255, 3, axis=2)
        split = "train" if index < 0.6 * faces else "dev" if index < 0.8 * faces else "test"
        variants = {
            "Live": face,
            "Paper": _print_attack(face, rng),
            "Replay": _replay_attack(face, rng),
        }
        for kind, pixels in variants.items():
            name = f"{kind.lower()}_{index:03d}.png"
            Image.fromarray((pixels * 255).round().astype(np.uint8)).save(folder / name)
            rows.append(
                {
                    "path": name,
                    "label": int(kind == "Live"),
                    "attack_type": kind,
                    "split": split,
                    "subject": f"lfw{index:03d}",
                }
            )
    manifest = folder / "manifest.csv"
    write_manifest(pd.DataFrame(rows), manifest)
    return manifest
