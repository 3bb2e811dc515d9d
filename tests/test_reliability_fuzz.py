"""Property and fuzz tests: random manifests, random bytes as files, random tensor shapes and
dtypes, random metric inputs and random command-line values. Every outcome is a valid result
or one clear, typed error; nothing crashes with another exception type and nothing hangs.

Example counts are modest (see ``FUZZ_EXAMPLES``) so the module runs in seconds on a CPU; a
module-wide alarm turns a hang into a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import string
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from facecat import create_detector
from facecat.cli import main
from facecat.core.images import ImageBatchError
from facecat.datasets.demo import write_lfw_manifest
from facecat.datasets.manifest import SPLITS, ManifestError, read_manifest
from facecat.evaluation import metrics
from facecat.models.registry import save_detector

#: max_examples of each property test here; their sum is the number of fuzz examples run.
FUZZ_EXAMPLES = {
    "manifest_rows": 120,
    "manifest_bytes": 120,
    "cli_image_bytes": 30,
    "tensor_shapes_dtypes": 80,
    "metric_inputs": 150,
    "cli_eval_options": 20,
}
FUZZ = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None
)


@pytest.fixture(scope="module", autouse=True)
def no_hang():
    """Fail the module instead of hanging CI if any example never returns."""

    def timeout(signum, frame):
        raise TimeoutError("a fuzz example hung (module alarm after 300 s)")

    if not hasattr(signal, "SIGALRM"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(300)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder with three real images a manifest may point at, and one outside file."""
    root = tmp_path_factory.mktemp("fuzz") / "root"
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "sub/c.png", "../outside.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)
    return root


# --------------------------------------------------------------------------- manifests


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse refusing an option value
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


PATHS = st.sampled_from(
    ["a.png", "b.png", "sub/c.png", "sub/../a.png", "../outside.png", "/etc/passwd", "", " ",
     "missing.png", "sub", "a.png\x00", "ä/ü.png", "C:\\x.png", "~/a.png"]
)  # fmt: skip
CELLS = st.one_of(
    st.sampled_from(["0", "1", "", " 1", "1.0", "2", "-1", "nan", "Live", "live", "Print"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6),
)
LANDMARKS = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=11).map(
        lambda v: " ".join(map(str, v))
    ),
    CELLS,
)


@st.composite
def manifest_frames(draw) -> pd.DataFrame:
    """A valid manifest, then zero to three random mutations (a cell, a column, a row)."""
    n = draw(st.integers(1, 6))
    rows = []
    for k in range(n):
        live = draw(st.booleans())
        rows.append(
            {
                "path": draw(st.sampled_from(["a.png", "b.png", "sub/c.png", "sub/../a.png"])),
                "label": "1" if live else "0",
                "attack_type": "Live" if live else draw(st.sampled_from(["Print", "Replay"])),
                "split": SPLITS[k % 3],
                "subject": f"s{k}",
                "landmarks": "1 1 2 2 3 3 4 4 5 5",
            }
        )
    frame = pd.DataFrame(rows).drop_duplicates("path")
    columns = {
        "path": st.one_of(PATHS, CELLS),
        "label": CELLS,
        "attack_type": CELLS,
        "split": st.one_of(st.sampled_from(SPLITS), CELLS),
        "subject": st.one_of(st.sampled_from(["s0", "s1", "s2"]), CELLS),
        "landmarks": LANDMARKS,
    }
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["cell", "cell", "drop-column", "duplicate-row"]))
        if kind == "cell":
            column = draw(st.sampled_from(list(frame.columns)))
            row = draw(st.integers(0, len(frame) - 1))
            frame.iloc[row, frame.columns.get_loc(column)] = draw(columns[column])
        elif kind == "drop-column" and len(frame.columns) > 1:
            frame = frame.drop(columns=draw(st.sampled_from(list(frame.columns))))
        else:
            frame = pd.concat([frame, frame.iloc[[draw(st.integers(0, len(frame) - 1))]]])
    return frame


@settings(FUZZ, max_examples=FUZZ_EXAMPLES["manifest_rows"])
@given(frame=manifest_frames(), allow_outside=st.booleans())
def test_random_manifests_validate_or_raise_manifest_error(scratch, frame, allow_outside):
    path = scratch / "manifest.csv"
    frame.to_csv(path, index=False)
    code, _, err = _run_cli(["data", "stats", "--manifest", str(path)])  # the same via the CLI
    try:
        manifest = read_manifest(path, allow_outside_root=allow_outside)
    except ManifestError as error:
        assert str(path) in str(error)
        assert code == 2 and len(err.strip().splitlines()) == 1  # the CLI is as strict
        event("refused")
        return
    assert allow_outside or code == 0
    event("accepted")
    # an accepted manifest keeps every promise of the format
    assert len(manifest) > 0 and set(manifest.labels) <= {0, 1}
    assert set(manifest.frame["split"]) <= set(SPLITS)
    assert (manifest.frame.groupby("subject")["split"].nunique() == 1).all()
    live = manifest.labels == 1
    assert (manifest.attack_types[live] == "Live").all()
    assert all(p.is_file() for p in manifest.paths)
    if not allow_outside:
        root = scratch.resolve()
        assert all(p.resolve().is_relative_to(root) for p in manifest.paths)
    if manifest.landmarks is not None:
        assert np.isfinite(manifest.landmarks).all()


