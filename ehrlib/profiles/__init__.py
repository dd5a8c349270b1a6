"""Profiles (``smoke``, ``demo``, ``paper``): one YAML file each, loaded into typed settings.

A profile holds the data sizes, the evaluation settings and each neural model's preset (config
fields that differ from the model's defaults, which are the paper's appendix F values; the
``paper`` profile overrides nothing). ``get(name) -> Profile`` is the typed view;
``load(name) -> dict`` is the older dict view of the data and evaluation settings.

Lowest layer beside ``cohort``: imports nothing from ``ehrlib`` but the error classes. The model
preset *fields* are checked by the model when it builds its config (``ehrlib.models.get``), which
names this profile's file and key.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources as res
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from ehrlib.errors import ConfigError

#: The profile names, in increasing size; each has ``<name>.yaml`` beside this file.
NAMES = ("smoke", "demo", "paper")
#: The paper's neural generators and where each class lives (``module:Class``), defined here, the
#: lowest layer, so that profiles and :data:`ehrlib.models.NEURAL` read one table.
NEURAL_CLASSES = {
    "medgan": "ehrlib.models.medgan:MedGAN",
    "corgan": "ehrlib.models.corgan:CorGAN",
    "promptehr": "ehrlib.models.promptehr:PromptEHR",
    "halo": "ehrlib.models.halo:HALO",
    "gpt": "ehrlib.models.gpt:GPT",
}
#: The differentially private generators (``ehrlib.models.dp``): DP-SGD models (presets in a
#: profile's ``models``) and DP marginals (no presets: its ε comes from the profile's ``dp`` budgets).
DP_CLASSES = {
    "dp_medgan": "ehrlib.models.dp:DPMedGAN",
    "dp_gpt": "ehrlib.models.dp:DPGPT",
    "dp_marginals": "ehrlib.models.dp:DPMarginals",
}
#: Models a profile may hold presets for (the neural generators; the reference ones have none).
MODEL_NAMES = tuple(NEURAL_CLASSES) + ("dp_medgan", "dp_gpt")


@dataclass(frozen=True)
class DataSettings:
    """Sizes of the cohort and its splits."""

    n_patients: int    # simulated cohort size
    n_holdout: int     # real records never seen by generators (evaluation)
    n_reference: int   # a third split: the `holdout` reference generator's records


@dataclass(frozen=True)
class EvaluationSettings:
    """Sizes and switches of the evaluation stages."""

    n_synthetic: int   # records generated per model
    n_bootstrap: int   # bootstrap replicates of every interval
    nnaar_repeats: int  # subsample repeats of NNAAR
    lstm: bool         # also the LSTM discriminator
    protocols: str = "corrected, paper"  # evaluation protocols, comma separated: corrected, paper
    real_class: str = "train"  # the discriminator's real class: train or holdout
    longtail_models: str = "all"  # Figure 3's generators: all, or names, comma separated


@dataclass(frozen=True)
class DPSettings:
    """The differentially private generators' budgets and their audit (stage ``19_train_dp``)."""

    models: str = "dp_medgan, dp_gpt"     # DP-SGD generators, comma separated
    epsilons: str = "1, 8"                # their target budgets, comma separated
    marginals_epsilons: str = "0.5, 1, 8"  # DP marginals' budgets
    delta: float = 1e-5                   # δ of every DP-SGD model (must be below 1/n)
    canaries: int = 100                   # audit: canaries per audit run
    canary_codes: int = 4                 # audit: codes per canary
    confidence: float = 0.95              # audit: confidence of ε_lower

    def epsilon_list(self, field: str = "epsilons") -> list[float]:
        """A comma-separated budget field as floats."""
        return [float(v) for v in str(getattr(self, field)).split(",") if v.strip()]

    def model_list(self) -> list[str]:
        return [v.strip() for v in str(self.models).split(",") if v.strip()]


