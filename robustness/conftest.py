"""pytest plumbing of the robustness suites: options, session fixtures, results at the end.

Options (besides ``--device`` from the root conftest):

* ``--protocol``: ``embedded`` (default; built or reused from the cache) or a manifest CSV.
* ``--detectors``: comma-separated names (default ``facecat,cdcn``); ``name=path`` adds a
  detector file of your own (``facecat train`` output).
* ``--transforms``: restrict the transformation suites (default: every registered one).
* ``--epochs``: override the built-in detectors' epochs (quick trials).
* ``--results-dir``: where records and curves go (default ``results/robustness``).
* ``--criteria``: a criteria JSON of your own (default ``robustness/criteria.json``).
* ``--bootstrap``: resamples of the confidence intervals.

Under ``torchrun --nproc_per_node N -m pytest robustness/ ...`` the processes train FaceCat
data-parallel, score their shards of every split and gather the scores; rank 0 writes the
results.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from facecat.distributed import current_world, join_process_group
from facecat.manifest import read_manifest
from facecat.protocol import default_cache_dir
from facecat.registry import pick_device
from facecat.reproduce import embedded_p1
from robustness.checks import (
    Criteria,
    adaptive_checks,
    check_params,
    transform_checks,
    unseen_checks,
)
from robustness.detectors import DetectorPool, manifest_key, parse_detector_list
from robustness.harness import Harness
from robustness.report import write_results
from robustness.transforms import TRANSFORMS

_HARNESS = pytest.StashKey[Harness]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("robustness")
    group.addoption("--protocol", default="embedded", help="'embedded' or a manifest CSV")
    group.addoption("--detectors", default="facecat,cdcn", help="names or name=detector-file")
    group.addoption("--transforms", help="comma-separated transformations (default: all)")
    group.addoption("--epochs", type=int, help="override the built-in detectors' epochs")
    group.addoption(
        "--results-dir",
        help="output folder (default results/robustness, or results/robustness-dev with "
        "--split dev)",
    )
    group.addoption("--criteria", help="criteria JSON (default robustness/criteria.json)")
    group.addoption("--bootstrap", type=int, default=200, help="CI resamples per check")
    group.addoption(
        "--split",
        choices=("test", "dev"),
        default="test",
        help="split the transformation checks score ('dev' to choose a configuration "
        "without looking at the test split)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every suite test's ``check`` from the command-line options."""
    marker = metafunc.definition.get_closest_marker("robustness_suite")
    if marker is None or "check" not in metafunc.fixturenames:
        return
    config = metafunc.config
    names, files = parse_detector_list(config.getoption("--detectors"))
    suite = marker.args[0]
    if suite == "transform":
        chosen = config.getoption("--transforms")
        transforms = chosen.split(",") if chosen else list(TRANSFORMS)
        checks = transform_checks(names, transforms)
    elif suite == "unseen":
        checks = unseen_checks([n for n in names if n not in files])
    else:
        checks = adaptive_checks(names)
    criteria = Criteria.load(config.getoption("--criteria"))
    metafunc.parametrize("check", check_params(checks, criteria))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "robustness_suite(name): a generated robustness suite")


@pytest.fixture(scope="session")
def harness(request: pytest.FixtureRequest) -> Harness:
    """The session's harness: protocol, detector pool and criteria, built once."""
    config = request.config
    _, device = join_process_group(pick_device(config.getoption("--device", default="cpu")))
    protocol_option = config.getoption("--protocol")
    cache_dir = default_cache_dir()
    if protocol_option == "embedded":
        protocol = embedded_p1(cache_dir, seed=0, bona_fide=None, device=device)
        manifest, runs = protocol.p1(), cache_dir / "runs" / protocol.root.name
    else:
        manifest = read_manifest(protocol_option)
        runs = cache_dir / "runs" / f"manifest-{manifest_key(manifest)}"
    _, files = parse_detector_list(config.getoption("--detectors"))
    pool = DetectorPool(
        manifest,
        runs,
        cache_dir / "features",
        device=device,
        files=files,
        epochs=config.getoption("--epochs"),
    )
    built = Harness(
        pool,
        Criteria.load(config.getoption("--criteria")),
        n_boot=config.getoption("--bootstrap"),
        split=config.getoption("--split"),
    )
    config.stash[_HARNESS] = built
    return built


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write this session's records, the comparison and the curves into the results folder."""
    built = session.config.stash.get(_HARNESS, None)
    if built is None or not built.records or not current_world().is_main:
        return
    names, _ = parse_detector_list(session.config.getoption("--detectors"))
    chosen = session.config.getoption("--results-dir")
    if chosen is None:
        dev = session.config.getoption("--split") == "dev"
        chosen = "results/robustness-dev" if dev else "results/robustness"
    out = Path(session.config.rootpath) / chosen
    compare = (names[0], names[1]) if len(names) > 1 else (names[0], names[0])
    for path in write_results(built.records, out, compare=compare):
        print(f"\nwrote {path}")
