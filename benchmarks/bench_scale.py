"""Scale benchmarks: UNet FLOPs, extraction speed against the FLOP-bound limit, GPU dtypes,
the JPEG suite's throughput and torchrun with 1 vs 2 processes.

Prints markdown tables; never asserts a time. Sections (``--sections``, comma-separated):

* ``flops``: FLOPs of one UNet forward per image (full denoiser forward and the feature path
  that extraction runs), counted with ``torch.utils.flop_counter`` on the meta device, for
  ``facecat-ffhq256`` and ``facecat-small``.
* ``extract``: images/s of feature extraction on ``--device`` per config, dtype, batch size and
  memory format, next to the device's measured matrix-product rate (the FLOP-bound limit of
  the same dtype), and the fraction of that limit reached.
* ``attention``: extraction images/s with PyTorch's fused attention kernels (the default)
  against its unfused math kernel, side by side.
* ``jpeg``: images/s of the robustness JPEG check's inner loop (differentiable JPEG at each
  severity + FaceCat scoring) on ``--device``.
* ``torchrun``: wall time of ``facecat train`` on the LFW demonstration set with 1 and
  with 2 processes under torchrun (CPU, gloo), side by side.

Run: ``python benchmarks/bench_scale.py --device cuda --sections flops,extract,jpeg``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from facecat import create_detector
from facecat.models.features import DTYPES

CONFIGS = ("facecat-ffhq256", "facecat-small")
FUSED_AND_MATH = [
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.MATH,
]


def unet_flops(config: str) -> tuple[float, float]:
    """FLOPs per image of the full UNet forward and of the feature path (meta device)."""
    detector = create_detector(config, device="meta", text_guided=False)
    extractor = detector.extractor
    size = detector.image_size
    x = torch.zeros(1, 3, size, size, device="meta")
    t = torch.zeros(1, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as full:
        extractor.unet(x, t)
    with FlopCounterMode(display=False) as features:
        extractor.unet.decoder_features(x, t, extractor.config.blocks)
    return full.get_total_flops(), features.get_total_flops()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds per call of ``fn`` after a warm-up call."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """Measured FLOP/s of a large square matrix product in ``dtype`` (the FLOP-bound limit).

    float32 is measured with TF32 tensor cores allowed, as cuDNN runs float32 convolutions
    by default on GPUs that have them.
    """
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    allowed = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        seconds = _timed(lambda: a @ b, device, 10 if device.type == "cuda" else 3)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allowed
    return 2 * n**3 / seconds


def extraction_rates(
    config: str,
    device: torch.device,
    dtypes: tuple[str, ...],
    batches: tuple[int, ...],
    compile_too: bool,
) -> list[tuple[str, int, str, float]]:
    """Images/s of feature extraction per (dtype, batch, variant); random backbone weights
    (the speed does not depend on them). Variants: plain, channels_last, compiled."""
    detector = create_detector(config, device=device, text_guided=False, unet_weights="random")
    extractor = detector.extractor
    size = detector.image_size
    repeats = 1 if (config == "facecat-ffhq256" and device.type == "cpu") else 5
    variants = [("plain", {}), ("channels_last", {"channels_last": True})]
    if compile_too:
        variants.append(("compiled+channels_last", {"channels_last": True, "compile": True}))
    rows = []
    for variant, options in variants if device.type == "cuda" else variants[:1]:
        extractor.accelerate(**options)
        for dtype in dtypes:
            extractor.config = dataclasses.replace(extractor.config, compute_dtype=dtype)
            for batch in batches:
                images = torch.rand(batch, 3, size, size, device=device)
                try:
                    rate = batch / _timed(lambda x=images: extractor(x), device, repeats)
                except torch.OutOfMemoryError:
                    rate = float("nan")
                rows.append((dtype, batch, variant, rate))
                del images
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def section_flops(configs: list[str]) -> dict[str, float]:
    print("\n## UNet FLOPs per image\n")
    print("| config | full forward (GFLOP) | feature path (GFLOP) |")
    print("|---|---|---|")
    feature_flops = {}
    for config in configs:
        full, features = unet_flops(config)
        feature_flops[config] = features
        print(f"| {config} | {full / 1e9:.1f} | {features / 1e9:.1f} |")
    return feature_flops


def section_extract(
    device: torch.device, feature_flops: dict[str, float], quick: bool, compile_too: bool
) -> None:
    configs = list(feature_flops)
    print(f"\n## Feature extraction on {_device_name(device)}\n")
    dtypes = ("float32", "float16", "bfloat16") if device.type == "cuda" else ("float32",)
    limits = {d: matmul_rate(device, DTYPES[d]) for d in dtypes}
    for d, rate in limits.items():
        print(f"- measured {d} matrix-product rate (limit): {rate / 1e12:.2f} TFLOP/s")
    plans = {
        "facecat-ffhq256": (1, 8, 32, 64) if device.type == "cuda" else (1,),
        "facecat-small": (8, 64, 256) if device.type == "cuda" else (1, 8, 32),
    }
    for config in configs:
        print(f"\n{config}:\n")
        print("| dtype | batch | variant | images/s | TFLOP/s | of limit |")
        print("|---|---|---|---|---|---|")
        batches = plans[config][-2:] if quick else plans[config]
        for dtype, batch, variant, rate in extraction_rates(
            config, device, dtypes, batches, compile_too and config == "facecat-small"
        ):
            achieved = rate * feature_flops[config]
            print(
                f"| {dtype} | {batch} | {variant} | {rate:.1f} | {achieved / 1e12:.3f} | "
                f"{achieved / limits[dtype]:.1%} |",
                flush=True,
            )


def section_attention(device: torch.device, configs: list[str]) -> None:
    """Extraction with SDPA's fused kernels (default) against its unfused math kernel."""
    print(f"\n## Attention kernel, fused vs math, on {_device_name(device)}\n")
    print("| config | dtype | batch | math kernel images/s | fused images/s | speed-up |")
    print("|---|---|---|---|---|---|")
    dtype = "float16" if device.type == "cuda" else "float32"
    for config in configs:
        batch = 32 if device.type == "cuda" or config == "facecat-small" else 1
        detector = create_detector(
            config,
            device=device,
            text_guided=False,
            unet_weights="random",
            features={"compute_dtype": dtype},
        )
        images = torch.rand(batch, 3, detector.image_size, detector.image_size, device=device)
        repeats = 1 if (config == "facecat-ffhq256" and device.type == "cpu") else 5
        rates = {}
        for kernel in ("math", "fused"):
            backends = [SDPBackend.MATH] if kernel == "math" else FUSED_AND_MATH
            with sdpa_kernel(backends):
                extract = partial(detector.extractor, images)
                rates[kernel] = batch / _timed(extract, device, repeats)
        print(
            f"| {config} | {dtype} | {batch} | {rates['math']:.1f} | {rates['fused']:.1f} | "
            f"{rates['fused'] / rates['math']:.2f}x |",
            flush=True,
        )


