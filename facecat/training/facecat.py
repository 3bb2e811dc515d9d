"""Training of FaceCat's head on a frozen backbone, with a feature cache and resume.

The frozen diffusion features of the train and dev splits are extracted once into the
:class:`~facecat.training.cache.FeatureCache` and reused every epoch (the authors' release
re-extracts them every epoch; ``use_cache=False`` reproduces that for comparison). The epochs run in
the shared loop of :mod:`facecat.training.loop` (dev selection, checkpoints, resume).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from facecat.core.checkpoints import load_training_state, save_training_state
from facecat.core.distributed import (
    barrier,
    current_world,
    float_buffers,
    gather_rows,
    mean_over_ranks,
    shard_bounds,
)
from facecat.core.images import ImageFiles
from facecat.datasets.manifest import Manifest
from facecat.models.config import TrainConfig
from facecat.models.facecat import REAL, FaceCat
from facecat.models.features import unflatten_features
from facecat.training.augment import jpeg_copies, posterize_copies
from facecat.training.cache import FeatureCache, feature_key
from facecat.training.loop import (
    CHECKPOINT_NAME,
    TrainResult,
    check_splits,
    epoch_order,
    finish_run,
    new_state,
    run_epochs,
)
from facecat.training.losses import facecat_loss

log = logging.getLogger(__name__)

# DDP's switch for "do not copy rank 0's buffers before every forward" was renamed in torch 2.14
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


class FeatureSource:
    """Yields backbone features for a split, from the cache or by re-extracting.

    Args:
        rows: cached feature rows (N, D), or None to re-extract every time.
        images: the split's image files (used when ``rows`` is None).
        detector: the detector whose extractor produces features.
        device: where tensors go.
    """

    def __init__(
        self, rows: np.ndarray | None, images: ImageFiles, detector: FaceCat, device: torch.device
    ) -> None:
        self.rows = rows
        self.images = images
        self.detector = detector
        self.device = device

    def features(self, indices: np.ndarray) -> list[Tensor]:
        """Per-block features of the given samples, in the order of ``indices``."""
        if self.rows is not None:
            rows = torch.from_numpy(np.ascontiguousarray(self.rows[np.sort(indices)]))
            order = np.argsort(np.argsort(indices))
            rows = rows[order].float().to(self.device)
            return unflatten_features(rows, self.detector.extractor.block_shapes())
        images = torch.stack([self.images[i] for i in indices]).to(self.device)
        return self.detector.extractor(images)


class TrainableHead(nn.Module):
    """FaceCat's trained part (fusion, head, classifier) as one module over block features.

    Its forward is the whole trained computation, so it is what DistributedDataParallel wraps.

    Args:
        detector: the FaceCat detector whose fusion and head are trained.
    """

    def __init__(self, detector: FaceCat) -> None:
        super().__init__()
        self.parts = detector.trainable_modules()
        self._logits = detector.logits_from_features

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Logits (B, 2) and embeddings (B, D) of a batch of block features."""
        return self._logits(features)


