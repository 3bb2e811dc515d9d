"""On-disk cache of frozen-backbone features, memory-mapped and validated when read.

One cache entry holds the flattened block features of an ordered list of images, as a
``.npy`` file opened with ``mmap_mode`` (so it may exceed RAM) plus a JSON sidecar. Its key
covers the feature configuration (UNet architecture, diffusion steps, timesteps, blocks,
noise seed, compute dtype), the backbone's weight digest and the content of every image file
(SHA-256 of its bytes) with the resize policy. The sidecar also holds the SHA-256 of the
``.npy`` file, checked on every read, and the digest of every image, so that a new list of
images already extracted (a subset of a split, say a leave-one-type-out training split) is
assembled from the rows of existing entries instead of running the backbone again; only
images found in no entry are extracted. An entry whose sidecar, key, shape, size or content
does not match (a file damaged or edited in place included) is rebuilt, never reused. Builds
write to temporary files renamed into place, under a file lock, so a killed or concurrent run
cannot leave a corrupted entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from facecat.core.checkpoints import atomic_write
from facecat.core.distributed import World, barrier, broadcast_value, current_world, shard_bounds
from facecat.core.images import ImageFiles
from facecat.models.features import DiffusionFeatureExtractor, flatten_features

log = logging.getLogger(__name__)

# Raise whenever the extractor's numbers change for the same config and weights, so features
# cached by older code are rebuilt, never reused (2: fused attention in the UNet).
CACHE_VERSION = 2


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def feature_key(extractor: DiffusionFeatureExtractor, backbone_digest: str) -> str:
    """Key of everything that determines the features apart from the images."""
    description = {
        "version": CACHE_VERSION,
        "unet": extractor.unet.config.to_dict(),
        "diffusion_steps": extractor.diffusion.steps,
        "features": extractor.config.to_dict(),
        "backbone_sha256": backbone_digest,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def image_digests(dataset: ImageFiles) -> list[str]:
    """Per-image keys: the resize policy and the SHA-256 of each file's bytes, in order."""
    policy = f"{dataset.size}:{dataset.resize}:"
    return [policy + file_digest(path) for path in dataset.paths]


def images_key(dataset: ImageFiles, digests: Sequence[str] | None = None) -> str:
    """Key of the ordered image contents and the resize policy."""
    digest = hashlib.sha256(f"{dataset.size}:{dataset.resize}".encode())
    for item in digests or image_digests(dataset):
        digest.update(item.rpartition(":")[2].encode())
    return digest.hexdigest()


