"""Fidelity, privacy and structure metrics computed from Cohorts."""

from ehrlib.metrics.evaluate import evaluate, evaluate_all

__all__ = ["evaluate", "evaluate_all"]
