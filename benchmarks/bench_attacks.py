"""Throughput of every adversarial attack type against an FR target, side by side.

Prints, for each of the 14 adversarial types crafted on the same bundled test faces:
images/s, seconds, the ratio of its time per image to one FR forward + backward pass per
image (the attacks' unit of work, measured in the same run), and the ASR. Two settings are
measured: the attacks' defaults (used by ``facecat attack`` and ``facecat attack-table``) and
the cheaper settings of the embedded protocol build (``protocol_attack_options``).

Run: ``python benchmarks/bench_attacks.py [--faces 16] [--threads 2] [--settings both]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from facecat.datasets.adversarial_faces import (
    bundled_test_faces,
    create_recognizer,
    protocol_attack_options,
    success_table,
)
from facecat.datasets.protocol import ADVERSARIAL_TYPES


def forward_backward_seconds(recognizer: torch.nn.Module, images: torch.Tensor) -> float:
    """Seconds per image of one embedding forward + backward pass (after a warm-up)."""
    recognizer(images[:2]).sum()
    batch = images.clone().requires_grad_(True)
    start = time.perf_counter()
    recognizer(batch).sum().backward()
    return (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--types", help="comma-separated subset (default: all 14)")
    parser.add_argument("--settings", choices=("default", "protocol", "both"), default="both")
    parser.add_argument("--fr", default="dlib")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recognizer = create_recognizer(args.fr)
    images, landmarks, subjects, _ = bundled_test_faces(args.faces)
    types = tuple(args.types.split(",")) if args.types else ADVERSARIAL_TYPES
    unit = forward_backward_seconds(recognizer, images)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, {len(images)} faces, FR target {recognizer.name}: "
        f"forward+backward {1000 * unit:.1f} ms/image"
    )
    settings = {"default": {}, "protocol": protocol_attack_options()}
    chosen = settings if args.settings == "both" else {args.settings: settings[args.settings]}
    for name, options in chosen.items():
        table = success_table(
            recognizer, images, landmarks, subjects, types=types, options=options, seed=0
        )
        table["x_fwd_bwd"] = table["seconds"] / len(images) / unit
        print(f"\n{name} settings {options or '(attack defaults)'}")
        columns = ["type", "images_per_s", "seconds", "x_fwd_bwd", "asr", "mean_queries"]
        print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