def _batches(n: int, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def score_source(source: FeatureSource, n: int, batch_size: int) -> np.ndarray:
    """P(real) for every sample of a split, in eval mode without gradients.

    Under torchrun each process scores its shard and the scores are gathered in order.
    """
    world = current_world()
    start, stop = shard_bounds(n, world)
    model = source.detector.trainable_modules()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [
                source.detector.logits_from_features(source.features(idx))[0]
                .softmax(dim=1)[:, REAL]
                .float()
                for idx in _batches(stop - start, batch_size, np.arange(start, stop))
            ]
    finally:
        model.train(was_training)
    local = torch.cat(parts) if parts else torch.zeros(0, device=source.device)
    return gather_rows(local, n, world).cpu().numpy()


def _run_key(
    detector: FaceCat, train: Manifest, dev: Manifest, config: TrainConfig, seed: int, shares: int
) -> str:
    description = {
        "config": detector.config.to_dict(),
        "train": config.__dict__,
        "seed": seed,
        "features": feature_key(detector.extractor, detector.backbone_digest()),
        "train_data": train.digest(),
        "dev_data": dev.digest(),
        "random_state": "seeded per share",  # dropout no longer follows the global state
    }
    if shares != 1:  # one share keeps the keys of runs made before shares existed
        description["shares"] = shares
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def train_facecat(
    detector: FaceCat,
    train: Manifest,
    dev: Manifest,
    out_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = True,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
    shares: int = 1,
) -> TrainResult:
    """Train the fusion and head of ``detector`` and save the best-on-dev detector.

    Under ``torchrun`` every process extracts its shard of the features into the shared
    cache, trains on its share of every batch (DistributedDataParallel) and scores its shard
    of the dev split; rank 0 writes the files. ``shares=N`` in one process computes the same
    updates as N processes (gradient accumulation), so the two can be compared.

    Args:
        detector: a FaceCat detector (backbone frozen).
        train: training split (both classes required).
        dev: development split for model selection (both classes required).
        out_dir: receives ``checkpoint.pt``, ``history.csv`` and ``detector.safetensors``.
        config: optimiser and schedule; defaults to the detector config's ``train``.
        cache_dir: feature cache folder (default ``out_dir/feature-cache``).
        use_cache: reuse extracted features across epochs (False re-extracts each epoch).
        seed: seed of the batch order.
        device: where training runs.
        resume: continue from ``out_dir/checkpoint.pt`` when it belongs to the same run.
        progress: show progress bars.
        on_epoch_end: called with the epoch number after its checkpoint is written.
        shares: split every batch into this many shares (gradient accumulation); under
            torchrun the shares are the processes and this argument is ignored.

    Returns:
        The saved detector path, the selected epoch, its dev EER and the per-epoch history.
    """
    config = config or detector.config.train
    out_dir = Path(out_dir)
    device = torch.device(device)
    check_splits(train, dev)
    detector.to(device)
    size = detector.image_size
    cache_root = Path(cache_dir or out_dir / "feature-cache")
    train_paths, train_labels = training_images(train, config, cache_root, size, seed)
    train_images = ImageFiles(train_paths, size)
    dev_images = ImageFiles(dev.paths, size)
    if use_cache:
        cache = FeatureCache(cache_root)
        digest = detector.backbone_digest()

        def cached(images: ImageFiles) -> np.ndarray:
            return cache.features(
                detector.extractor,
                digest,
                images,
                batch_size=config.batch_size,
                device=device,
                progress=progress,
            )

        train_rows, dev_rows = cached(train_images), cached(dev_images)
    else:
        train_rows = dev_rows = None
    train_source = FeatureSource(train_rows, train_images, detector, device)
    dev_source = FeatureSource(dev_rows, dev_images, detector, device)

    head = TrainableHead(detector)
    model = head.parts
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, config=config))
    world = current_world()
    shares = world.size if world.distributed else shares
    if shares < 1:
        raise ValueError(f"shares must be at least 1, got {shares}")
    run_key = _run_key(detector, train, dev, config, seed, shares)
    state = new_state()
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if resume and checkpoint_path.is_file():
        state = load_training_state(checkpoint_path, run_key, model, optimizer, scheduler)

    if world.distributed:
        step_module = DistributedDataParallel(
            head,
            device_ids=[device.index] if device.type == "cuda" else None,
            **_NO_BUFFER_SYNC,  # BatchNorm statistics are averaged after each step instead
        )
    else:
        step_module = head
    loss_cfg = detector.config.loss

    rng_devices = [device] if device.type == "cuda" else []

    def share_loss(idx: np.ndarray, share: int, epoch: int, step: int, flips: Tensor) -> Tensor:
        features = train_source.features(idx)
        if config.hflip:
            features = mirror(features, flips[idx].to(device))
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(share_seed(seed, epoch, step, share))
            logits, embeddings = step_module(features)
        loss = facecat_loss(
            logits,
            embeddings,
            train_labels[idx].to(device),
            alpha=loss_cfg.alpha,
            gamma=loss_cfg.gamma,
            triplet_weight=loss_cfg.triplet_weight,
            margin=loss_cfg.margin,
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss at epoch {epoch} on samples {idx[:5].tolist()}... "
                f"(first file: {train_paths[int(idx[0])]})"
            )
        return loss

    def train_epoch(epoch: int) -> list[float]:
        model.train()
        order, flips = epoch_order(seed, epoch, len(train_images))
        losses = []
        bar = tqdm(
            list(_batches(len(train_images), config.batch_size, order)),
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            disable=not progress or not world.is_main,
        )
        for step, idx in enumerate(bar):
            parts = np.array_split(idx, shares)
            if min(len(part) for part in parts) < 2:  # BatchNorm needs two samples per share
                continue
            optimizer.zero_grad(set_to_none=True)
            if world.distributed:
                loss = share_loss(parts[world.rank], world.rank, epoch, step, flips)
                loss.backward()  # DDP averages the gradients over the processes
                for buffer in float_buffers(model):
                    buffer.copy_(mean_over_ranks(buffer, world))
                losses.append(mean_over_ranks(loss.detach(), world).item())
            else:
                step_loss = partial(share_loss, epoch=epoch, step=step, flips=flips)
                losses.append(accumulate_shares(model, parts, step_loss))
            optimizer.step()
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        scheduler.step()
        return losses

    def save_state() -> None:
        if world.is_main:
            save_training_state(checkpoint_path, run_key, state, model, optimizer, scheduler)
        barrier(world)

    run_epochs(
        state,
        config.epochs,
        train_epoch=train_epoch,
        dev_scores=lambda: score_source(dev_source, len(dev), config.batch_size),
        dev_labels=dev.labels,
        model=model,
        optimizer=optimizer,
        save_state=save_state,
        patience=config.patience,
        on_epoch_end=on_epoch_end,
    )

    return finish_run(
        detector,
        model,
        state,
        out_dir,
        {
            "train_config": config.__dict__,
            "seed": seed,
            "shares": shares,
            "protocol": train.root.name,
        },
        len(train_images),
        len(dev),
    )


