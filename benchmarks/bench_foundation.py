"""Feature-extraction throughput and the feature cache's training speed-up, side by side.

Prints, for a detector config (default ``facecat-small``) on the chosen device:

* images/s of frozen-backbone feature extraction at a few batch sizes;
* wall time of an N-epoch training run that re-extracts features every epoch (as the
  authors' release does) and of the same run with the feature cache (extraction included),
  and their ratio.

Run: ``python benchmarks/bench_foundation.py [--model facecat-small] [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from pathlib import Path

import torch

from facecat import create_detector
from facecat.datasets.demo import write_lfw_manifest
from facecat.datasets.manifest import read_manifest
from facecat.models.config import TrainConfig
from facecat.training.facecat import train_facecat


def extraction_rate(model: str, batch_size: int, device: torch.device, repeats: int) -> float:
    """Images per second of ``extractor(images)`` after one warm-up batch."""
    detector = create_detector(model, device=device, text_guided=False)
    size = detector.image_size
    images = torch.rand(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    images = images.to(device)
    detector.extractor(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        detector.extractor(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch_size * repeats / (time.perf_counter() - start)


def training_time(model: str, manifest: Path, epochs: int, use_cache: bool, work: Path) -> float:
    """Seconds of a full training run (feature extraction included)."""
    data = read_manifest(manifest)
    detector = create_detector(model)
    start = time.perf_counter()
    train_facecat(
        detector,
        data.split("train"),
        data.split("dev"),
        work / f"run-cache-{use_cache}",
        config=TrainConfig(epochs=epochs, batch_size=32),
        use_cache=use_cache,
        progress=False,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="facecat-small")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--skip-training", action="store_true", help="extraction figures only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, device {device}"
    )
    features = create_detector(args.model, text_guided=False, device="meta").config.features
    print(f"config: {args.model}, compute dtype {features.compute_dtype}")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        rate = extraction_rate(args.model, batch_size, device, repeats=max(1, 64 // batch_size))
        print(
            f"feature extraction, batch {batch_size:3d}: {rate:8.1f} images/s "
            f"({1000 / rate:.1f} ms/image)"
        )
    if args.skip_training:
        return
    size = create_detector(args.model, text_guided=False).image_size
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest = write_lfw_manifest(work / "data", size=size)
        uncached = training_time(args.model, manifest, args.epochs, False, work)
        cached = training_time(args.model, manifest, args.epochs, True, work)
    print(f"{args.epochs}-epoch training on 180 train + 60 dev images:")
    print(f"  re-extract every epoch: {uncached:7.1f} s")
    print(f"  feature cache:          {cached:7.1f} s (extraction included)")
    print(f"  ratio without/with cache: {uncached / cached:.2f}x")


if __name__ == "__main__":
    main()
