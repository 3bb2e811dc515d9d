"""The commit stamp of results: dirty only when the package's code has local changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from facecat.core.provenance import git_commit


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_only_changes_to_the_package_code_make_the_stamp_dirty(tmp_path) -> None:
    package = tmp_path / "facecat"
    for name in ("facecat/cli.py", "facecat/data/detectors/cdcn.txt", "results/table.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "first")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(package) == head
    (tmp_path / "results/table.csv").write_text("v2\n")
    (package / "data/detectors/cdcn.txt").write_text("v2\n")
    assert git_commit(package) == head  # a job's own outputs
    (package / "cli.py").write_text("v2\n")
    assert git_commit(package) == head + "+dirty"


def test_outside_a_checkout_the_commit_is_unknown(tmp_path) -> None:
    assert git_commit(tmp_path) == "unknown"
