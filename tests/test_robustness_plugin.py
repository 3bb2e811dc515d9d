"""The robustness harness as an installed pytest plugin, run from a folder outside the repo."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from facecat.robustness.detectors import ScoresObject, load_user_detector, parse_detector_list

PROVENANCE_COLUMNS = {
    "protocol",
    "facecat_version",
    "git_commit",
    "torch_version",
    "device",
    "dtype",
    "date",
}

USER_DETECTOR = textwrap.dedent(
    """
    class Greyness:
        \"\"\"A user's detector, no facecat code: P(real) falls with colour saturation (the
        demonstration's bona fide faces are grey LFW crops, its attacks add colour).\"\"\"

        image_size = 48

        def scores(self, images):
            saturation = images.max(dim=1).values - images.min(dim=1).values
            return 1 - saturation.mean(dim=(1, 2))
    """
)


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACECAT_CACHE": str(folder / "cache"), "PYTHONPATH": str(folder)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_plugin_runs_jpeg_checks_on_shipped_and_user_detectors(
    tmp_path: Path, lfw_manifest: Path
) -> None:
    (tmp_path / "mine.py").write_text(USER_DETECTOR)
    done = run_pytest(
        tmp_path,
        "--pyargs",
        "facecat.robustness.suites",
        "-k",
        "jpeg and (sev0 or sev3)",
        "--facecat-protocol",
        str(lfw_manifest),
        "--facecat-detector",
        "cdcn=cdcn,mine=mine:Greyness",
        "--facecat-bootstrap",
        "20",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 passed" in done.stdout, done.stdout[-2000:]
    checks = pd.read_csv(tmp_path / "results" / "robustness" / "checks.csv")
    assert sorted(checks["id"]) == [
        "cdcn-jpeg-sev0",
        "cdcn-jpeg-sev3",
        "mine-jpeg-sev0",
        "mine-jpeg-sev3",
    ]
    assert set(checks.columns) >= PROVENANCE_COLUMNS
    assert checks["protocol"].str.startswith("manifest-").all()
    assert (checks["device"] == "cpu").all() and (checks["dtype"] == "float32").all()
    assert (checks["torch_version"] == torch.__version__).all()
    assert checks["auc"].between(0, 1).all()
    summary = pd.read_csv(tmp_path / "results" / "robustness" / "severity_summary.csv")
    assert set(summary["detector"]) == {"cdcn", "mine"}
    assert (summary["n_severities"] == 1).all()


def test_facecat_installs_no_top_level_package_but_its_own() -> None:
    top_level = importlib.metadata.distribution("facecat").read_text("top_level.txt")
    assert top_level is not None and top_level.split() == ["facecat"]


def test_a_foreign_robustness_package_stays_importable_beside_facecat(tmp_path: Path) -> None:
    foreign = tmp_path / "site" / "robustness"
    foreign.mkdir(parents=True)
    (foreign / "__init__.py").write_text("ORIGIN = 'pypi'\n")
    code = (
        "import robustness, facecat.robustness.checks as checks; "
        "print(robustness.ORIGIN, checks.Check('x', 'transform', 'jpeg', 1).id)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pypi", "x-jpeg-sev1"]


def test_detector_list_keeps_order_and_sources() -> None:
    names, sources = parse_detector_list("facecat, cdcn=cdcn,mine=pkg.mod:Detector")
    assert names == ["facecat", "cdcn", "mine"]
    assert sources == {"cdcn": "cdcn", "mine": "pkg.mod:Detector"}
    with pytest.raises(ValueError, match="empty detector name"):
        parse_detector_list("facecat,=x.safetensors")


def test_user_detector_errors_name_the_detector_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"detector 'mine': cannot import 'nosuchmodule:X'"):
        load_user_detector("mine", "nosuchmodule:X", torch.device("cpu"))

    class NoSize:
        def scores(self, images: torch.Tensor) -> torch.Tensor:
            return images.mean(dim=(1, 2, 3))

    with pytest.raises(TypeError, match=r"NoSize.image_size must be the input side"):
        ScoresObject(NoSize(), "mine")

    class WrongShape(NoSize):
        image_size = 8

        def scores(self, images: torch.Tensor) -> torch.Tensor:
            return images.mean(dim=(2, 3))

    wrapped = ScoresObject(WrongShape(), "mine")
    with pytest.raises(ValueError, match=r"returned shape \(2, 3\) for 2 images; expected \(2,\)"):
        wrapped.scores(torch.rand(2, 3, 8, 8))


def test_scores_object_accepts_arrays_and_lists() -> None:
    class ListScores:
        image_size = 4

        def scores(self, images: torch.Tensor) -> list[float]:
            return [0.25] * len(images)

    out = ScoresObject(ListScores(), "lists").scores(torch.rand(3, 3, 4, 4))
    assert out.dtype == torch.float32 and out.tolist() == [0.25, 0.25, 0.25]
