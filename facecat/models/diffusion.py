"""Gaussian diffusion forward process (DDPM), as used by guided-diffusion."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class GaussianDiffusion:
    """Forward (noising) process with a linear beta schedule.

    Betas are ``linspace(1e-4, 0.02, T)`` scaled by ``1000 / T`` (guided-diffusion's linear
    schedule), computed in float64. Timesteps are passed to the UNet raw (0..T-1).

    Args:
        steps: number of diffusion steps T.
    """

    def __init__(self, steps: int = 1000) -> None:
        if steps < 1:
            raise ValueError(f"diffusion steps must be >= 1, got {steps}")
        scale = 1000 / steps
        betas = np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64)
        self.steps = steps
        self.betas = betas
        self.alphas_cumprod = np.cumprod(1.0 - betas)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)

    def _gather(self, table: np.ndarray, t: Tensor, like: Tensor) -> Tensor:
        if t.device.type != "meta" and (torch.any(t < 0) or torch.any(t >= self.steps)):
            raise ValueError(f"timesteps must lie in [0, {self.steps - 1}], got {t.tolist()}")
        values = torch.as_tensor(table, device=like.device)[t.to(like.device)].to(like.dtype)
        return values.reshape(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Sample ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

        Shape:
            x0, noise: (B, C, H, W); t: (B,) integer steps -> (B, C, H, W)
        """
        return (
            self._gather(self.sqrt_alphas_cumprod, t, x0) * x0
            + self._gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )
