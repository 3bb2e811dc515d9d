"""pytest plumbing of the physical suite: options, session fixtures, results at the end.

Options (besides ``--device`` from the root conftest):

* ``--physical-size``: photographs in the simulated set (default 500; up to 5,000).
* ``--physical-steps``: texture optimisation steps (default 30).
* ``--physical-captures``: photographs per print (default 4).
* ``--physical-captured``: a real captured set (folder with ``manifest.csv``, see
  :mod:`facecat.physical.captured`) evaluated instead of the simulated one.
* ``--physical-detectors``: comma-separated names (default ``facecat,cdcn``); ``name=path``
  adds a detector file of your own.
* ``--physical-transforms`` / ``--physical-severities``: robustness transformations applied
  to the physical set (default ``jpeg,gaussian_blur`` at ``1,3,5``; ``none``: clean only).
* ``--physical-epochs``, ``--physical-bootstrap``, ``--physical-criteria``,
  ``--physical-results-dir`` (default ``results/physical``).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pytest

from facecat.core.device import pick_device
from facecat.core.provenance import provenance
from facecat.datasets.adversarial_faces import create_recognizer
from facecat.datasets.protocol import default_cache_dir
from facecat.experiments.variants import embedded_p1
from facecat.physical.captured import load_captured_set
from facecat.physical.harness import PhysicalHarness
from facecat.physical.physical_set import (
    CONTACT_SHEET_NAME,
    FR_SUCCESS_NAME,
    PhysicalSet,
    PhysicalSettings,
    build_physical_set,
)
from facecat.physical.report import write_physical_results
from facecat.robustness.checks import Criteria, check_params, physical_checks
from facecat.robustness.detectors import DetectorPool, parse_detector_list

_HARNESS = pytest.StashKey[PhysicalHarness]()
_SET = pytest.StashKey[PhysicalSet]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("physical")
    group.addoption("--physical-size", type=int, default=500, help="simulated photographs")
    group.addoption("--physical-steps", type=int, default=30, help="texture EOT steps")
    group.addoption("--physical-captures", type=int, default=4, help="photographs per print")
    group.addoption("--physical-captured", help="captured set folder (instead of simulating)")
    group.addoption("--physical-detectors", default="facecat,cdcn", help="names or name=file")
    group.addoption("--physical-transforms", default="jpeg,gaussian_blur")
    group.addoption("--physical-severities", default="1,3,5")
    group.addoption("--physical-epochs", type=int, help="override the detectors' epochs")
    group.addoption("--physical-bootstrap", type=int, default=200, help="CI resamples")
    group.addoption(
        "--physical-criteria", help="criteria JSON (default: facecat/physical/criteria.json)"
    )
    group.addoption("--physical-results-dir", default="results/physical", help="output folder")


def _criteria(config: pytest.Config) -> Criteria:
    path = config.getoption("--physical-criteria")
    return Criteria.load(path or str(resources.files("facecat.physical") / "criteria.json"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "physical_suite: the generated physical checks")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the suite's ``check`` from the command-line options."""
    if metafunc.definition.get_closest_marker("physical_suite") is None:
        return
    config = metafunc.config
    names, _ = parse_detector_list(config.getoption("--physical-detectors"))
    chosen = config.getoption("--physical-transforms")
    transforms = [] if chosen in ("", "none") else chosen.split(",")
    severities = [int(s) for s in config.getoption("--physical-severities").split(",")]
    checks = physical_checks(names, transforms, severities)
    metafunc.parametrize("check", check_params(checks, _criteria(config)))


@pytest.fixture(scope="session")
def physical_set(request: pytest.FixtureRequest) -> PhysicalSet | None:
    """The simulated physical set (built or reused), or None with ``--physical-captured``."""
    config = request.config
    if config.getoption("--physical-captured"):
        return None
    device = pick_device(config.getoption("--device", default="cpu"))
    protocol = embedded_p1(default_cache_dir(), seed=0, bona_fide=None, device=device)
    settings = PhysicalSettings(
        size=config.getoption("--physical-size"),
        steps=config.getoption("--physical-steps"),
        captures=config.getoption("--physical-captures"),
    )
    built = build_physical_set(protocol.p1(), create_recognizer("dlib", str(device)), settings)
    config.stash[_SET] = built
    return built


@pytest.fixture(scope="session")
def harness(request: pytest.FixtureRequest, physical_set: PhysicalSet | None) -> PhysicalHarness:
    """The session's harness: protocol, detector pool, physical set and criteria."""
    config = request.config
    device = pick_device(config.getoption("--device", default="cpu"))
    cache_dir = default_cache_dir()
    protocol = embedded_p1(cache_dir, seed=0, bona_fide=None, device=device)
    _, files = parse_detector_list(config.getoption("--physical-detectors"))
    pool = DetectorPool(
        protocol.p1(),
        cache_dir / "runs" / protocol.root.name,
        cache_dir / "features",
        device=device,
        files=files,
        epochs=config.getoption("--physical-epochs"),
    )
    captured = config.getoption("--physical-captured")
    physical = load_captured_set(captured) if captured else physical_set.manifest
    built = PhysicalHarness(
        pool,
        _criteria(config),
        physical,
        n_boot=config.getoption("--physical-bootstrap"),
        protocol=protocol.root.name,
        provenance=provenance(device),
    )
    config.stash[_HARNESS] = built
    return built


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the records, the Table-7-style comparison, plots, FR success and contact sheet."""
    config = session.config
    out = Path(config.rootpath) / config.getoption("--physical-results-dir")
    built = config.stash.get(_HARNESS, None)
    written = []
    if built is not None and built.records:
        written += write_physical_results(built.records, list(built.scores.values()), out)
    simulated = config.stash.get(_SET, None)
    if simulated is not None:
        for name in (FR_SUCCESS_NAME, CONTACT_SHEET_NAME):
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(simulated.root / name, out / name)
            written.append(out / name)
    for path in written:
        print(f"\nwrote {path}")
