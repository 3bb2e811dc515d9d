"""Nothing lost: runs really killed (SIGKILL, no cleanup) resume to the uninterrupted result,
and concurrent processes on the same cache or file never corrupt it.

Each killed run is a separate Python process that kills itself with SIGKILL at a chosen
point (after a checkpoint, inside a batch, inside feature extraction, halfway through writing
a checkpoint, halfway through a data build). The children start together so their start-up
overlaps; the resumed runs then go through the ``facecat`` command or the public API in this
process and must reach bit-identical weights and the same per-epoch metrics as a run that was
never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch

from facecat.cli import main
from facecat.datasets.demo import write_lfw_manifest
from facecat.datasets.manifest import read_manifest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

EPOCHS = 3
#: FaceCat-tiny without the text encoder, 3 training batches per epoch.
OVERRIDES = {"text_guided": False, "train": {"batch_size": 4}}

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path

    scenario, data, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    calls = {}

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def kill_on_call(module, name, number, before=None):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            if calls[name] == number:
                if before is not None:
                    before(*args, **kwargs)
                die()
            return original(*args, **kwargs)

        setattr(module, name, wrapper)

    if scenario.startswith("facecat-"):
        import torch
        import facecat.training.cache, facecat.training.facecat
        from facecat.datasets.manifest import read_manifest
        from facecat.models.registry import create_detector
        from facecat.training.detector import train_detector

        if scenario == "facecat-mid-epoch":  # epoch 2, second of three batches
            kill_on_call(facecat.training.facecat, "facecat_loss", 5)
        elif scenario == "facecat-mid-extraction":  # features of train images 4..7
            kill_on_call(facecat.training.cache, "flatten_features", 2)
        elif scenario == "facecat-mid-checkpoint-write":  # half of epoch 2's checkpoint

            real_save = torch.save

            def write_half(payload, target):
                import io

                buffer = io.BytesIO()
                real_save(payload, buffer)
                Path(target).write_bytes(buffer.getvalue()[: buffer.tell() // 2])

            kill_on_call(torch, "save", 2, before=write_half)
        manifest = read_manifest(data)
        detector = create_detector("facecat-tiny", seed=0, **json.loads(sys.argv[4]))
        train_detector(
            detector, manifest.split("train"), manifest.split("dev"), out,
            epochs=int(sys.argv[5]), seed=0, progress=False,
        )
    elif scenario == "cdcn-after-checkpoint":
        import facecat.training.cdcn
        from facecat.datasets.manifest import read_manifest
        from facecat.models.registry import create_detector
        from facecat.training.cdcn import train_cdcn

        manifest = read_manifest(data)
        detector = create_detector("cdcn", **json.loads(sys.argv[4]))
        train_cdcn(
            detector, manifest.split("train"), manifest.split("dev"), out,
            epochs=int(sys.argv[5]), progress=False, on_epoch_end=lambda epoch: die(),
        )
    elif scenario == "data-build":  # all images written, manifest not yet
        import facecat.datasets.protocol
        from facecat.datasets.protocol import build_embedded

        kill_on_call(facecat.datasets.protocol, "write_manifest", 1)
        build_embedded(out, seed=0, bona_fide=data)
    elif scenario == "concurrent":  # two of these at once: one cache entry, one results file
        import hashlib
        from facecat.training.cache import FeatureCache
        from facecat.core.images import ImageFiles
        from facecat.core.checkpoints import atomic_write
        from facecat.datasets.manifest import read_manifest
        from facecat.models.registry import create_detector

        detector = create_detector("facecat-tiny", text_guided=False)
        images = ImageFiles(read_manifest(data).paths, 32)
        ready, go, target, byte = sys.argv[4:8]
        Path(ready).touch()
        while not Path(go).exists():  # start together
            time.sleep(0.005)
        rows = FeatureCache(out).features(
            detector.extractor, detector.backbone_digest(), images, progress=False
        )
        print(hashlib.sha256(rows.tobytes()).hexdigest())
        body = bytes([int(byte)]) * 200_000
        count, stop = 0, time.monotonic() + 1.0
        while time.monotonic() < stop:
            atomic_write(target, lambda tmp: tmp.write_bytes(body))
            count += 1
        print(count)
        sys.exit(0)
    print("child finished without being killed")
    """
)


