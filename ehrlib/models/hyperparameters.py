"""Tables 3-11 of the paper (appendix F) beside our ``paper`` presets.

Paper: appendix F (Tables 3-11). The paper's values live in ``ehrlib/profiles/appendix_f.yaml``
(with each deliberate difference and its reason); :func:`appendix_f` compares them with the
configs that ``models.get(name, "paper")`` builds.
"""
from __future__ import annotations

import importlib.resources as res
import math

import pandas as pd
import yaml

from ehrlib.errors import ConfigError

SOURCE = "ehrlib/profiles/appendix_f.yaml"
COLUMNS = ["model", "tables", "field", "item", "paper", "ours", "against", "differs", "deviation", "source"]


def appendix_f_data() -> dict:
    """The parsed ``appendix_f.yaml``: model -> ``{tables, fields, deviations}``."""
    data = yaml.safe_load(res.files("ehrlib.profiles").joinpath("appendix_f.yaml").read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"{SOURCE}: expected a mapping of model names")
    return data


def _same(ours, reference) -> bool:
    if isinstance(reference, list):  # a range the paper searched
        low, high = reference
        return not isinstance(ours, bool) and isinstance(ours, (int, float)) and low <= ours <= high
    if isinstance(reference, bool) or isinstance(ours, bool):
        return ours is reference
    if isinstance(reference, (int, float)) and isinstance(ours, (int, float)):
        return math.isclose(ours, reference, rel_tol=1e-9, abs_tol=0.0)
    return ours == reference


def appendix_f(models: list[str] | None = None) -> pd.DataFrame:
    """One row per (model, hyperparameter) of appendix F: the paper's value beside our ``paper`` preset.

    Columns: ``model``, ``tables``, ``field`` (our config field), ``item`` (the table's row),
    ``paper`` (the stated value; a ``[low, high]`` range; ``None`` where our text of the paper
    lost it), ``ours``, ``against`` (``paper``, or ``original`` when the paper gives no value
    and the reference implementation's is compared instead), ``differs``, ``deviation`` (the
    listed reason, empty if none) and ``source`` (of an ``original`` value).
    """
    from ehrlib.models import get

    data = appendix_f_data()
    rows = []
    for name in models or list(data):
        if name not in data:
            raise ConfigError(f"{SOURCE}: no entry for model {name!r}; expected one of {sorted(data)}")
        entry = data[name]
        config = get(name, "paper").config
        deviations = entry.get("deviations") or {}
        for field, spec in entry["fields"].items():
            if not hasattr(config, field):
                raise ConfigError(f"{SOURCE}: {name}.fields.{field}: not a field of {type(config).__name__}")
            ours = getattr(config, field)
            paper = spec.get("paper")
            against = "paper" if paper is not None else ("original" if spec.get("original") is not None else "")
            reference = paper if paper is not None else spec.get("original")
            differs = bool(against) and not _same(ours, reference)
            rows.append({"model": name, "tables": entry.get("tables", ""), "field": field, "item": spec.get("item", ""),
                         "paper": paper, "ours": ours, "against": against, "differs": differs,
                         "deviation": " ".join(str(deviations.get(field, "")).split()),
                         "source": spec.get("source", "") if against == "original" else ""})
    return pd.DataFrame(rows, columns=COLUMNS)


__all__ = ["appendix_f", "appendix_f_data"]
