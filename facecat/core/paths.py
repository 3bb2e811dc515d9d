"""Package folders, importable without torch (the command line's defaults use them)."""

from __future__ import annotations

from pathlib import Path

#: The packaged folder of shipped detectors.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "detectors"
