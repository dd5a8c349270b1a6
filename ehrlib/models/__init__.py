"""Generators under one interface: ``get(name, profile, **overrides)``, ``fit``, ``generate``, ``load``."""
from __future__ import annotations

import json
from pathlib import Path

from ehrlib.models.base import Generator, GeneratorError
from ehrlib.models.reference import Holdout, Marginals, Memorizer

REGISTRY: dict[str, type[Generator]] = {"holdout": Holdout, "marginals": Marginals, "memorizer": Memorizer}
#: Neural generators of the paper, not yet implemented in this version.
PLANNED = ("medgan", "corgan", "promptehr", "halo", "gpt")


def get(name: str, profile: str = "demo", **overrides) -> Generator:
    """A new, unfitted generator.

    Args:
        name: ``holdout``, ``marginals`` or ``memorizer`` (the neural models are listed in ``PLANNED``).
        profile: ``smoke``, ``demo`` or ``paper`` (the reference generators have no size to set).
        **overrides: constructor arguments, e.g. ``records=reference`` for ``holdout``.
    """
    if name in PLANNED:
        raise GeneratorError(f"model {name!r} is not implemented yet; available: {sorted(REGISTRY)}")
    if name not in REGISTRY:
        raise GeneratorError(f"unknown model {name!r}; expected one of {sorted(REGISTRY)}")
    return REGISTRY[name](**overrides)


def load(directory) -> Generator:
    """Load a generator saved with ``Generator.save(directory)``."""
    d = Path(directory)
    meta_path = d / "generator.json"
    if not meta_path.is_file():
        raise GeneratorError(f"{meta_path} not found: not a saved generator")
    meta = json.loads(meta_path.read_text())
    if meta.get("name") not in REGISTRY:
        raise GeneratorError(f"{meta_path}: unknown model {meta.get('name')!r}")
    return REGISTRY[meta["name"]].from_saved(d, meta)


__all__ = ["Generator", "GeneratorError", "get", "load", "REGISTRY"]