def cached_scores(
    detector: FaceCat,
    paths: Sequence[Path],
    cache_root: Path,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """P(real) of image files, with their backbone features read from (or added to) a cache.

    Variants that share a backbone (FaceCat with and without text guidance) and a training
    run and its evaluation (the dev split) then extract each image's features once.

    Args:
        detector: a FaceCat detector.
        paths: image files.
        cache_root: the feature cache folder (as given to :func:`train_facecat`).
        batch_size: extraction and scoring batch size.
        device: where extraction and scoring run.
        progress: show a progress bar while extracting.

    Returns:
        Scores of shape (N,), equal to ``detector.scores`` of the images up to float rounding.
    """
    device = torch.device(device)
    images = ImageFiles(paths, detector.image_size)
    rows = FeatureCache(cache_root).features(
        detector.extractor,
        detector.backbone_digest(),
        images,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    return score_source(FeatureSource(rows, images, detector, device), len(images), batch_size)


def training_images(
    train: Manifest, config: TrainConfig, cache_root: Path, size: int, seed: int
) -> tuple[list[Path], Tensor]:
    """The training split's image files and labels, with the configured JPEG and posterized
    copies added and rare sources repeated (``config.min_source_rows``; a manifest without a
    ``source`` column has one source, and nothing is repeated).

    The copies live in ``cache_root/jpeg-copies`` and ``cache_root/posterize-copies`` and
    carry their source's label.
    """
    paths = list(train.paths)
    common = {"size": size, "seed": seed}
    paths += jpeg_copies(
        train.paths,
        cache_root / "jpeg-copies",
        copies=config.jpeg_copies,
        quality=config.jpeg_quality,
        **common,
    )
    paths += posterize_copies(
        train.paths,
        cache_root / "posterize-copies",
        copies=config.posterize_copies,
        bits=config.posterize_bits,
        **common,
    )
    versions = 1 + config.jpeg_copies + config.posterize_copies
    labels = np.tile(train.labels, versions)
    if config.min_source_rows and "source" in train.frame.columns:
        rows = source_repeats(train.frame["source"].to_numpy(), config.min_source_rows)
        rows = np.concatenate([rows + k * len(train) for k in range(versions)])
        paths, labels = [paths[i] for i in rows], labels[rows]
    return paths, torch.tensor(labels, dtype=torch.long)


def source_repeats(sources: np.ndarray, min_rows: int) -> np.ndarray:
    """Row indices in which each row of a source of n < ``min_rows`` rows appears
    ceil(min_rows / n) times, so that the source has at least ``min_rows``.

    Example:
        >>> source_repeats(np.array(["a", "a", "a", "b"]), 2).tolist()
        [0, 1, 2, 3, 3]
    """
    _, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    factors = np.maximum(1, -(-min_rows // counts))[inverse]
    return np.repeat(np.arange(len(sources)), factors)


def share_seed(seed: int, epoch: int, step: int, share: int) -> int:
    """Seed of the random draws (dropout) of one share of one training step.

    Training draws from its own seeded state, never from the global one, so a run gives the
    same detector whatever ran before it in the process, and N processes draw what N shares
    in one process draw.
    """
    return ((seed * 1_000_003 + epoch) * 100_003 + step) * 1_009 + share


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimiser over ``model``'s parameters."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def lr_factor(epoch: int, config: TrainConfig) -> float:
    """Learning-rate multiplier of an epoch (0-based): linear warm-up, then cosine to 0.

    Without warm-up this is the cosine schedule ``(1 + cos(pi * epoch / epochs)) / 2``.
    """
    warmup = config.warmup_epochs
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    return 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / (config.epochs - warmup)))


def mirror(features: list[Tensor], flips: Tensor) -> list[Tensor]:
    """Mirror the feature maps of the samples where ``flips`` is true (horizontal flip).

    Shape:
        list of (B, C, H, W), flips (B,) bool -> list of (B, C, H, W)
    """
    mask = flips[:, None, None, None]
    return [torch.where(mask, f.flip(-1), f) for f in features]


def accumulate_shares(
    model: nn.Module, parts: list[np.ndarray], share_loss: Callable[[np.ndarray, int], Tensor]
) -> float:
    """Backpropagate a batch split into shares, as that many processes would.

    The gradients are averaged over the shares and the BatchNorm running statistics are the
    mean of their per-share updates, which is what a DDP run with one share per process
    computes; with one share this is an ordinary training step.

    Args:
        model: the trained modules (its gradients accumulate).
        parts: the batch's sample indices, one array per share.
        share_loss: loss of one share, given its sample indices and its share index.

    Returns:
        The mean loss over the shares.
    """
    buffers = list(model.buffers())
    before = [b.clone() for b in buffers]
    after: list[list[Tensor]] = []
    total = 0.0
    for share, part in enumerate(parts):
        for buffer, start in zip(buffers, before, strict=True):
            buffer.copy_(start)
        loss = share_loss(part, share)
        (loss / len(parts)).backward()
        total += loss.item()
        after.append([b.clone() for b in buffers])
    for i, buffer in enumerate(buffers):
        if buffer.is_floating_point():
            buffer.copy_(torch.stack([updated[i] for updated in after]).mean(dim=0))
        # integer buffers (BatchNorm's batch counter) advance once, as in every process
    return total / len(parts)


def with_epochs(config: TrainConfig, epochs: int | None) -> TrainConfig:
    """``config`` with ``epochs`` replaced when given."""
    return config if epochs is None else replace(config, epochs=epochs)
