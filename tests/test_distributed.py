"""torchrun on CPU (gloo, 2 processes) against one process: same cache, same weights."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch
from hypothesis import given
from hypothesis import strategies as st

from facecat.core.distributed import World, gather_rows, shard_bounds
from facecat.datasets.demo import write_lfw_manifest
from facecat.training.facecat import accumulate_shares

EPOCHS = "2"


@given(n=st.integers(0, 500), size=st.integers(1, 9))
def test_shards_cover_every_item_once(n: int, size: int) -> None:
    bounds = [shard_bounds(n, World(rank, size)) for rank in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    lengths = [stop - start for start, stop in bounds]
    assert max(lengths) - min(lengths) <= 1


def test_single_process_gather_is_identity() -> None:
    rows = torch.arange(12.0).reshape(4, 3)
    assert gather_rows(rows, 4, World()) is rows


def test_one_share_is_an_ordinary_step() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    twin = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    twin.load_state_dict(model.state_dict())
    data = torch.randn(8, 4)

    def share_loss(idx: np.ndarray, share: int) -> torch.Tensor:
        return model(data[torch.as_tensor(idx)]).square().mean()

    loss = accumulate_shares(model, [np.arange(8)], share_loss)
    reference = twin(data).square().mean()
    reference.backward()
    assert loss == pytest.approx(reference.item())
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(model[1].running_mean, twin[1].running_mean)


def test_two_shares_average_batchnorm_updates() -> None:
    torch.manual_seed(0)
    model = torch.nn.BatchNorm1d(2, momentum=0.5)
    data = torch.tensor([[0.0, 0.0], [2.0, 4.0], [10.0, 10.0], [12.0, 14.0]])
    accumulate_shares(model, [np.arange(2), np.arange(2, 4)], lambda i, _: model(data[i]).sum())
    # per-share batch means (1, 2) and (11, 12); each share updates 0 -> 0.5 * mean
    torch.testing.assert_close(model.running_mean, torch.tensor([3.0, 3.5]))


def _train(manifest: Path, out: Path, cache: Path, launcher: list[str], extra: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [
        *launcher,
        "-m",
        "facecat.cli",
        "train",
        "--model",
        "facecat-tiny",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--epochs",
        EPOCHS,
        "--quiet",
        *extra,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_torchrun_two_processes_match_one(tmp_path: Path) -> None:
    lfw_manifest = write_lfw_manifest(tmp_path / "faces", faces=40)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    _train(
        lfw_manifest,
        tmp_path / "ddp",
        tmp_path / "cache-ddp",
        [*torchrun, "--nproc_per_node", "2"],
        [],
    )
    _train(
        lfw_manifest, tmp_path / "one", tmp_path / "cache-one", [sys.executable], ["--shares", "2"]
    )

    ddp_entries = sorted((tmp_path / "cache-ddp").rglob("*.npy"))
    one_entries = sorted((tmp_path / "cache-one").rglob("*.npy"))
    assert [p.relative_to(tmp_path / "cache-ddp") for p in ddp_entries] == [
        p.relative_to(tmp_path / "cache-one") for p in one_entries
    ]
    assert len(ddp_entries) == 2  # the train and dev splits
    for sharded, whole in zip(ddp_entries, one_entries, strict=True):
        np.testing.assert_array_equal(np.load(sharded), np.load(whole))
    assert not list((tmp_path / "cache-ddp").rglob("*.tmp"))

    ddp = safetensors.torch.load_file(str(tmp_path / "ddp" / "detector.safetensors"))
    one = safetensors.torch.load_file(str(tmp_path / "one" / "detector.safetensors"))
    assert ddp.keys() == one.keys()
    for name in ddp:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    ddp_history = pd.read_csv(tmp_path / "ddp" / "history.csv")
    one_history = pd.read_csv(tmp_path / "one" / "history.csv")
    assert len(ddp_history) == int(EPOCHS)
    np.testing.assert_allclose(ddp_history.train_loss, one_history.train_loss, rtol=1e-4)
    np.testing.assert_allclose(ddp_history.dev_eer, one_history.dev_eer, atol=1e-6)


SCORER = """
import atexit
import sys
import numpy as np
import torch
import torch.distributed as dist
from facecat import create_detector
from facecat.core.distributed import join_process_group
from facecat.evaluation.evaluate import score_images

world, _ = join_process_group("cpu")
detector = create_detector("facecat-tiny", text_guided=False, unet_weights="random")
images = torch.rand(11, 3, 32, 32, generator=torch.Generator().manual_seed(0))
scores = score_images(detector, images, batch_size=4)
np.save(sys.argv[1] + f"-rank{world.rank}.npy", scores)
atexit._run_exitfuncs()  # what a normal exit runs: the joined group must be destroyed by it
np.save(sys.argv[1] + f"-rank{world.rank}-joined-after-exit.npy", dist.is_initialized())
"""


def test_robustness_scores_are_sharded_and_gathered_in_order(tmp_path: Path) -> None:
    script = tmp_path / "score.py"
    script.write_text(SCORER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*run, str(script), str(tmp_path / "two")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    single = np.load(tmp_path / "one-rank0.npy")
    assert single.shape == (11,)
    for rank in (0, 1):  # every rank holds all 11 scores, in image order
        np.testing.assert_allclose(np.load(tmp_path / f"two-rank{rank}.npy"), single, atol=1e-6)
        assert not np.load(tmp_path / f"two-rank{rank}-joined-after-exit.npy")