def _spawn(script: Path, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _killed(process: subprocess.Popen, timeout: float = 240) -> None:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == -signal.SIGKILL, f"child was not killed:\n{out}\n{err[-2000:]}"


# --------------------------------------------------------------------------- data and children


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny FaceCat data (6 faces: 12 train, 3 dev images) and a CDCN/protocol bona fide set."""
    root = tmp_path_factory.mktemp("resume-data")
    manifest = write_lfw_manifest(root / "lfw", size=32, faces=6)
    return {"facecat": manifest, "bona_fide": _small_bona_fide(root / "bona_fide")}


def _small_bona_fide(folder: Path) -> Path:
    """Two bundled bona fide faces (with landmarks) per split, copied into their own folder."""
    import shutil

    from facecat.datasets.bona_fide import bundled_manifest
    from facecat.datasets.manifest import write_manifest

    source = read_manifest(bundled_manifest())
    frame = pd.concat(
        [source.frame[source.frame["split"] == s].head(2) for s in ("train", "dev", "test")]
    )
    for path in frame["path"]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.root / path, folder / path)
    write_manifest(frame.reset_index(drop=True), folder / "manifest.csv")
    return folder / "manifest.csv"


SCENARIOS = (
    "facecat-mid-epoch",
    "facecat-mid-extraction",
    "facecat-mid-checkpoint-write",
    "cdcn-after-checkpoint",
    "data-build",
)
CDCN_OVERRIDES = {"image_size": 32, "width": 0.125, "train": {"batch_size": 4}}


@pytest.fixture(scope="module")
def started_children(data, tmp_path_factory):
    """Start every self-killing child at once: {scenario: (its output folder, process)}."""
    root = tmp_path_factory.mktemp("killed")
    script = root / "child.py"
    script.write_text(CHILD)
    children = {}
    for scenario in SCENARIOS:
        out = root / scenario
        if scenario.startswith("facecat-"):
            args = (data["facecat"], out, json.dumps(OVERRIDES), EPOCHS)
        elif scenario.startswith("cdcn-"):
            args = (_cdcn_manifest(data, root), out, json.dumps(CDCN_OVERRIDES), 2)
        else:
            args = (data["bona_fide"], out)
        children[scenario] = (out, _spawn(script, scenario, *args))
    return children


@pytest.fixture(scope="module")
def killed_runs(started_children, uninterrupted):
    """{scenario: output folder} once every child has killed itself (the uninterrupted
    reference run is computed here meanwhile)."""
    for _, process in started_children.values():
        _killed(process)
    return {scenario: out for scenario, (out, _) in started_children.items()}


def _cdcn_manifest(data, root: Path) -> Path:
    """The train/dev bona fide faces plus one simulated print attack each (CDCN needs
    landmarks for its pseudo-depth targets)."""
    from PIL import Image

    from facecat.core.images import load_image
    from facecat.datasets.manifest import write_manifest
    from facecat.datasets.presentation_attacks import simulate_pa

    path = root / "cdcn" / "manifest.csv"
    if path.is_file():
        return path
    path.parent.mkdir()
    bona = read_manifest(data["bona_fide"])
    rows = []
    for k, (row, file) in enumerate(zip(bona.frame.to_dict("records"), bona.paths, strict=True)):
        if row["split"] == "test":
            continue
        face = load_image(file, size=None)
        points = torch.tensor([float(v) for v in row["landmarks"].split()]).reshape(5, 2)
        for name, image, label, kind in (
            (f"live{k}.png", face, 1, "Live"),
            (f"attack{k}.png", simulate_pa("Paper", face, points, seed=k), 0, "Paper"),
        ):
            array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(array).save(path.parent / name)
            rows.append(
                {
                    "path": name,
                    "label": label,
                    "attack_type": kind,
                    "split": row["split"],
                    "subject": row["subject"],
                    "landmarks": row["landmarks"],
                }
            )
    write_manifest(pd.DataFrame(rows), path)
    return path


def _cli_train(manifest: Path, out: Path) -> None:
    argv = ["train", "--model", "facecat-tiny", "--manifest", str(manifest), "--out", str(out)]
    argv += ["--epochs", str(EPOCHS), "--set", json.dumps(OVERRIDES), "--quiet"]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    _cli_train(data["facecat"], out)
    return out


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


def _assert_same_run(resumed: Path, reference: Path) -> None:
    """Same per-epoch metrics, same selected epoch, bit-identical saved detector."""
    ours, theirs = pd.read_csv(resumed / "history.csv"), pd.read_csv(reference / "history.csv")
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    assert len(ours) > 0
    a, b = _tensors(resumed / "detector.safetensors"), _tensors(reference / "detector.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# --------------------------------------------------------------------------- kill and resume


@pytest.mark.parametrize(
    "scenario",
    [
        "facecat-mid-epoch",
        "facecat-mid-extraction",
        "facecat-mid-checkpoint-write",
    ],
)
def test_killed_training_resumes_to_the_uninterrupted_result(
    scenario, killed_runs, uninterrupted, data
):
    out = killed_runs[scenario]
    assert not (out / "detector.safetensors").exists()  # really stopped before the end
    checkpoint = out / "checkpoint.pt"
    if scenario == "facecat-mid-extraction":
        assert not checkpoint.exists()
        assert list(out.glob("feature-cache/*/.*.tmp"))  # the half-written entry it left
    else:
        epoch = torch.load(checkpoint, weights_only=True)["epoch"]
        assert epoch == 1  # the last complete checkpoint survived
    _cli_train(data["facecat"], out)  # the same command resumes
    _assert_same_run(out, uninterrupted)


def test_killed_cdcn_training_resumes_to_the_uninterrupted_result(killed_runs, data, tmp_path):
    from facecat.models.registry import create_detector
    from facecat.training.cdcn import train_cdcn

    manifest = read_manifest(_cdcn_manifest(data, killed_runs["cdcn-after-checkpoint"].parent))

    def run(out: Path) -> None:
        detector = create_detector("cdcn", **CDCN_OVERRIDES)
        train_cdcn(
            detector, manifest.split("train"), manifest.split("dev"), out, epochs=2, progress=False
        )

    out = killed_runs["cdcn-after-checkpoint"]
    assert not (out / "detector.safetensors").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    run(out)
    run(tmp_path / "uninterrupted")
    _assert_same_run(out, tmp_path / "uninterrupted")


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_killed_data_build_is_rebuilt_identically(killed_runs, data, tmp_path):
    from facecat.datasets.protocol import build_embedded

    cache = killed_runs["data-build"]
    assert not list(cache.glob("embedded-*/manifest.csv"))  # killed before publishing
    assert list(cache.glob(".building-*"))  # its half-built staging folder is left behind
    resumed = build_embedded(cache, seed=0, bona_fide=data["bona_fide"])
    fresh = build_embedded(tmp_path, seed=0, bona_fide=data["bona_fide"])
    assert len(resumed.manifest) == len(fresh.manifest) > 0
    assert _tree_digest(resumed.root) == _tree_digest(fresh.root)


# --------------------------------------------------------------------------- concurrency


def _start_together(processes: list[subprocess.Popen], ready: list[Path], go: Path) -> None:
    """Wait (sleeping) until every child has imported its modules, then release them."""
    deadline = time.monotonic() + 240
    while not all(path.exists() for path in ready):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.05)
    go.touch()


def test_concurrent_processes_share_a_cache_entry_and_a_results_file(data, tmp_path):
    """Two processes build the same cache entry at once (the file lock lets one build and the
    other reuse it), then rewrite one results file in a loop while this process reads it:
    every read must see one writer's whole file."""
    from facecat.core.images import ImageFiles
    from facecat.models.registry import create_detector
    from facecat.training.cache import FeatureCache

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cache, go, target = tmp_path / "cache", tmp_path / "go", tmp_path / "results.bin"
    target.write_bytes(b"\x00" * 200_000)
    ready = [tmp_path / f"ready{k}" for k in (1, 2)]
    children = [
        _spawn(script, "concurrent", data["facecat"], cache, ready[k - 1], go, target, k)
        for k in (1, 2)
    ]
    _start_together(children, ready, go)
    seen, reads = set(), 0
    while any(child.poll() is None for child in children):
        content = target.read_bytes()
        assert len(content) == 200_000 and content.count(content[:1]) == len(content)
        seen.add(content[0])
        reads += 1
        time.sleep(0.001)
    final = target.read_bytes()  # the last complete write wins
    assert final.count(final[:1]) == len(final) == 200_000 and final[0] in (1, 2)
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-2000:]
        outputs.append(out.strip().splitlines()[-2:])
    assert seen & {1, 2} and reads > 10  # the reader saw real rewrites
    assert all(int(count) > 0 for _, count in outputs)
    assert not list(tmp_path.glob(".results.bin.*"))  # no temporary left behind
    detector = create_detector("facecat-tiny", text_guided=False)
    images = ImageFiles(read_manifest(data["facecat"]).paths, 32)
    rows = np.array(
        FeatureCache(cache).features(
            detector.extractor, detector.backbone_digest(), images, progress=False
        )
    )
    assert [digest for digest, _ in outputs] == [hashlib.sha256(rows.tobytes()).hexdigest()] * 2
    assert len(list(cache.glob("*/*.npy"))) == 1 and not list(cache.glob("*/.*.tmp"))
