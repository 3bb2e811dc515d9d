"""Robustness checks as data, their pass criteria, and their pytest parametrization.

A :class:`Check` is one measurement: a detector under one suite case at one severity, with a
readable id (``facecat-jpeg-sev3``, ``cdcn-unseen-Mask_Silicone``, ``facecat-adaptive-eps8``)
that ``pytest -k`` selects on. :func:`parametrize_with_checks` turns a list of checks into
pytest parameters, in the manner of scikit-learn's ``parametrize_with_checks``, marking the
expected failures declared in the criteria file as ``xfail`` with their reasons.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from facecat.datasets.protocol import ATTACK_TYPES

SUITES = ("transform", "unseen", "adaptive", "physical")
SEVERITIES = (0, 1, 2, 3, 4, 5)
#: L-inf budgets of the adaptive attacker, in 1/255 units.
ADAPTIVE_BUDGETS = (0, 1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Check:
    """One robustness measurement.

    Args:
        detector: detector name in the pool ("facecat", "cdcn", or a user's).
        suite: "transform", "unseen", "adaptive" or "physical".
        case: transformation name, held-out attack type, "adaptive", or for the physical
            suite "clean" or the transformation applied to the physical set.
        severity: transformation severity (0 = clean) or adaptive budget (1/255 units);
            0 for the unseen suite.
    """

    detector: str
    suite: str
    case: str
    severity: int = 0

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite!r}; expected one of {SUITES}")

    @property
    def id(self) -> str:
        if self.suite == "transform":
            return f"{self.detector}-{self.case}-sev{self.severity}"
        if self.suite == "unseen":
            return f"{self.detector}-unseen-{self.case}"
        if self.suite == "physical":
            if self.case == "clean":
                return f"{self.detector}-physical"
            return f"{self.detector}-physical-{self.case}-sev{self.severity}"
        return f"{self.detector}-adaptive-eps{self.severity}"


def transform_checks(
    detectors: Sequence[str], transforms: Iterable[str], severities: Sequence[int] = SEVERITIES
) -> list[Check]:
    """Every detector x transformation x severity."""
    return [
        Check(detector, "transform", name, severity)
        for name in transforms
        for severity in severities
        for detector in detectors
    ]


def unseen_checks(
    detectors: Sequence[str], attack_types: Sequence[str] = ATTACK_TYPES
) -> list[Check]:
    """Every detector x held-out attack type (leave one type out, test on it)."""
    return [Check(d, "unseen", t) for t in attack_types for d in detectors]


def adaptive_checks(
    detectors: Sequence[str], budgets: Sequence[int] = ADAPTIVE_BUDGETS
) -> list[Check]:
    """Every detector x adaptive-attack budget (L-inf, 1/255 units)."""
    return [Check(d, "adaptive", "adaptive", b) for b in budgets for d in detectors]


def physical_checks(
    detectors: Sequence[str],
    transforms: Iterable[str] = (),
    severities: Sequence[int] = (1, 3, 5),
) -> list[Check]:
    """Every detector on the held-out physical set, clean and under each transformation."""
    cases = [("clean", 0)] + [(name, s) for name in transforms for s in severities]
    return [Check(d, "physical", case, s) for case, s in cases for d in detectors]


@dataclass(frozen=True)
class Rule:
    """A criterion for checks whose id matches a glob ``pattern``."""

    pattern: str
    min_auc: float | None = None
    xfail: bool = False
    reason: str = ""


class Criteria:
    """Pass criteria and expected failures, read from a JSON file.

    The file holds ``{"rules": [{"match": glob, "min_auc": x, "reason": text}, ...],
    "expected_failures": [{"match": glob, "reason": text}, ...]}``. A check must reach
    the ``min_auc`` of every rule matching its id; a check matching an expected failure is
    marked ``xfail`` with the reason (it still runs and is recorded).
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Criteria:
        """Read a criteria file (default: ``facecat/robustness/criteria.json``)."""
        if path is None:
            text = (resources.files("facecat.robustness") / "criteria.json").read_text()
            where = "robustness/criteria.json"
        else:
            text, where = Path(path).read_text(), str(path)
        try:
            data = json.loads(text)
            rules = [
                Rule(r["match"], min_auc=r.get("min_auc"), reason=r.get("reason", ""))
                for r in data.get("rules", [])
            ] + [
                Rule(r["match"], xfail=True, reason=r["reason"])
                for r in data.get("expected_failures", [])
            ]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{where}: not a valid criteria file ({error!r})") from error
        return cls(rules)

    def matching(self, check: Check) -> list[Rule]:
        return [r for r in self.rules if fnmatch.fnmatchcase(check.id, r.pattern)]

    def min_auc(self, check: Check) -> float | None:
        """The strictest AUC floor for ``check`` (None: record only)."""
        floors = [r.min_auc for r in self.matching(check) if r.min_auc is not None]
        return max(floors) if floors else None

    def expected_failure(self, check: Check) -> str | None:
        """The reason ``check`` is expected to fail, if it is."""
        reasons = [r.reason for r in self.matching(check) if r.xfail]
        return "; ".join(reasons) if reasons else None

    def verdict(self, check: Check, auc: float) -> tuple[bool, str]:
        """Whether ``auc`` passes, and the criterion as text."""
        floor = self.min_auc(check)
        if floor is None:
            return True, "recorded only"
        return auc >= floor, f"AUC >= {floor}"


def check_params(checks: Sequence[Check], criteria: Criteria | None = None) -> list[Any]:
    """pytest parameters for ``checks`` with readable ids and declared xfails."""
    criteria = criteria or Criteria.load()
    params = []
    for check in checks:
        reason = criteria.expected_failure(check)
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        params.append(pytest.param(check, id=check.id, marks=marks))
    return params


def parametrize_with_checks(
    checks: Sequence[Check], criteria: Criteria | None = None
) -> pytest.MarkDecorator:
    """Decorator parametrizing a test's ``check`` argument with ``checks``.

    Example::

        @parametrize_with_checks(transform_checks(["mine"], ["jpeg"]))
        def test_mine(check, harness):
            harness.run(check)
    """
    return pytest.mark.parametrize("check", check_params(checks, criteria))
