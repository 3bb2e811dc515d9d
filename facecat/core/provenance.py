"""Where a result or a detector file came from: package, code and library versions, date."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import facecat


def git_commit(folder: Path | None = None) -> str:
    """The commit of the source tree facecat is imported from, "+dirty" when the package's
    code has local changes, or "unknown" outside a git checkout (an installed wheel).

    Only the package folder counts, and its shipped detectors (``data/detectors``) do not:
    the jobs write ``results/`` and the shipped detector files themselves, and a job's own
    output does not make the code it ran dirty. ``folder`` is the package folder (default:
    the imported facecat's)."""
    folder = folder or Path(facecat.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            [
                "git",
                "-C",
                str(folder),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)data/detectors",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if changes else "")


def provenance(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> dict[str, Any]:
    """facecat version, git commit, torch version, device, dtype and the UTC date."""
    return {
        "facecat_version": facecat.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def stamped(table: pd.DataFrame, protocol: str, device: str | torch.device = "cpu") -> pd.DataFrame:
    """``table`` with the protocol key and :func:`provenance` as trailing columns."""
    return table.assign(protocol=protocol, **provenance(device))
