"""Fidelity, privacy and structure metrics computed from Cohorts.

Metric, family and protocol names: :mod:`ehrlib.metrics.names`.
"""

from ehrlib.metrics import names
from ehrlib.metrics.evaluate import evaluate, evaluate_all, table1

__all__ = ["evaluate", "evaluate_all", "table1", "names"]
