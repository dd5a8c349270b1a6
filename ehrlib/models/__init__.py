"""Generators under one interface: ``get(name, profile, **overrides)``, ``fit``, ``generate``, ``load``."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

from ehrlib.models.base import Generator, GeneratorError
from ehrlib.models.reference import Holdout, Marginals, Memorizer

REFERENCE: dict[str, type[Generator]] = {"holdout": Holdout, "marginals": Marginals, "memorizer": Memorizer}
#: The paper's neural generators, imported on first use (they need torch).
NEURAL: dict[str, str] = {
    "medgan": "ehrlib.models.medgan:MedGAN",
    "corgan": "ehrlib.models.corgan:CorGAN",
    "promptehr": "ehrlib.models.promptehr:PromptEHR",
    "halo": "ehrlib.models.halo:HALO",
    "gpt": "ehrlib.models.gpt:GPT",
}
NAMES = (*NEURAL, *REFERENCE)


def model_class(name: str) -> type[Generator]:
    """The class registered under ``name``."""
    if name in REFERENCE:
        return REFERENCE[name]
    if name not in NEURAL:
        raise GeneratorError(f"unknown model {name!r}; expected one of {list(NAMES)}")
    module, cls = NEURAL[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get(name: str, profile: str = "demo", **overrides) -> Generator:
    """A new, unfitted generator.

    Args:
        name: ``medgan``, ``corgan``, ``promptehr``, ``halo``, ``gpt`` or a reference generator
            (``holdout``, ``marginals``, ``memorizer``).
        profile: ``smoke``, ``demo`` or ``paper``: the preset of the model's typed config
            (the reference generators have nothing to size).
        **overrides: config fields of a neural model (e.g. ``epochs=5``, ``data_mode="count"``),
            or constructor arguments of a reference generator (``records=reference`` for ``holdout``).
    """
    cls = model_class(name)
    if name in REFERENCE:
        return cls(**overrides)
    return cls.from_profile(profile, **overrides)


def load(directory) -> Generator:
    """Load a generator saved with ``Generator.save(directory)``."""
    d = Path(directory)
    meta_path = d / "generator.json"
    if not meta_path.is_file():
        raise GeneratorError(f"{meta_path} not found: not a saved generator")
    meta = json.loads(meta_path.read_text())
    if meta.get("name") not in NAMES:
        raise GeneratorError(f"{meta_path}: unknown model {meta.get('name')!r}; expected one of {list(NAMES)}")
    return model_class(meta["name"]).from_saved(d, meta)


__all__ = ["Generator", "GeneratorError", "get", "load", "model_class", "NAMES", "NEURAL", "REFERENCE"]
