"""Pretraining of a face diffusion model (DDPM, L_simple) for FaceCat's frozen backbone.

The project's guided-diffusion UNet learns to predict the noise added by the linear-schedule
forward process (``L_simple``: mean squared error on epsilon; the variance channels of a
``learn_sigma`` UNet are left untouched). Faces come from a stream that mixes DCGAN faces
generated on the fly (unlimited, varied identities) with real training photos (random
horizontal flips). ``low_noise_fraction`` of every batch draws its timesteps from
``[0, low_noise_max)`` to favour the low-noise steps FaceCat reads, the rest
uniformly from all steps. An exponential moving average of the weights is kept and is what
gets exported. Training checkpoints atomically and resumes exactly; it can start from
existing UNet weights (``init_weights``, e.g. the shipped ones) to train them further.
:func:`noise_prediction_mse` is the quality figure of a trained UNet: its epsilon MSE on held
out faces at given timesteps (1.0 for an untrained UNet).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import safetensors.torch
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from facecat.core.checkpoints import (
    CheckpointError,
    atomic_write,
    load_state_dict_file,
    load_strict,
)
from facecat.core.images import load_images
from facecat.datasets.dcgan import LATENT_DIM, load_generator
from facecat.models.diffusion import GaussianDiffusion
from facecat.models.unet import UNet, UNetConfig
from facecat.training.cache import file_digest

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "fdm-checkpoint.pt"
LOSS_LOG_NAME = "fdm-loss.csv"
WEIGHTS_NAME = "unet.safetensors"


@dataclass(frozen=True)
class PretrainConfig:
    """DDPM pretraining settings.

    Attributes:
        steps: optimiser steps.
        batch_size: images per step.
        lr: AdamW learning rate (linear warm-up over ``warmup`` steps, then constant, or
            cosine-decayed to zero at ``steps`` with ``lr_decay="cosine"``).
        warmup: warm-up steps.
        lr_decay: "constant" or "cosine".
        ema_decay: decay of the exported exponential moving average.
        low_noise_fraction: share of each batch with timesteps in ``[0, low_noise_max)``.
        low_noise_max: upper bound of the favoured timesteps.
        real_fraction: share of each batch taken from the real photos (when given).
        checkpoint_every: steps between checkpoints.
        log_every: steps between loss-log rows.
        seed: seed of the latents, timesteps, noise and photo sampling.
        amp: bfloat16 autocast on CUDA.
        time_budget_s: stop (checkpoint and export) once this much wall time has passed.
        export_dtype: "float32" or "float16" for the exported weights.
    """

    steps: int = 20_000
    batch_size: int = 64
    lr: float = 2e-4
    warmup: int = 500
    lr_decay: str = "constant"
    ema_decay: float = 0.999
    low_noise_fraction: float = 0.5
    low_noise_max: int = 200
    real_fraction: float = 0.25
    checkpoint_every: int = 1_000
    log_every: int = 50
    seed: int = 0
    amp: bool = True
    time_budget_s: float | None = None
    export_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.lr_decay not in ("constant", "cosine"):
            raise ValueError(f"lr_decay must be 'constant' or 'cosine', got {self.lr_decay!r}")

    def learning_rate(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based)."""
        scale = min(1.0, (step + 1) / max(1, self.warmup))
        if self.lr_decay == "cosine" and step >= self.warmup:
            progress = (step - self.warmup) / max(1, self.steps - self.warmup)
            scale = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.lr * scale


class FaceStream:
    """Batches of faces in [0, 1]: DCGAN samples mixed with real photos.

    Args:
        size: image side length (DCGAN faces are 64x64 and resized when needed).
        real_images: real face photos (already loaded, (N, 3, size, size)), may be empty.
        real_fraction: share of each batch drawn from ``real_images``.
        device: where batches are made.
        generator: seeded torch generator on ``device``.
        dcgan_weights: DCGAN ``weights.tar`` (default: the installed package's).
    """

    def __init__(
        self,
        size: int,
        real_images: torch.Tensor,
        real_fraction: float,
        device: torch.device,
        generator: torch.Generator,
        dcgan_weights: Path | None = None,
    ) -> None:
        self.size = size
        self.real = real_images.to(device)
        self.real_fraction = real_fraction if len(real_images) else 0.0
        self.device = device
        self.generator = generator
        self.dcgan = load_generator(dcgan_weights).to(device)

    def batch(self, batch_size: int) -> torch.Tensor:
        n_real = round(batch_size * self.real_fraction)
        latents = torch.randn(
            batch_size - n_real, LATENT_DIM, device=self.device, generator=self.generator
        )
        faces = self.dcgan.faces(latents)
        if faces.shape[-1] != self.size:
            faces = F.interpolate(faces, size=self.size, mode="bilinear", antialias=True)
        if n_real:
            pick = torch.randint(
                len(self.real), (n_real,), device=self.device, generator=self.generator
            )
            faces = torch.cat([faces, self.real[pick]])
        flip = torch.rand(batch_size, device=self.device, generator=self.generator) < 0.5
        return torch.where(flip[:, None, None, None], faces.flip(-1), faces).clamp(0, 1)


