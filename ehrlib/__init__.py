"""ehrlib: the reproducible benchmark of synthetic EHR generators.

Stages follow the data flow: :mod:`ehrlib.data` (load, simulate, split, encode) ->
:mod:`ehrlib.models` (fit, generate) -> :mod:`ehrlib.metrics` (evaluate) ->
:mod:`ehrlib.plots` / :mod:`ehrlib.book` (tables and figures).
"""
from ehrlib.cohort import Cohort
from ehrlib.errors import CohortError, ConfigError, EhrlibError, GeneratorError, MetricError, ModelLoadError, RunError

__version__ = "0.1.0"
__all__ = ["Cohort", "CohortError", "ConfigError", "EhrlibError", "GeneratorError", "MetricError", "ModelLoadError",
           "RunError", "__version__"]
