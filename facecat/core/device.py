"""Resolving the ``--device`` / ``device=`` argument of every entry point."""

from __future__ import annotations

import torch


def pick_device(device: str | torch.device | None) -> torch.device:
    """Resolve a device argument; "cuda" without a GPU raises a clear error."""
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is available")
    return device