class FeatureCache:
    """Feature cache rooted at a folder.

    Args:
        root: cache folder (created when needed).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _paths(self, fkey: str, ikey: str, dtype: str) -> tuple[Path, Path]:
        folder = self.root / fkey[:24]
        stem = f"{ikey[:24]}-{dtype}"  # float16 and float32 copies of one entry coexist
        return folder / f"{stem}.npy", folder / f"{stem}.json"

    def _valid(self, data_path: Path, meta_path: Path, expected: dict) -> np.ndarray | None:
        if not (data_path.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expected.items()):
                log.warning("feature cache %s: key mismatch, rebuilding", data_path)
                return None
            if meta.get("data_sha256") != file_digest(data_path):
                log.warning("feature cache %s: content changed, rebuilding", data_path)
                return None
            rows = np.load(data_path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as error:  # JSONDecodeError is a ValueError
            log.warning("feature cache %s unreadable (%s), rebuilding", data_path, error)
            return None
        if list(rows.shape) != expected["shape"] or str(rows.dtype) != expected["dtype"]:
            log.warning("feature cache %s: shape/dtype mismatch, rebuilding", data_path)
            return None
        return rows

    def features(
        self,
        extractor: DiffusionFeatureExtractor,
        backbone_digest: str,
        dataset: ImageFiles,
        *,
        batch_size: int = 32,
        device: torch.device | str = "cpu",
        num_workers: int = 0,
        progress: bool = True,
        dtype: str = "float32",
    ) -> np.ndarray:
        """Cached features of ``dataset``, extracted once and memory-mapped afterwards.

        Args:
            extractor: the frozen feature extractor.
            backbone_digest: digest of the extractor's UNet weights.
            dataset: the images, in row order.
            batch_size: extraction batch size.
            device: where the extractor runs.
            num_workers: DataLoader workers for image decoding.
            progress: show a progress bar.
            dtype: storage dtype, "float32" or "float16".

        Returns:
            Read-only array of shape (N, D) (a memory map).
        """
        fkey = feature_key(extractor, backbone_digest)
        digests = image_digests(dataset)
        ikey = images_key(dataset, digests)
        width = sum(s.channels * s.resolution**2 for s in extractor.block_shapes())
        expected = {
            "feature_key": fkey,
            "images_key": ikey,
            "shape": [len(dataset), width],
            "dtype": dtype,
        }
        data_path, meta_path = self._paths(fkey, ikey, dtype)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        world = current_world()
        if world.distributed:
            return self._features_sharded(
                extractor,
                dataset,
                data_path,
                meta_path,
                expected,
                world,
                batch_size,
                device,
                num_workers,
            )
        with FileLock(str(data_path) + ".lock"):
            rows = self._valid(data_path, meta_path, expected)
            if rows is not None:
                log.info("feature cache hit: %s (%d images)", data_path.name, len(dataset))
                if "image_digests" not in json.loads(meta_path.read_text()):
                    _write_meta(meta_path, expected, data_path, digests)  # entries of old code
                return rows
            meta_path.unlink(missing_ok=True)
            assembled, missing = self._reuse_rows(data_path.parent, expected, digests)
            if not missing:
                log.info("feature cache: %d images assembled from cached rows", len(dataset))
                return assembled
            unique, repeats, originals = _first_of_each_digest(missing, digests)
            log.info(
                "extracting features of %d of %d images into %s (%d from cached rows, %d "
                "repeated files)",
                len(unique),
                len(dataset),
                data_path,
                len(dataset) - len(missing),
                len(repeats),
            )

            def write(tmp: Path) -> None:
                out = _open_rows(tmp, expected, "w+")
                out[:] = assembled
                extract_into(
                    out, extractor, dataset, unique, batch_size, device, progress, num_workers
                )
                out[repeats] = out[originals]
                out.flush()
                del out

            atomic_write(data_path, write)
            _write_meta(meta_path, expected, data_path, digests)
            return np.load(data_path, mmap_mode="r")

    def _reuse_rows(
        self, folder: Path, expected: dict, digests: list[str]
    ) -> tuple[np.ndarray, list[int]]:
        """Rows of ``digests`` copied from valid entries of the same features and dtype.

        Entries are taken largest overlap first and verified (content digest included) before
        any row is copied; rows found in none stay zero.

        Returns:
            The (N, D) rows and the indices of the images found in no entry.
        """
        rows = np.zeros(expected["shape"], dtype=expected["dtype"])
        positions: dict[str, list[int]] = {}
        for i, digest in enumerate(digests):
            positions.setdefault(digest, []).append(i)
        candidates = []
        for meta_path in folder.glob(f"*-{expected['dtype']}.json"):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict) or meta.get("feature_key") != expected["feature_key"]:
                continue
            sources = meta.get("image_digests")
            if not isinstance(sources, list):
                continue
            overlap = len(positions.keys() & set(sources))
            if overlap:
                candidates.append((overlap, meta_path, meta))
        found = np.zeros(len(digests), dtype=bool)
        for _, meta_path, meta in sorted(candidates, key=lambda c: -c[0]):
            if found.all():
                break
            own = {k: meta.get(k) for k in ("feature_key", "images_key", "shape", "dtype")}
            if own["shape"] != [len(meta["image_digests"]), expected["shape"][1]]:
                continue
            source = self._valid(meta_path.with_suffix(".npy"), meta_path, own)
            if source is None:
                continue
            for row, digest in enumerate(meta["image_digests"]):
                for i in positions.get(digest, []):
                    if not found[i]:
                        rows[i] = source[row]
                        found[i] = True
        return rows, np.flatnonzero(~found).tolist()

    def _features_sharded(
        self,
        extractor: DiffusionFeatureExtractor,
        dataset: ImageFiles,
        data_path: Path,
        meta_path: Path,
        expected: dict,
        world: World,
        batch_size: int,
        device: torch.device | str,
        num_workers: int,
    ) -> np.ndarray:
        """Under torchrun: every rank extracts its shard into one file that rank 0 publishes.

        Rank 0 holds the entry's file lock throughout, so other runs on the same cache wait.
        """
        lock = FileLock(str(data_path) + ".lock")
        tmp = data_path.with_name(f".{data_path.name}.sharded.tmp")
        if world.is_main:
            lock.acquire()
        try:
            valid = world.is_main and self._valid(data_path, meta_path, expected) is not None
            if not broadcast_value(valid, world):
                if world.is_main:
                    meta_path.unlink(missing_ok=True)
                    _open_rows(tmp, expected, "w+").flush()  # the file every rank fills
                    log.info(
                        "extracting features of %d images on %d processes into %s",
                        len(dataset),
                        world.size,
                        data_path,
                    )
                barrier(world)
                # whole batches per rank: every batch is the one a single process would run
                first, last = shard_bounds(-(-len(dataset) // batch_size), world)
                start, stop = first * batch_size, min(last * batch_size, len(dataset))
                out = _open_rows(tmp, expected, "r+")
                extract_into(
                    out,
                    extractor,
                    dataset,
                    range(start, stop),
                    batch_size,
                    device,
                    False,
                    num_workers,
                )
                out.flush()
                del out
                barrier(world)
                if world.is_main:
                    os.replace(tmp, data_path)
                    _write_meta(meta_path, expected, data_path)
            barrier(world)
        finally:
            if world.is_main:
                tmp.unlink(missing_ok=True)
                lock.release()
        return np.load(data_path, mmap_mode="r")


def _first_of_each_digest(
    indices: Sequence[int], digests: Sequence[str]
) -> tuple[list[int], list[int], list[int]]:
    """Split ``indices`` into the first image of each content digest and the repeats.

    Returns:
        The indices to extract, the repeated indices, and for each repeat the extracted index
        with the same content.
    """
    first: dict[str, int] = {}
    repeats, originals = [], []
    for i in indices:
        original = first.setdefault(digests[i], i)
        if original != i:
            repeats.append(i)
            originals.append(original)
    return list(first.values()), repeats, originals


def _write_meta(
    meta_path: Path, expected: dict, data_path: Path, digests: list[str] | None = None
) -> None:
    """Publish an entry's sidecar: its key, the SHA-256 of the finished data file and, when
    given, the per-image digests that let later lists reuse its rows."""
    meta = {**expected, "data_sha256": file_digest(data_path)}
    if digests is not None:
        meta["image_digests"] = digests
    atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta)))


def _open_rows(path: Path, expected: dict, mode: str) -> np.memmap:
    if mode == "w+":
        return np.lib.format.open_memmap(
            path, mode="w+", dtype=expected["dtype"], shape=tuple(expected["shape"])
        )
    return np.load(path, mmap_mode=mode)


def extract_into(
    out: np.ndarray,
    extractor: DiffusionFeatureExtractor,
    dataset: ImageFiles,
    indices: Sequence[int],
    batch_size: int,
    device: torch.device | str,
    progress: bool,
    num_workers: int = 0,
) -> None:
    """Extract the features of the images at ``indices`` into the same rows of ``out``.

    Args:
        out: the (N, D) rows being filled (a memory map).
        extractor: the frozen feature extractor.
        dataset: all N images.
        indices: positions of the images to extract (ascending).
        batch_size: extraction batch size.
        device: where the extractor runs.
        progress: show a progress bar.
        num_workers: DataLoader workers for image decoding.

    Images are decoded by a DataLoader with pinned memory on CUDA, and copied to the device
    without blocking, so decoding the next batch overlaps the backbone's forward pass.

    Raises:
        FloatingPointError: non-finite features, naming the images and the first file.
    """
    device = torch.device(device)
    indices = list(indices)
    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    done = 0
    bar = tqdm(loader, desc="extracting features", unit="batch", disable=not progress)
    for images in bar:
        images = images.to(device, non_blocking=True)
        rows = flatten_features(extractor(images)).cpu().numpy()
        batch = indices[done : done + len(rows)]
        if not np.isfinite(rows).all():
            raise FloatingPointError(
                f"non-finite features for images {batch[0]}..{batch[-1]} "
                f"(first file: {dataset.paths[batch[0]]})"
            )
        out[batch] = rows
        done += len(rows)
