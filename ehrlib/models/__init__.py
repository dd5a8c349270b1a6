"""Generators under one interface: ``get(name, profile, **overrides)``, ``fit``, ``generate``, ``load``."""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
from dataclasses import asdict
import shutil
from pathlib import Path

from ehrlib.cohort import Cohort
from ehrlib.io import atomic_write

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


def saved(directory, neural: bool = False) -> list[str]:
    """Names of the generator folders saved under ``directory`` (sorted); only neural ones if asked."""
    d = Path(directory)
    out = []
    for meta in sorted(d.glob("*/generator.json")):
        name = json.loads(meta.read_text()).get("name")
        if name in NAMES and (not neural or name in NEURAL):
            out.append(meta.parent.name)
    return out


def fit_or_load(name: str, train: Cohort, directory, profile: str = "demo", force: bool = False,
                **overrides) -> Generator:
    """The training stage: fit ``name`` on ``train`` and save it to ``directory``, or load it.

    The saved generator is reused when ``directory/trained_on.json`` records the same model,
    config and training-data checksum (unless ``force``). Otherwise the neural models
    checkpoint to ``directory/checkpoints/<config and data hash>`` while training, so an interrupted stage rerun with
    the same arguments resumes where it stopped (``force`` starts again from scratch); the
    checkpoints are removed once the model is saved.
    """
    from ehrlib.models.neural import training_config

    generator = get(name, profile, **overrides)
    d = Path(directory)
    stamp = d / "trained_on.json"
    config = training_config(generator.config) if name in NEURAL else json.loads(json.dumps(asdict(generator.config)))
    key = {"name": name, "config": config, "data": train.checksum()}
    if not force and stamp.is_file() and json.loads(stamp.read_text()) == key:
        logging.getLogger("ehrlib.models").info("%s: up to date in %s; loading it", name, d)
        return load(d)
    if name in NEURAL:
        # one checkpoint folder per (config, data): a changed config never resumes a stale run
        tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        generator.fit(train, checkpoint_dir=d / "checkpoints" / tag, resume=not force)
    else:
        generator.fit(train)
    generator.save(d)
    atomic_write(stamp, lambda tmp: Path(tmp).write_text(json.dumps(key, indent=2)))
    shutil.rmtree(d / "checkpoints", ignore_errors=True)  # the saved model supersedes them
    return generator


__all__ = ["fit_or_load", "saved", "Generator", "GeneratorError", "get", "load", "model_class", "NAMES", "NEURAL", "REFERENCE"]
