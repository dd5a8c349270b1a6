"""How an estimate with an interval is written in a table: rounded to what the interval supports.

The rule (the usual one for measurements): the uncertainty ``u`` is half the interval's width
(``(high - low) / 2``) or the spread over repeats; it keeps two significant digits when its
leading digit is 1 or 2 and one otherwise, and the estimate and the interval's ends are written
to the same decimal place. So ``0.7123 [0.6801, 0.7482]`` (u = 0.034) reads ``0.71 [0.68, 0.75]``
and ``0.9871 [0.9852, 0.9893]`` (u = 0.0021) reads ``0.9871 [0.9852, 0.9893]``. A missing or
zero-width interval keeps :data:`DEFAULT_DECIMALS` decimals. The saved CSV files keep every
digit; only the shown tables are rounded.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_DECIMALS = 3
"""Decimals of a number shown without a usable interval (as the tables had before rounding)."""
MAX_DECIMALS = 6
"""No shown number gets more decimals than this, however narrow its interval."""


def decimals_for(uncertainty: float) -> int:
    """Decimal places that an uncertainty supports (see the module docstring)."""
    if not np.isfinite(uncertainty) or uncertainty < 0.5 * 10.0 ** -MAX_DECIMALS:  # zero as far as shown
        return DEFAULT_DECIMALS
    mantissa, exponent = f"{uncertainty:.1e}".split("e")  # decimal digits, not binary: 0.1 is 1.0e-01
    leading, exponent = int(mantissa[0]), int(exponent)
    digits = 2 if leading in (1, 2) else 1
    return int(min(MAX_DECIMALS, max(0, digits - 1 - exponent)))


OUTSIDE_FLAG = "‡"
"""Marks a shown estimate that lies outside its own interval (after rounding, as a reader sees it)."""
OUTSIDE_NOTE = (f"{OUTSIDE_FLAG} The estimate lies outside its interval. The interval is the basic bootstrap "
                "interval, which corrects for the bias of the plug-in estimate and targets the metric of the "
                "population (it covers the true value in ~95% of simulated runs; percentile intervals did not). The "
                "plug-in estimate shown is the metric of these finite samples: for a generator close to the real "
                "data, R² and Pearson r of two samples are biased low and RMSE high by sampling noise, so the "
                "interval can lie beyond the estimate. Read the interval.")
"""The footnote that goes with :data:`OUTSIDE_FLAG` wherever a flagged cell is shown."""


def interval_cell(estimate: float, low: float = np.nan, high: float = np.nan, spread: float = np.nan) -> str:
    """``estimate [low, high]``, ``estimate ± spread`` or ``estimate``, rounded alike; an estimate
    outside its interval (as rounded) carries :data:`OUTSIDE_FLAG`."""
    if not np.isfinite(estimate):
        return str(estimate)
    if np.isfinite(low) and np.isfinite(high):
        d = decimals_for((high - low) / 2)
        e, lo, hi = (float(f"{x:.{d}f}") for x in (estimate, low, high))
        flag = OUTSIDE_FLAG if (e < lo or e > hi) else ""
        return f"{estimate:.{d}f}{flag} [{low:.{d}f}, {high:.{d}f}]"
    if np.isfinite(spread):
        d = decimals_for(spread)
        return f"{estimate:.{d}f} ± {spread:.{d}f}"
    return f"{estimate:.{DEFAULT_DECIMALS}f}"


def plain_number(value) -> str:
    """A table cell as text: a whole float without decimals (``45517``, never ``45517.000000``),
    another float to four significant digits, anything else as it is; missing values empty."""
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "" if np.isnan(value) else str(value)
        if float(value).is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _triples(columns) -> list[tuple[str, str, str]]:
    cols = set(columns)
    out = []
    for c in columns:
        if c.endswith("_ci_low"):
            base = c[: -len("_ci_low")]
            if base in cols and f"{base}_ci_high" in cols:
                out.append((base, c, f"{base}_ci_high"))
    if {"estimate", "ci_low", "ci_high"} <= cols:
        out.append(("estimate", "ci_low", "ci_high"))
    return out


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """A copy for display: every ``X``, ``X_ci_low``, ``X_ci_high`` column triple (and
    ``estimate``, ``ci_low``, ``ci_high``) becomes one column ``X`` of rounded
    ``X [low, high]`` cells; other columns are unchanged. Tables without such triples are
    returned as they are."""
    triples = _triples(list(table.columns))
    if not triples:
        return table
    out = table.copy()
    for base, lo, hi in triples:
        spread = out["spread"] if base == "estimate" and "spread" in out.columns else None
        cells = []
        for i in range(len(out)):
            vals = [pd.to_numeric(out[c].iloc[i], errors="coerce") for c in (base, lo, hi)]
            s = pd.to_numeric(spread.iloc[i], errors="coerce") if spread is not None else np.nan
            e, low, high = (float(v) if pd.notna(v) else np.nan for v in vals)
            cells.append("" if np.isnan(e) else interval_cell(e, low, high, float(s) if pd.notna(s) else np.nan))
        out[base] = cells
        out = out.drop(columns=[lo, hi])
        if spread is not None:
            out = out.drop(columns=["spread"])
    return out
