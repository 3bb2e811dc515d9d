"""Command-line options shared by the unit tests (tests/) and the robustness suites."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="device for device-aware tests (cpu, cuda)")