def section_jpeg(device: torch.device) -> None:
    from facecat.evaluation.evaluate import score_images
    from facecat.robustness.checks import SEVERITIES
    from facecat.robustness.transforms import apply_transform

    print(f"\n## JPEG check inner loop on {_device_name(device)} (facecat-small)\n")
    detector = create_detector("facecat-small", device=device, text_guided=False).eval()
    images = torch.rand(444, 3, 64, 64, device=device)  # the embedded test split's size

    def one_severity(severity: int) -> None:
        score_images(detector, apply_transform("jpeg", images, severity))

    repeats = 3 if device.type == "cuda" else 1
    print("| severity | images/s |")
    print("|---|---|")
    for severity in SEVERITIES:
        seconds = _timed(lambda s=severity: one_severity(s), device, repeats)
        print(f"| {severity} | {len(images) / seconds:.0f} |")


def section_torchrun(epochs: int) -> None:
    from facecat.datasets.demo import write_lfw_manifest

    print("\n## facecat train under torchrun on CPU (gloo), 1 vs 2 processes\n")
    print("| processes | threads each | seconds (extraction + training) |")
    print("|---|---|---|")
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_lfw_manifest(Path(tmp) / "faces", size=64)
        seconds = {}
        for procs in (1, 2):
            threads = max(1, cores // procs)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                str(procs),
                "-m",
                "facecat.cli",
                "train",
                "--model",
                "facecat-small",
                "--manifest",
                str(manifest),
                "--out",
                str(Path(tmp) / f"run{procs}"),
                "--cache-dir",
                str(Path(tmp) / f"cache{procs}"),
                "--epochs",
                str(epochs),
                "--quiet",
            ]
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            seconds[procs] = time.perf_counter() - start
            print(f"| {procs} | {threads} | {seconds[procs]:.1f} |")
        print(f"\nspeed-up of 2 processes: {seconds[1] / seconds[2]:.2f}x")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sections", default="flops,extract,torchrun")
    parser.add_argument("--epochs", type=int, default=2, help="torchrun section's epochs")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="detector configs")
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (small)")
    args = parser.parse_args()
    device = torch.device(args.device)
    sections = args.sections.split(",")
    print(f"torch {torch.__version__}, device {_device_name(device)}, {os.cpu_count()} cores")
    feature_flops = (
        section_flops(args.configs.split(","))
        if "flops" in sections or "extract" in sections
        else {}
    )
    if "extract" in sections:
        section_extract(device, feature_flops, args.quick, args.compile)
    if "attention" in sections:
        section_attention(device, args.configs.split(","))
    if "jpeg" in sections:
        section_jpeg(device)
    if "torchrun" in sections:
        section_torchrun(args.epochs)


if __name__ == "__main__":
    main()
