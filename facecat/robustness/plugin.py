"""The robustness harness as a pytest plugin (entry point ``pytest11``: ``facecat``).

Installing facecat registers it, so in any folder::

    pytest --pyargs facecat.robustness.suites -k jpeg \\
        --facecat-protocol mine.csv --facecat-detectors cdcn=cdcn,mine=my_module:Detector

runs the generated checks against your detectors and protocol and writes the results with
their provenance. Options:

* ``--facecat-protocol``: ``embedded`` (default; built or reused from the cache) or a
  manifest CSV with train, dev and test splits.
* ``--facecat-detectors`` (or ``--facecat-detector``): comma-separated; a bare ``facecat`` or
  ``cdcn`` is the built-in detector trained on the protocol's train split, ``name=source``
  a detector of yours: a detector file, a shipped detector's name (``cdcn``,
  ``facecat-small``) or ``module:attribute`` naming an object with ``scores(images)`` and
  ``image_size`` (:class:`facecat.robustness.detectors.ScoresObject`).
* ``--facecat-transforms``: restrict the transformation suites (default: every one).
* ``--facecat-epochs``: override the built-in detectors' epochs (quick trials), the unseen
  suite's hold-out schedule included (by default CDCN hold-outs train one epoch).
* ``--facecat-split``: ``test`` (default) or ``dev`` for the transformation checks.
* ``--facecat-results-dir``: default ``results/robustness`` (``results/robustness-dev``
  with ``--facecat-split dev``), relative to the folder pytest is run from.
* ``--facecat-criteria``, ``--facecat-bootstrap``, ``--facecat-device`` (default: the
  ``--device`` of the repository's own test options when they are loaded, else cpu).
* ``--facecat-attack-steps`` / ``-eot`` / ``-restarts``: the adaptive attacker (default
  100 steps x 8 EOT samples, 2 restarts).

Under ``torchrun --nproc_per_node N -m pytest ...`` the processes train FaceCat
data-parallel, score their shards of every split and gather the scores; rank 0 writes the
results. The plugin imports torch only when a suite runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from facecat.robustness.harness import Harness

_HARNESS = pytest.StashKey["Harness"]()
SUITE_MARKER = "robustness_suite"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("facecat", "facecat robustness harness")
    group.addoption("--facecat-protocol", default="embedded", help="'embedded' or a manifest CSV")
    group.addoption(
        "--facecat-detectors",
        "--facecat-detector",
        dest="facecat_detectors",
        default="facecat,cdcn",
        help="comma-separated: facecat, cdcn (built in, trained on the protocol) or "
        "name=source (a detector file, a shipped detector name or module:attribute)",
    )
    group.addoption("--facecat-transforms", help="comma-separated transformations (default: all)")
    group.addoption(
        "--facecat-epochs",
        type=int,
        help="override the built-in detectors' epochs, hold-outs included",
    )
    group.addoption(
        "--facecat-split",
        choices=("test", "dev"),
        default="test",
        help="split the transformation checks score ('dev' to choose a configuration "
        "without looking at the test split)",
    )
    group.addoption(
        "--facecat-results-dir",
        help="output folder (default results/robustness, or results/robustness-dev with "
        "--facecat-split dev)",
    )
    group.addoption("--facecat-criteria", help="criteria JSON (default: the packaged one)")
    group.addoption("--facecat-bootstrap", type=int, default=200, help="CI resamples per check")
    group.addoption("--facecat-device", help="cpu, cuda, cuda:1, ... (default: --device or cpu)")
    group.addoption("--facecat-attack-steps", type=int, default=100, help="adaptive steps")
    group.addoption(
        "--facecat-attack-eot", type=int, default=8, help="adaptive EOT samples per step"
    )
    group.addoption("--facecat-attack-restarts", type=int, default=2, help="adaptive restarts")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{SUITE_MARKER}(name): a generated facecat robustness suite"
    )


def device_option(config: pytest.Config) -> str:
    """``--facecat-device``, else the repository's ``--device`` when defined, else cpu."""
    return config.getoption("--facecat-device") or config.getoption("--device", default="cpu")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every suite test's ``check`` from the command-line options."""
    marker = metafunc.definition.get_closest_marker(SUITE_MARKER)
    if marker is None or "check" not in metafunc.fixturenames:
        return
    from facecat.robustness.checks import (
        Criteria,
        adaptive_checks,
        check_params,
        transform_checks,
        unseen_checks,
    )
    from facecat.robustness.detectors import parse_detector_list
    from facecat.robustness.transforms import TRANSFORMS

    config = metafunc.config
    names, sources = parse_detector_list(config.getoption("facecat_detectors"))
    suite = marker.args[0]
    if suite == "transform":
        chosen = config.getoption("--facecat-transforms")
        checks = transform_checks(names, chosen.split(",") if chosen else list(TRANSFORMS))
    elif suite == "unseen":
        checks = unseen_checks([n for n in names if n not in sources])
    else:
        checks = adaptive_checks(names)
    criteria = Criteria.load(config.getoption("--facecat-criteria"))
    metafunc.parametrize("check", check_params(checks, criteria))


