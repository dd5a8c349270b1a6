"""Generators under one interface: ``get(name, profile, **overrides)``, ``fit``, ``generate``, ``load``."""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import warnings
from pathlib import Path

from ehrlib import profiles
from ehrlib.cohort import Cohort
from ehrlib.errors import GeneratorError, ModelLoadError
from ehrlib.models.base import META, Generator, check_replaceable, read_meta, verify_files, write_model_folder
from ehrlib.models.reference import PARTIAL_MEMORIZERS, Holdout, Marginals, Memorizer

REFERENCE: dict[str, type[Generator]] = {"holdout": Holdout, "marginals": Marginals, "memorizer": Memorizer,
                                         **PARTIAL_MEMORIZERS}
#: The paper's neural generators, imported on first use: their modules import torch at the top
#: (``nn.Module`` classes at module level), so this registry, ``base`` and ``reference`` stay
#: importable, and the reference generators usable, without torch.
NEURAL: dict[str, str] = dict(profiles.NEURAL_CLASSES)
#: The differentially private generators (``ehrlib.models.dp``), imported on first use (torch, opacus).
DP: dict[str, str] = dict(profiles.DP_CLASSES)
NAMES = (*NEURAL, *REFERENCE, *DP)

log = logging.getLogger("ehrlib.models")


def model_class(name: str) -> type[Generator]:
    """The class registered under ``name``."""
    if name in REFERENCE:
        return REFERENCE[name]
    if name not in NEURAL and name not in DP:
        raise GeneratorError(f"unknown model {name!r}; expected one of {list(NAMES)}")
    module, cls = {**NEURAL, **DP}[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("torch", "transformers", "tokenizers", "safetensors",
                                                             "opacus"):
            raise GeneratorError(f"{name}: needs the package {e.name.split('.')[0]!r}, which is not installed; "
                                 "install torch for your machine and `pip install ehrlib[models]`") from None
        raise


def get(name: str, profile: str | None = None, **overrides) -> Generator:
    """A new, unfitted generator.

    Args:
        name: ``medgan``, ``corgan``, ``promptehr``, ``halo``, ``gpt`` or a reference generator
            (``holdout``, ``marginals``, ``memorizer``, or a partial memorizer ``memorizer_1``,
            ``memorizer_5``, ``memorizer_20``, ``memorizer_100``: that percentage of its records
            copied from training, the rest from ``marginals``).
        profile: ``smoke``, ``demo`` or ``paper``: the preset of a neural model's typed config
            (``None``: ``demo``). The reference generators have no presets: a profile passed for
            them is not used, and says so with a :class:`UserWarning` (they are the same under
            every profile).
        **overrides: config fields of a neural model (e.g. ``epochs=5``, ``data_mode="count"``),
            or constructor arguments of a reference generator (``records=reference`` for ``holdout``).
    """
    cls = model_class(name)
    if name == "dp_marginals":  # no presets: its epsilon is an argument (the profile's dp budgets)
        return cls(**overrides)
    if name in REFERENCE:
        if profile is not None:
            profiles.get(profile)  # an unknown name is still an error
            warnings.warn(f"models.get({name!r}, profile={profile!r}): the reference generators have no presets, so "
                          "the profile is not used (they are the same under every profile); leave it out",
                          UserWarning, stacklevel=2)
        _check_reference_arguments(name, cls, overrides)
        return cls(**overrides)
    return cls.from_profile("demo" if profile is None else profile, **overrides)


def _check_reference_arguments(name: str, cls: type[Generator], overrides: dict) -> None:
    """A reference generator takes its constructor's arguments only: a training field (``epochs``,
    ``patience``, ``val_fraction``, ...) is a :class:`ConfigError` naming it, not a ``TypeError``."""
    import inspect

    from ehrlib.errors import ConfigError

    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name not in ("self", "config")]
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(overrides) - set(accepted) - {"config"})
    if unknown:
        raise ConfigError(f"models.get({name!r}): {', '.join(unknown)} not accepted: the reference generators do not "
                          f"train (no epochs, patience or validation share), so they take no training fields; "
                          f"accepted: {accepted or 'none'}")


