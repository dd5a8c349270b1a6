"""The one interface every generator implements: ``fit(train)``, ``generate(n, seed)``, ``save``/``load``.

``generate`` always returns a validated Cohort whose subjects are named ``SYNTH_000001``...,
so no real subject id ever leaves a generator (even one that copies records).
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

from ehrlib.cohort import Cohort, CohortError
from ehrlib.errors import GeneratorError
from ehrlib.io import atomic_write




@dataclass(frozen=True)
class Config:
    """Base of every model's typed configuration."""


class Generator(ABC):
    """A synthetic-EHR generator."""

    name: str = "generator"
    config: Config

    def __init__(self, config: Config | None = None):
        self.config = config if config is not None else type(self).default_config()
        self.fitted = False

    @classmethod
    def default_config(cls) -> Config:
        return Config()

    # ---------------------------------------------------------------- public API
    def fit(self, train: Cohort) -> "Generator":
        """Fit on the training cohort; returns ``self``."""
        if train.n_patients == 0:
            raise CohortError(f"{self.name}: cannot fit on an empty cohort")
        self._fit(train)
        self.fitted = True
        return self

    def generate(self, n: int, seed: int = 0) -> Cohort:
        """``n`` synthetic patients (fewer only if the generator emits empty records), deterministic by seed."""
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise GeneratorError(f"{self.name}: n={n!r}; expected a positive integer")
        if not self.fitted:
            raise GeneratorError(f"{self.name}: call fit(train) before generate()")
        cohort = self._generate(n, seed)
        return cohort.renamed().validate()

    def save(self, directory) -> Path:
        """Write ``generator.json`` (name + config) and the model's state into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._save_state(d)
        meta = {"name": self.name, "config": asdict(self.config), "fitted": self.fitted}
        atomic_write(d / "generator.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))
        return d

    @classmethod
    def from_saved(cls, directory: Path, meta: dict) -> "Generator":
        gen = cls(cls.default_config().__class__(**meta["config"]))
        gen._load_state(Path(directory))
        gen.fitted = meta.get("fitted", True)
        return gen

    # ---------------------------------------------------------------- for subclasses
    @abstractmethod
    def _fit(self, train: Cohort) -> None: ...

    @abstractmethod
    def _generate(self, n: int, seed: int) -> Cohort: ...

    def _save_state(self, directory: Path) -> None: ...

    def _load_state(self, directory: Path) -> None: ...
