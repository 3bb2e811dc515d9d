"""Shared fixtures: device injection and the LFW demonstration manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facecat.datasets.demo import write_lfw_manifest


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA requested but not available")
    return torch.device(name)


@pytest.fixture(scope="session")
def lfw_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lfw_manifest(tmp_path_factory.mktemp("lfw"))
