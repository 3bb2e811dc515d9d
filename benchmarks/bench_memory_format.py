"""Channels-last against contiguous (NCHW) memory format on one device, side by side.

Measures the two networks facecat runs most on a CPU: the facecat-small feature path
(embedded UNet, batch 32, no gradients) and one CDCN training step (half-width CDCN at
64x64, batch 32, forward + backward + Adam). Each is timed in both layouts in the same
process, alternating, and the largest output difference between the layouts is printed.
Prints a markdown table; never asserts a time.

Run: ``python benchmarks/bench_memory_format.py [--device cuda] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from facecat import create_detector
from facecat.core.device import pick_device

BATCH = 32


def _seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds per call of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def feature_path(device: torch.device, repeats: int) -> tuple[float, float, float]:
    """Seconds per batch of facecat-small extraction, contiguous and channels-last, and the
    largest feature difference between the two."""
    extractor = create_detector("facecat-small", device=device).extractor
    images = torch.rand(BATCH, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    images = images.to(device)
    results = {}
    for channels_last in (False, True, False, True):
        extractor.accelerate(channels_last=channels_last)
        seconds = _seconds(lambda: extractor(images), device, repeats)
        results[channels_last] = min(seconds, results.get(channels_last, float("inf")))
    extractor.accelerate(channels_last=False)
    plain = extractor(images)
    extractor.accelerate(channels_last=True)
    fast = extractor(images)
    difference = max((a - b).abs().max().item() for a, b in zip(plain, fast, strict=True))
    return results[False], results[True], difference


def cdcn_step(device: torch.device, repeats: int) -> tuple[float, float, float]:
    """Seconds per CDCN training step with the network contiguous and channels-last, and the
    largest depth-map difference between the two (eval mode, same weights)."""
    torch.manual_seed(0)
    detector = create_detector("cdcn").to(device).train()
    network = detector.network
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    images = torch.rand(BATCH, 3, 64, 64, device=device) * 2 - 1

    def step(memory_format: torch.memory_format) -> None:
        depth = network(images.contiguous(memory_format=memory_format))
        loss = depth.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    results = {}
    for memory_format in (torch.contiguous_format, torch.channels_last) * 2:
        network.to(memory_format=memory_format)
        seconds = _seconds(lambda f=memory_format: step(f), device, repeats)
        results[memory_format] = min(seconds, results.get(memory_format, float("inf")))
    network.eval()
    with torch.no_grad():
        network.to(memory_format=torch.contiguous_format)
        plain = network(images)
        network.to(memory_format=torch.channels_last)
        fast = network(images.contiguous(memory_format=torch.channels_last))
    difference = (plain - fast).abs().max().item()
    return results[torch.contiguous_format], results[torch.channels_last], difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = pick_device(args.device)
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.machine()}, batch {BATCH}"
    )
    print("| workload | contiguous s/batch | channels-last s/batch | speed-up | max difference |")
    print("|---|---|---|---|---|")
    for name, measure in (
        ("facecat-small feature path", feature_path),
        ("CDCN training step", cdcn_step),
    ):
        plain, fast, difference = measure(device, args.repeats)
        print(f"| {name} | {plain:.3f} | {fast:.3f} | {plain / fast:.2f}x | {difference:.1e} |")


if __name__ == "__main__":
    main()
