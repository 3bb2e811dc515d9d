"""The clustered-dot half-tone screen that every simulated print shares.

A colour printer lays each ink (cyan, magenta, yellow) through its own screen, rotated to its
own angle so that the dot rows of the inks do not beat. Here a screen is a threshold map:
ink goes down where a channel's ink demand (one minus its colour) exceeds the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def clustered_dot_screen(
    height: int,
    width: int,
    period: float,
    angles: Sequence[float],
    phase: tuple[float, float] = (0.0, 0.0),
    *,
    like: Tensor,
) -> Tensor:
    """Thresholds of a clustered-dot screen, one rotated screen per channel.

    The threshold at pixel (x, y) is ``0.5 + 0.25 (cos(k p) + cos(k q))``, where (p, q) are
    the phase-shifted pixel coordinates rotated by the channel's angle and k = 2 pi / period.

    Args:
        height: rows of the screen.
        width: columns of the screen.
        period: dot cell size in pixels.
        angles: screen angle of each channel, in degrees.
        phase: shift (x, y) of the screen, in pixels.
        like: tensor whose dtype and device the screen takes.

    Shape:
        Returns (len(angles), height, width).

    Returns:
        Thresholds in [0, 1].
    """
    ys = torch.arange(height, dtype=like.dtype, device=like.device)[:, None]
    xs = torch.arange(width, dtype=like.dtype, device=like.device)[None, :]
    k = 2.0 * math.pi / period
    planes = []
    for degrees in angles:
        a = math.radians(degrees)
        p = (xs + phase[0]) * math.cos(a) + (ys + phase[1]) * math.sin(a)
        q = -(xs + phase[0]) * math.sin(a) + (ys + phase[1]) * math.cos(a)
        planes.append(0.5 + 0.25 * (torch.cos(k * p) + torch.cos(k * q)))
    return torch.stack(planes)
