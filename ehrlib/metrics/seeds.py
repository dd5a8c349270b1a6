"""Table 1 across seeds: how much each metric moves when the whole pipeline is rerun with
another seed (split, training and evaluation), beside how wide one run's own intervals are.

The paper reports one run per generator (its Table 1); a seed sweep (``ehrbench reproduce
--seeds``, the book's "Reproducing" page) shows whether a difference between two generators is
larger than the spread between reruns of one.
"""
from __future__ import annotations

import pandas as pd

from ehrlib.errors import ConfigError

#: The columns each run's tidy Table 1 must have.
TIDY_COLUMNS = ("model", "family", "metric", "estimate", "ci_low", "ci_high")


def seeds_table1(tables_by_seed: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Per model and metric, the mean and standard deviation of the estimate over seeds, the
    number of seeds, and the mean width of the within-run intervals.

    Args:
        tables_by_seed: each seed's tidy Table 1 (one row per model and metric, with
            ``model``, ``family``, ``metric``, ``estimate``, ``ci_low``, ``ci_high``).

    Raises:
        ConfigError: no table is given, or one lacks a column.
    """
    if not tables_by_seed:
        raise ConfigError("seeds_table1: no seed's Table 1 given")
    frames = []
    for seed, table in tables_by_seed.items():
        missing = [c for c in TIDY_COLUMNS if c not in table.columns]
        if missing:
            raise ConfigError(f"seeds_table1: the Table 1 of seed {seed} has no column {missing[0]!r}; "
                              f"expected {list(TIDY_COLUMNS)}")
        frames.append(table.assign(seed=seed))
    df = pd.concat(frames, ignore_index=True)
    df["ci_width"] = df["ci_high"] - df["ci_low"]
    return (df.groupby(["model", "family", "metric"])
              .agg(mean=("estimate", "mean"), sd_across_seeds=("estimate", "std"), seeds=("seed", "nunique"),
                   mean_ci_width_within_run=("ci_width", "mean"))
              .reset_index())
