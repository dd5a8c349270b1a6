"""One error hierarchy: every error ``ehrlib`` raises on purpose is an :class:`EhrlibError`.

Each message names the thing that is wrong (file, column, value, folder) and what was
expected, so a user can fix it without reading the library. The CLI prints these as one line
(``ehrbench: error: ...``) and keeps tracebacks for ``--debug``.

All subclass :class:`ValueError` as well, so code written against the earlier ``ValueError``
contract keeps working.
"""
from __future__ import annotations


class EhrlibError(ValueError):
    """Base of every deliberate ``ehrlib`` error."""


class CohortError(EhrlibError):
    """A cohort or its source file violates the schema (file, column, row and value named)."""


class ConfigError(EhrlibError):
    """A profile, preset, parameter or option has a value that is not allowed."""


class RunError(EhrlibError):
    """A run folder, stage or manifest is missing, unsafe to touch, or inconsistent."""


class RunInterrupted(RunError):
    """Ctrl-C stopped ``ehrbench reproduce``; ``results`` holds every selected stage's outcome."""

    def __init__(self, message: str, results=None):
        super().__init__(message)
        self.results = list(results or [])


class GeneratorError(EhrlibError):
    """A generator was misused (bad ``n``, ``generate`` before ``fit``) or failed to produce data."""


class ModelLoadError(GeneratorError):
    """A saved model folder cannot be loaded: missing, truncated, corrupt or mixed files."""


class MetricError(EhrlibError):
    """A metric was asked for something it cannot compute (unknown family, empty input, ...)."""


__all__ = ["EhrlibError", "CohortError", "ConfigError", "RunError", "RunInterrupted", "GeneratorError", "ModelLoadError", "MetricError"]