def load(directory) -> Generator:
    """Load a generator saved with ``Generator.save(directory)``.

    Every file is checked against the sha256 recorded in ``generator.json``; a missing,
    truncated, corrupt or mixed folder, bad JSON or a config that no longer fits the model class
    is one :class:`ModelLoadError` naming the folder, the file and what is wrong.
    """
    d = Path(directory)
    meta = read_meta(d)
    if meta.get("name") not in NAMES:
        raise ModelLoadError(f"{d / META}: unknown model {meta.get('name')!r}; expected one of {list(NAMES)}")
    verify_files(d, meta)
    return model_class(meta["name"]).from_saved(d, meta)


def saved(directory, neural: bool = False) -> list[str]:
    """Names of the generator folders saved under ``directory`` (sorted); only neural ones if asked."""
    d = Path(directory)
    out = []
    for meta in sorted(d.glob(f"*/{META}")):
        try:
            name = json.loads(meta.read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            continue  # not a readable model folder: load() names the problem
        if name in NAMES and (not neural or name in NEURAL):
            out.append(meta.parent.name)
    return out


def fit_or_load(name: str, train: Cohort, directory, profile: str | None = None, force: bool = False,
                **overrides) -> Generator:
    """The training stage: fit ``name`` on ``train`` and save it to ``directory``, or load it.

    The saved generator is reused when its ``generator.json`` records the same
    ``training_key(train)`` (model, training config, training data; unless ``force``).
    Otherwise the model is fitted with checkpoints in ``directory/checkpoints/<key hash>`` (so an
    interrupted stage rerun with the same arguments resumes where it stopped; ``force`` starts
    again), then saved all-or-nothing with its key; the checkpoints go with the old folder.
    A saved folder with the same key that fails its checks is a :class:`ModelLoadError`
    (rerun with ``force=True`` to retrain).
    """
    generator = get(name, profile, **overrides)
    d = Path(directory)
    key = generator.training_key(train)
    if not force and _saved_key(d) == key:
        log.info("%s: up to date in %s; loading it", name, d)
        try:
            return load(d)
        except ModelLoadError as e:
            raise ModelLoadError(f"{e} (fit_or_load: rerun with force=True to train it again)") from None
    check_replaceable(d)  # before training, not after: never train for a folder the save will refuse
    generator.fit(train, checkpoint_dir=checkpoint_folder(d, key), resume=not force)
    save_trained(d, generator, key)
    return generator


def checkpoint_folder(directory, key: dict) -> Path:
    """Where ``fit_or_load`` checkpoints a training of ``key`` for the model folder ``directory``:
    one folder per training key, so a changed config or data never resumes a stale run."""
    tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(directory) / "checkpoints" / tag


def save_trained(directory, generator: Generator, key: dict) -> Path:
    """Save a trained generator with its training key (what ``fit_or_load`` reuses). In a
    distributed (torchrun) training rank 0 alone writes and the other ranks wait for it."""
    ctx = None
    if name_is_neural(generator):
        from ehrlib.models import distributed

        ctx = distributed.current()
    if ctx is None or ctx.is_main:
        write_model_folder(directory, generator, extra={"training_key": key})
    if ctx is not None:
        distributed.barrier(ctx)
    return Path(directory)


def name_is_neural(generator: Generator) -> bool:
    """True for the neural generators (the ones that can train distributed)."""
    return generator.name in NEURAL


def up_to_date(directory, key: dict) -> bool:
    """True if ``directory`` holds a saved model whose recorded training key is ``key``."""
    return _saved_key(Path(directory)) == key


def _saved_key(d: Path):
    """The training key recorded in ``d``'s ``generator.json`` (None when there is none to read)."""
    try:
        return json.loads((d / META).read_text()).get("training_key")
    except (OSError, ValueError, AttributeError):
        return None


__all__ = ["fit_or_load", "checkpoint_folder", "save_trained", "up_to_date", "check_replaceable", "saved", "Generator", "GeneratorError", "ModelLoadError", "get", "load", "model_class",
           "NAMES", "NEURAL", "REFERENCE", "DP"]
