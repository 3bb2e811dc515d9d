"""The package layout: the README's "Where things are" map matches the tree, core stays a leaf."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "facecat"


def _map() -> dict[str, set[str]]:
    """Folder (or ``""`` for top-level files) -> module names the README lists for it."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for line in section.splitlines():
        match = re.match(r"- `([a-z_]+)/`: (.*)", line)
        if match:
            folder, body = match.groups()
            body = re.sub(r"\([^()]*\)", "", body)  # drop the explanations in brackets
            body = body.rsplit(": ", 1)[-1]  # drop a description before the list
            names = {n.split()[0] for n in body.split(",") if n.strip()}
            listed[folder] = {n.split("/")[0].split(".")[0] for n in names}
        elif line.startswith("- `"):
            listed.setdefault("", set()).update(re.findall(r"`([a-z_]+)\.py`", line))
    return listed


def test_the_readme_map_names_every_folder_and_module_of_the_package() -> None:
    listed = _map()
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert set(listed) - {""} == folders
    top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert listed[""] == top
    for folder in folders - {"configs", "data"}:
        modules = {
            p.stem if p.is_file() else p.name
            for p in (PACKAGE / folder).iterdir()
            if (p.suffix in (".py", ".json") or (p / "__init__.py").is_file())
            and not p.name.startswith("_")
        }
        assert {m for m in listed[folder] if not m.startswith("_")} == modules, folder


def test_core_imports_nothing_else_of_facecat() -> None:
    for path in (PACKAGE / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                inside = name == "facecat" or name.startswith("facecat.core")
                assert inside or not name.startswith("facecat"), f"{path.name} imports {name}"
