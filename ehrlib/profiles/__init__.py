"""Profiles (``smoke``, ``demo``, ``paper``) as data: one YAML file each."""
from __future__ import annotations

import importlib.resources as res

import yaml

NAMES = ("smoke", "demo", "paper")


def load(name: str) -> dict:
    """The settings of profile ``name`` as a nested dict."""
    if name not in NAMES:
        raise ValueError(f"profile={name!r}: expected one of {NAMES}")
    return yaml.safe_load(res.files(__package__).joinpath(f"{name}.yaml").read_text())


def get(name: str):
    """The settings of profile ``name`` with attribute access (``get("demo").data.n_patients``)."""
    from types import SimpleNamespace

    def ns(v):
        return SimpleNamespace(**{k: ns(x) for k, x in v.items()}) if isinstance(v, dict) else v

    return ns(load(name))
