"""Shown numbers are rounded to what their intervals support; saved files keep every digit."""
import numpy as np
import pandas as pd
import pytest

from ehrlib import book
from ehrlib.metrics.display import DEFAULT_DECIMALS, decimals_for, interval_cell, with_intervals
from ehrlib.metrics.evaluate import table1
from ehrlib.runs import open_run


@pytest.mark.parametrize("u, decimals", [(0.034, 2), (0.0021, 4), (0.012, 3), (0.5, 1), (0.19, 2), (3.0, 0),
                                         (27.0, 0), (0.0, DEFAULT_DECIMALS), (np.nan, DEFAULT_DECIMALS)])
def test_decimals_keep_one_or_two_significant_digits_of_the_uncertainty(u, decimals):
    assert decimals_for(u) == decimals


def test_cells_round_estimate_and_interval_to_the_same_place():
    assert interval_cell(0.7123, 0.6801, 0.7482) == "0.71 [0.68, 0.75]"
    assert interval_cell(0.98712, 0.98523, 0.98934) == "0.9871 [0.9852, 0.9893]"
    assert interval_cell(12.34, spread=1.7) == "12.3 ± 1.7"
    assert interval_cell(0.123456) == "0.123"  # no interval: the default decimals
    assert interval_cell(0.5, 0.5, 0.5) == "0.500 [0.500, 0.500]"  # a zero-width interval


def test_a_wider_interval_never_shows_more_digits():
    widths = [0.0004, 0.004, 0.04, 0.4, 4.0]
    shown = [len(interval_cell(0.123456789, 0.1 - w, 0.1 + w).split(" ")[0]) for w in widths]
    assert shown == sorted(shown, reverse=True) and shown[0] > shown[-1]


def test_table1_cells_use_the_rule():
    tidy = pd.DataFrame([{"model": "m", "family": "prevalence", "metric": "prevalence_r2", "estimate": 0.912345,
                          "ci_low": 0.8801, "ci_high": 0.9402, "spread": np.nan}])
    assert table1(tidy).loc[0, "prevalence_r2"] == "0.91 [0.88, 0.94]"


def test_saved_tables_show_rounded_cells_and_keep_every_digit_in_the_csv(tmp_path):
    run = open_run("r", root=tmp_path)
    t = pd.DataFrame({"model": ["a"], "cosine": [0.912345], "cosine_ci_low": [0.8812], "cosine_ci_high": [0.9399],
                      "k": [50]})
    path = book.save_table(t, "table14", run)
    assert pd.read_csv(path).loc[0, "cosine"] == pytest.approx(0.912345)
    md = path.with_suffix(".md").read_text()
    assert "0.912 [0.881, 0.940]" in md and "cosine_ci_low" not in md and "50" in md
    plain = pd.DataFrame({"a": [1.5]})
    assert with_intervals(plain) is plain  # nothing to merge: unchanged