@dataclass(frozen=True)
class Profile:
    """One profile: ``name``, ``data``, ``evaluation`` and ``models`` (name -> preset overrides)."""

    name: str
    data: DataSettings
    evaluation: EvaluationSettings
    models: Mapping[str, Mapping[str, Any]]
    source: str  # the YAML file it was read from (for messages)
    dp: DPSettings = DPSettings()  # the DP generators' budgets and audit

    def preset(self, model: str) -> dict:
        """The config overrides of ``model`` in this profile (empty for a model it does not list)."""
        return dict(self.models.get(model, {}))

    def as_dict(self) -> dict:
        """The data and evaluation settings as the nested dict of :func:`load`."""
        return {"name": self.name, "data": dataclasses.asdict(self.data),
                "evaluation": dataclasses.asdict(self.evaluation)}


def check_name(name) -> str:
    """``name`` if it is a profile name; :class:`ConfigError` listing the choices otherwise."""
    if not isinstance(name, str) or name not in NAMES:
        raise ConfigError(f"profile={name!r}: expected one of {list(NAMES)}")
    return name


def get(name: str) -> Profile:
    """The typed, validated profile ``name`` (``smoke``, ``demo`` or ``paper``)."""
    return _read(check_name(name))


def load(name: str) -> dict:
    """The data and evaluation settings of profile ``name`` as a nested dict (older view of :func:`get`)."""
    return get(name).as_dict()


@functools.lru_cache(maxsize=None)
def _read(name: str) -> Profile:
    source = f"ehrlib/profiles/{name}.yaml"
    try:
        raw = yaml.safe_load(res.files(__package__).joinpath(f"{name}.yaml").read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({e})") from None
    return parse(raw, source, name)


def parse(raw, source: str, name: str | None = None) -> Profile:
    """Validate a profile's YAML data (``source`` names the file in messages)."""
    top = _mapping(raw, source, "the file", {"name", "data", "evaluation", "models", "dp"}, required={"name", "data",
                                                                                           "evaluation"})
    if name is not None and top["name"] != name:
        raise ConfigError(f"{source}: key 'name' is {top['name']!r}; expected {name!r} (the file's name)")
    data = _settings(DataSettings, top["data"], source, "data")
    evaluation = _settings(EvaluationSettings, top["evaluation"], source, "evaluation")
    models = _mapping(top.get("models") or {}, source, "models", set(MODEL_NAMES), required=set())
    presets = {}
    for model, preset in models.items():
        preset = _mapping(preset or {}, source, f"models.{model}", None, required=set())
        for key, value in preset.items():
            if not isinstance(value, (bool, int, float, str)) or (isinstance(value, float) and not math.isfinite(value)):
                raise ConfigError(f"{source}: key 'models.{model}.{key}' = {value!r}; expected a number, "
                                  "string or true/false")
        presets[model] = MappingProxyType(dict(preset))
    dp = _settings(DPSettings, top.get("dp") or {}, source, "dp")
    return Profile(top["name"], data, evaluation, MappingProxyType(presets), source, dp)


def _mapping(value, source: str, where: str, allowed: set | None, required: set) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {where} must be a mapping of keys, got {type(value).__name__}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{source}: {where}: key {bad[0]!r} is not a string")
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ConfigError(f"{source}: unknown key {(where + '.') if where != 'the file' else ''}{unknown[0]}; "
                              f"expected some of {sorted(allowed)}")
    missing = sorted(required - set(value))
    if missing:
        raise ConfigError(f"{source}: key {missing[0]!r} missing in {where}")
    return value


def _settings(cls, value, source: str, where: str):
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    value = _mapping(value, source, where, set(fields), required=required)
    for key, kind in fields.items():
        if key not in value:
            continue
        v = value[key]
        if kind == "bool" and not isinstance(v, bool):
            raise ConfigError(f"{source}: key '{where}.{key}' = {v!r}; expected true or false")
        if kind == "int" and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise ConfigError(f"{source}: key '{where}.{key}' = {v!r}; expected a positive integer")
        if kind == "float" and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                or v <= 0):
            raise ConfigError(f"{source}: key '{where}.{key}' = {v!r}; expected a positive number")
        if kind == "str" and not isinstance(v, str):
            raise ConfigError(f"{source}: key '{where}.{key}' = {v!r}; expected a string")
    return cls(**value)


__all__ = ["NAMES", "MODEL_NAMES", "NEURAL_CLASSES", "DP_CLASSES", "DPSettings", "DataSettings", "EvaluationSettings", "Profile", "check_name", "get", "load",
           "parse"]