@pytest.fixture(scope="session")
def harness(request: pytest.FixtureRequest) -> Harness:
    """The session's harness: protocol, detector pool and criteria, built once."""
    from facecat.core.device import pick_device
    from facecat.core.distributed import join_process_group
    from facecat.core.provenance import provenance
    from facecat.datasets.manifest import read_manifest
    from facecat.datasets.protocol import default_cache_dir
    from facecat.experiments.variants import embedded_p1
    from facecat.robustness.adaptive import AttackSettings
    from facecat.robustness.checks import Criteria
    from facecat.robustness.detectors import DetectorPool, manifest_key, parse_detector_list
    from facecat.robustness.harness import Harness

    config = request.config
    _, device = join_process_group(pick_device(device_option(config)))
    protocol_option = config.getoption("--facecat-protocol")
    cache_dir = default_cache_dir()
    if protocol_option == "embedded":
        protocol = embedded_p1(cache_dir, seed=0, bona_fide=None, device=device)
        manifest, key = protocol.p1(), protocol.root.name
    else:
        manifest = read_manifest(protocol_option)
        key = f"manifest-{manifest_key(manifest)}"
    names, sources = parse_detector_list(config.getoption("facecat_detectors"))
    pool = DetectorPool(
        manifest,
        cache_dir / "runs" / key,
        cache_dir / "features",
        device=device,
        files=sources,
        epochs=config.getoption("--facecat-epochs"),
    )
    built = Harness(
        pool,
        Criteria.load(config.getoption("--facecat-criteria")),
        n_boot=config.getoption("--facecat-bootstrap"),
        split=config.getoption("--facecat-split"),
        protocol=key,
        provenance=provenance(device),
        attack=AttackSettings(
            steps=config.getoption("--facecat-attack-steps"),
            eot_samples=config.getoption("--facecat-attack-eot"),
            restarts=config.getoption("--facecat-attack-restarts"),
        ),
        transfer=names,
    )
    config.stash[_HARNESS] = built
    return built


def results_dir(config: pytest.Config) -> Path:
    """Where this session's records go (see ``--facecat-results-dir``)."""
    chosen = config.getoption("--facecat-results-dir")
    if chosen is None:
        dev = config.getoption("--facecat-split") == "dev"
        chosen = "results/robustness-dev" if dev else "results/robustness"
    return Path(config.invocation_params.dir) / chosen


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write this session's records, the comparison and the curves into the results folder."""
    built = session.config.stash.get(_HARNESS, None)
    if built is None or not built.records:
        return
    from facecat.core.distributed import current_world
    from facecat.robustness.detectors import parse_detector_list
    from facecat.robustness.report import write_results

    if not current_world().is_main:
        return
    names, _ = parse_detector_list(session.config.getoption("facecat_detectors"))
    compare = (names[0], names[1]) if len(names) > 1 else None
    for path in write_results(built.records, results_dir(session.config), compare=compare):
        print(f"\nwrote {path}")
