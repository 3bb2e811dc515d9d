"""Resolving the ``--device`` / ``device=`` argument of every entry point, and the memory
format convolutions run fastest in on each device."""

from __future__ import annotations

import torch
from torch import nn


def pick_device(device: str | torch.device | None) -> torch.device:
    """Resolve a device argument; "cuda" without a GPU raises a clear error."""
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is available")
    return device


def prefers_channels_last(device: torch.device) -> bool:
    """Whether the convolutions of facecat's networks run faster channels-last on ``device``.

    True on the CPU (oneDNN's channels-last kernels ran the facecat-small feature path about
    2x and CDCN training about 1.5x faster on 2 x86-64 cores, `benchmarks/bench_scale.py`);
    False on GPUs, where float32 GroupNorm on channels-last tensors was 20-25% slower.
    """
    return device.type == "cpu"


def conv_memory_format(module: nn.Module, channels_last: bool) -> torch.memory_format:
    """Put ``module``'s 4-D weights in the chosen memory format and return that format.

    The values are unchanged; only their layout is (nothing is copied when it already
    matches). Inputs converted to the returned format then run in it end to end.

    Returns:
        ``torch.channels_last`` or ``torch.contiguous_format``.
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    kernels = (p for p in module.parameters() if p.ndim == 4 and p.shape[-1] > 1)
    first = next(kernels, None)
    if first is not None and not first.is_contiguous(memory_format=memory_format):
        module.to(memory_format=memory_format)
    return memory_format