def sample_timesteps(
    batch_size: int, config: PretrainConfig, steps: int, generator: torch.Generator
) -> torch.Tensor:
    """Timesteps for one batch: a low-noise share and a uniform share."""
    device = generator.device
    uniform = torch.randint(0, steps, (batch_size,), device=device, generator=generator)
    low = torch.randint(
        0, min(config.low_noise_max, steps), (batch_size,), device=device, generator=generator
    )
    favour = torch.rand(batch_size, device=device, generator=generator) < config.low_noise_fraction
    return torch.where(favour, low, uniform)


def _run_description(
    unet_config: UNetConfig, config: PretrainConfig, n_real: int, init_digest: str | None
) -> dict:
    # the step count may change between resumes, except where it sets the decay schedule;
    # a constant rate is left out so that runs from before the option still resume
    changeable = {"checkpoint_every", "log_every", "time_budget_s", "export_dtype"}
    if config.lr_decay == "constant":
        changeable |= {"steps", "lr_decay"}
    settings = {k: v for k, v in asdict(config).items() if k not in changeable}
    description = {"unet": unet_config.to_dict(), "pretrain": settings, "real_images": n_real}
    if init_digest is not None:
        description["init_weights_sha256"] = init_digest
    return description


def pretrain_fdm(
    unet_config: UNetConfig,
    out_dir: str | Path,
    config: PretrainConfig,
    *,
    real_images: Sequence[Path] = (),
    device: str | torch.device = "cpu",
    dcgan_weights: Path | None = None,
    init_weights: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Train a face diffusion UNet and export its EMA weights.

    Args:
        unet_config: the UNet architecture.
        out_dir: receives the checkpoint, the loss log and ``unet.safetensors``.
        config: training settings.
        real_images: real face photos mixed into the DCGAN stream.
        device: where training runs.
        dcgan_weights: DCGAN ``weights.tar`` (default: the installed package's).
        init_weights: UNet weights to start from (loaded strictly into the model and its
            EMA; their SHA-256 is part of the run, so a resume checks it); default: random.
        resume: continue from ``out_dir/fdm-checkpoint.pt`` when it belongs to this run.
        progress: show a progress bar.

    Returns:
        Path of the exported weights (safetensors, float32 EMA, metadata in the header).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    init_digest = None if init_weights is None else file_digest(Path(init_weights))
    description = _run_description(unet_config, config, len(real_images), init_digest)
    torch.manual_seed(config.seed)
    model = UNet(unet_config)
    if init_weights is not None:
        load_unet_weights(model, init_weights)
    model = model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator(device).manual_seed(config.seed)
    diffusion = GaussianDiffusion()
    step, losses, elapsed = 0, [], 0.0
    checkpoint = out_dir / CHECKPOINT_NAME
    if resume and checkpoint.is_file():
        step, losses, elapsed = _load_checkpoint(
            checkpoint, description, model, ema, optimizer, generator
        )
    photos = (
        load_images(real_images, size=unet_config.image_size)
        if len(real_images)
        else torch.zeros(0, 3, unet_config.image_size, unet_config.image_size)
    )
    stream = FaceStream(
        unet_config.image_size, photos, config.real_fraction, device, generator, dcgan_weights
    )
    bar = tqdm(total=config.steps, initial=step, desc="pretrain-fdm", disable=not progress)
    window, started = [], time.perf_counter()
    budget = config.time_budget_s if config.time_budget_s is not None else math.inf
    while step < config.steps:
        faces = stream.batch(config.batch_size)
        t = sample_timesteps(config.batch_size, config, diffusion.steps, generator)
        noise = torch.randn(faces.shape, device=device, generator=generator)
        xt = diffusion.q_sample(faces * 2 - 1, t, noise)
        with torch.autocast(
            device.type, torch.bfloat16, enabled=config.amp and device.type == "cuda"
        ):
            predicted = model(xt, t)[:, : unet_config.in_channels]
        loss = F.mse_loss(predicted.float(), noise)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite diffusion loss at step {step + 1}")
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        _ema_update(ema, model, config.ema_decay)
        step += 1
        window.append(loss.detach())
        bar.update(1)
        last = step == config.steps or time.perf_counter() - started >= budget
        if step % config.log_every == 0 or last:
            now = time.perf_counter()
            mean = torch.stack(window).mean().item()
            losses.append({"step": step, "loss": mean, "seconds": elapsed + now - started})
            bar.set_postfix(loss=f"{mean:.4f}")
            window = []
        if step % config.checkpoint_every == 0 or last:
            total = elapsed + time.perf_counter() - started
            _save_checkpoint(
                checkpoint, description, model, ema, optimizer, generator, step, losses, total
            )
            frame = pd.DataFrame(losses)
            atomic_write(out_dir / LOSS_LOG_NAME, lambda tmp, f=frame: f.to_csv(tmp, index=False))
        if last:
            break
    bar.close()
    seconds = losses[-1]["seconds"] if losses else elapsed
    return export_weights(
        ema,
        out_dir / WEIGHTS_NAME,
        config.export_dtype,
        description
        | {
            "steps_done": step,
            "train_seconds": round(seconds, 1),
            "device": str(device),
            "final_loss": losses[-1]["loss"] if losses else math.nan,
        },
    )


def load_unet_weights(unet: UNet, path: str | Path) -> UNet:
    """Load a UNet weights file (safetensors or torch, any float dtype) strictly, as float32.

    Returns:
        ``unet``, filled.
    """
    state = load_state_dict_file(path, what="UNet weights")
    load_strict(unet, {k: v.float() for k, v in state.items()}, source=str(path))
    return unet


@torch.no_grad()
def noise_prediction_mse(
    unet: UNet,
    images: torch.Tensor,
    timesteps: Sequence[int],
    *,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[int, float]:
    """Epsilon-prediction MSE of a UNet on faces, per timestep: its denoising quality.

    The noise is drawn from ``seed`` alone, so two UNets scored with the same seed see the
    same noisy faces (a paired comparison). An untrained (zero-output) UNet scores 1.0.

    Args:
        unet: the diffusion UNet (evaluated in eval mode on its own device).
        images: faces in ``[0, 1]``.
        timesteps: forward-process steps to score at.
        seed: seed of the noise.
        batch_size: faces per forward pass.

    Shape:
        images: (N, 3, H, W) with H = W = the UNet's image size.

    Returns:
        ``{timestep: mean squared error between predicted and true noise}``.
    """
    if images.ndim != 4 or images.shape[1] != unet.config.in_channels:
        raise ValueError(
            f"images must be (N, {unet.config.in_channels}, H, W), got {tuple(images.shape)}"
        )
    was_training = unet.training
    unet.eval()
    device = next(unet.parameters()).device
    diffusion = GaussianDiffusion()
    generator = torch.Generator().manual_seed(seed)
    result = {}
    for step in timesteps:
        if not 0 <= step < diffusion.steps:
            raise ValueError(f"timestep {step} outside [0, {diffusion.steps})")
        total = 0.0
        for start in range(0, len(images), batch_size):
            x0 = images[start : start + batch_size].to(device).float() * 2 - 1
            noise = torch.randn(x0.shape, generator=generator).to(device)
            t = torch.full((len(x0),), step, device=device, dtype=torch.long)
            predicted = unet(diffusion.q_sample(x0, t, noise), t)[:, : unet.config.in_channels]
            total += F.mse_loss(predicted.float(), noise, reduction="sum").item()
        result[step] = total / images.numel()
    unet.train(was_training)
    return result


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for target, source in zip(ema.parameters(), model.parameters(), strict=True):
            target.lerp_(source, 1.0 - decay)


def export_weights(unet: UNet, path: Path, dtype: str, metadata: dict) -> Path:
    """Save UNet weights (``dtype``) as safetensors with the training description in the header."""
    if dtype not in ("float32", "float16"):
        raise ValueError(f"export dtype must be float32 or float16, got {dtype!r}")
    state = {
        k: v.detach().to(getattr(torch, dtype)).cpu().contiguous()
        for k, v in unet.state_dict().items()
    }
    header = {"facecat": json.dumps(metadata)}
    atomic_write(path, lambda tmp: safetensors.torch.save_file(state, str(tmp), header))
    return path


def _save_checkpoint(
    path: Path,
    description: dict,
    model: UNet,
    ema: UNet,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    losses: list,
    seconds: float,
) -> None:
    payload = {
        "description": json.dumps(description, sort_keys=True),
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "step": step,
        "losses": json.dumps(losses),
        "seconds": seconds,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _load_checkpoint(
    path: Path,
    description: dict,
    model: UNet,
    ema: UNet,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> tuple[int, list, float]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupted or unsafe file
        raise CheckpointError(
            f"{path}: cannot resume ({error}); delete it to start over"
        ) from error
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(f"{path}: not a pretraining checkpoint; delete it to start over")
    if payload.get("description") != json.dumps(description, sort_keys=True):
        raise CheckpointError(
            f"{path} belongs to a different pretraining run (config or data changed); "
            "use another output folder or delete it"
        )
    model.load_state_dict(payload["model"])
    ema.load_state_dict(payload["ema"])
    optimizer.load_state_dict(payload["optimizer"])
    generator.set_state(payload["generator"])
    log.info("resuming diffusion pretraining at step %d", payload["step"])
    return payload["step"], json.loads(payload["losses"]), payload["seconds"]
