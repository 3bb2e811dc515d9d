"""``facecat --help`` start-up against ``import torch``, side by side.

Prints the median wall time (after one unmeasured warm-up run each) of a fresh interpreter
running ``import torch`` (the baseline: what every command that loads torch pays first) and
one running ``facecat --help`` (``python -m facecat.cli --help``, what the console script
runs), and their ratio.

Run: ``python benchmarks/bench_cli_startup.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "facecat --help": [sys.executable, "-m", "facecat.cli", "--help"],
}


def median_seconds(command: list[str], repeats: int) -> float:
    """Median wall time of ``repeats`` runs of ``command``, after one warm-up run."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    seconds = {label: median_seconds(command, args.repeats) for label, command in COMMANDS.items()}
    for label, value in seconds.items():
        print(f"{label}: {value:.3f} s (median of {args.repeats})")
    baseline, help_ = seconds.values()
    print(f"facecat --help / import torch: {help_ / baseline:.3f}x")


if __name__ == "__main__":
    main()
