"""Robustness harness: input transformations at graded severities and detector suites."""