@settings(FUZZ, max_examples=FUZZ_EXAMPLES["manifest_bytes"])
@given(
    header=st.sampled_from([b"", b"path,label,attack_type,split,subject\n", b"\xef\xbb\xbf"]),
    body=st.binary(max_size=200),
)
def test_random_bytes_as_manifest_raise_manifest_error(scratch, header, body):
    path = scratch / "bytes.csv"
    path.write_bytes(header + body)
    try:
        read_manifest(path)
    except ManifestError as error:
        assert str(path) in str(error)


# --------------------------------------------------------------------------- images via the CLI


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("detector") / "tiny.safetensors"
    save_detector(create_detector("facecat-tiny", text_guided=False), path)
    return path


def _encoded(fmt: str, side: int, mode: str) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    image.save(buffer, fmt)
    return buffer.getvalue()


@st.composite
def image_files(draw) -> tuple[str, bytes]:
    """A real encoded image, then truncated, with flipped bytes, or replaced by random bytes."""
    fmt, suffix = draw(st.sampled_from([("PNG", ".png"), ("JPEG", ".jpg"), ("GIF", ".gif"),
                                        ("BMP", ".bmp"), ("TIFF", ".tif")]))  # fmt: skip
    mode = "RGB" if fmt == "JPEG" else draw(st.sampled_from(["RGB", "L", "P", "RGBA"]))
    if fmt == "JPEG" and mode == "RGBA":
        mode = "RGB"
    data = bytearray(_encoded(fmt, draw(st.sampled_from([1, 7, 32, 45])), mode))
    damage = draw(st.sampled_from(["none", "truncate", "flip", "random"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif damage == "random":
        data = data[:4] + draw(st.binary(max_size=300))
    return suffix, bytes(data)


@settings(FUZZ, max_examples=FUZZ_EXAMPLES["cli_image_bytes"])
@given(file=image_files())
def test_random_image_bytes_through_cli_score(scratch, detector_file, file):
    suffix, data = file
    image = scratch / f"random{suffix}"
    image.write_bytes(data)
    argv = ["score", "--aligned", "--threshold", "0.5", "--format", "json"]
    code, out, err = _run_cli([*argv, "--detector", str(detector_file), str(image)])
    event(f"exit {code}")
    if code == 0:  # an intact (or harmlessly damaged) image gets a probability
        assert 0 <= json.loads(out)[0]["p_real"] <= 1
    else:
        assert code == 2 and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and image.name in err
    image.unlink()


# --------------------------------------------------------------------------- tensors


@pytest.fixture(scope="module")
def detectors():
    return {
        "facecat": create_detector("facecat-tiny", text_guided=False),
        "cdcn": create_detector("cdcn", image_size=32, width=0.125),
    }


DTYPES = [
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int64,
    torch.bool, torch.complex64,
]  # fmt: skip


@st.composite
def tensors(draw) -> torch.Tensor:
    if draw(st.booleans()):  # the right shape and a float dtype, to reach the value checks
        shape = [draw(st.integers(0, 3)), 3, 32, 32]
        dtype = draw(st.sampled_from(DTYPES[:4]))
    else:
        shape = [draw(st.sampled_from([0, 1, 2, 3, 4, 32])) for _ in range(draw(st.integers(0, 5)))]
        dtype = draw(st.sampled_from(DTYPES))
    fill = draw(st.sampled_from(["rand", "rand", "rand", "nan", "inf", "neg", "big"]))
    values = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    if values.numel():
        flat = values.view(-1)
        flat[draw(st.integers(0, values.numel() - 1))] = {
            "rand": 0.5,
            "nan": math.nan,
            "inf": math.inf,
            "neg": -0.25,
            "big": 255.0,
        }[fill]
    return values.to(dtype)


@settings(FUZZ, max_examples=FUZZ_EXAMPLES["tensor_shapes_dtypes"])
@given(images=tensors(), kind=st.sampled_from(["facecat", "cdcn"]))
def test_random_shapes_and_dtypes_give_scores_or_image_batch_error(detectors, images, kind):
    detector = detectors[kind]
    try:
        scores = detector.scores(images)
    except ImageBatchError as error:
        assert str(error).startswith("images:")
        event("ImageBatchError")
        return
    except ValueError as error:  # the extractor's size check, also a ValueError
        assert "expects images of shape" in str(error)
        event("size ValueError")
        return
    event("scored")
    assert images.ndim == 4 and images.shape[1:] == (3, 32, 32)
    assert scores.shape == (images.shape[0],) and scores.dtype.is_floating_point
    assert torch.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()


# --------------------------------------------------------------------------- metrics


@st.composite
def score_label_pairs(draw) -> tuple[list, list]:
    """Mostly valid (finite scores, both classes), sometimes broken in one way."""
    n = draw(st.integers(2, 12))
    scores = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    labels = [k % 2 for k in range(n)]
    labels = draw(st.permutations(labels))
    broken = draw(st.sampled_from(["no"] * 4 + ["score", "label", "length", "one-class", "empty"]))
    if broken == "score":
        scores[draw(st.integers(0, n - 1))] = draw(st.sampled_from([math.nan, math.inf, -3.0]))
    elif broken == "label":
        labels[draw(st.integers(0, n - 1))] = draw(st.sampled_from([2, -1, 0.5]))
    elif broken == "length":
        labels = labels[:-1]
    elif broken == "one-class":
        labels = [labels[0]] * n
    elif broken == "empty":
        scores, labels = [], []
    return scores, labels


@settings(FUZZ, max_examples=FUZZ_EXAMPLES["metric_inputs"])
@given(pair=score_label_pairs(), threshold=st.floats(allow_nan=True), rule=st.sampled_from(
    ["eer", "bpcer=0.05", "bpcer=2", "fixed=0.5", "fixed=x", "acer", ""]))  # fmt: skip
def test_random_metric_inputs_give_rates_or_metrics_error(pair, threshold, rule):
    scores, labels = pair
    types = ["Live" if y == 1 else "Print" for y in labels]
    calls = {
        "auc": lambda: metrics.auc(scores, labels),
        "eer": lambda: metrics.eer(scores, labels)[0],
        "apcer": lambda: metrics.apcer_bpcer(scores, labels, threshold)[0],
        "bpcer": lambda: metrics.apcer_bpcer(scores, labels, threshold)[1],
        "tdr": lambda: metrics.tdr_at_fdr(scores, labels),
        "per_type": lambda: max(metrics.per_type_apcer(scores, labels, types, threshold).values()),
    }
    for name, call in calls.items():
        try:
            value = call()
        except metrics.MetricsError:
            event(f"{name}: MetricsError")
            continue
        event(f"{name}: value")
        assert 0.0 <= value <= 1.0, (name, value)
    try:
        threshold_value = metrics.choose_threshold(scores, labels, rule)
    except metrics.MetricsError:
        return
    assert math.isfinite(threshold_value)


# --------------------------------------------------------------------------- CLI option values


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> Path:
    return write_lfw_manifest(tmp_path_factory.mktemp("eval"), size=32, faces=5)


VALID_RULES = st.sampled_from(["eer", "bpcer=0.1", "fixed=0.3"])
OPTION_TEXT = st.one_of(
    VALID_RULES,
    VALID_RULES,
    st.sampled_from(["bpcer=-1", "fixed=inf", "0", "bpcer=1", "fixed=nan"]),
    st.text(string.printable, max_size=8),
)


@settings(FUZZ, max_examples=FUZZ_EXAMPLES["cli_eval_options"])
@given(
    threshold=OPTION_TEXT,
    batch_size=st.sampled_from(["4", "7", "4", "7", "4", "-3", "0", "x"]),
    bootstrap=st.sampled_from(["0", "3", "0", "3", "0", "-1", "many"]),
)
def test_random_cli_option_values_run_or_exit_2(
    detector_file, tiny_manifest, threshold, batch_size, bootstrap
):
    out = tiny_manifest.parent / "metrics.csv"
    out.unlink(missing_ok=True)
    argv = ["eval", "--detector", str(detector_file), "--manifest", str(tiny_manifest)]
    argv += ["--out", str(out), "--threshold=" + threshold, "--batch-size", batch_size]
    argv += ["--bootstrap", bootstrap, "--quiet"]
    code, _, err = _run_cli(argv)
    event(f"exit {code}")
    if code == 0:
        row = pd.read_csv(out).iloc[0]
        assert 0 <= row["acer"] <= 1 and 0 <= row["auc"] <= 1
    else:
        assert code == 2 and "Traceback" not in err and err.strip()
        assert not out.exists()  # a refused run writes no results file
