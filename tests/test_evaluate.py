"""evaluate(): one tidy table; the calibration generators land where they must."""
import numpy as np
import pytest

from ehrlib import models
from ehrlib.cohort import Cohort, CohortError
from ehrlib.data import simulate, split
from ehrlib.metrics import evaluate, evaluate_all
from ehrlib.metrics.evaluate import COLUMNS, table1


@pytest.fixture(scope="module")
def calibration():
    cohort = simulate(4000, seed=11)
    train, holdout = split(cohort, n_holdout=1000, seed=0)
    train, reference = split(train, n_holdout=1000, seed=1)
    synthetic = {
        "holdout": models.get("holdout", records=reference).fit(train).generate(1000, seed=0),
        "marginals": models.get("marginals").fit(train).generate(1000, seed=0),
        "memorizer": models.get("memorizer").fit(train).generate(1000, seed=0),
    }
    results = evaluate_all(train, holdout, synthetic, seed=0, n_bootstrap=200, repeats=5)
    return results.set_index(["model", "metric"])["estimate"]


def test_output_is_tidy_with_the_documented_metric_names(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(100, seed=0)
    out = evaluate(train, holdout, syn, n_bootstrap=20, repeats=2, progress=False)
    assert list(out.columns) == COLUMNS
    expected = {"prevalence_r2", "prevalence_pearson", "prevalence_rmse", "nnaar", "mia_accuracy", "mia_precision",
                "mia_recall", "mia_f1", "mia_auc", "mia_tpr_at_1pct_fpr", "exact_copy_rate", "dcr_share",
                "disc_accuracy", "disc_auc", "disc_score", "disc_auc_score"}
    assert set(out.metric) == expected
    assert set(out.family) == {"prevalence", "privacy", "discriminator"}


def test_families_and_discriminator_none_select_rows(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(100, seed=0)
    assert set(evaluate(train, holdout, syn, families=["privacy"], progress=False).family) == {"privacy"}
    out = evaluate(train, holdout, syn, discriminator=None, n_bootstrap=20, repeats=2, progress=False)
    assert "discriminator" not in set(out.family)
    with pytest.raises(CohortError, match="unknown metric family"):
        evaluate(train, holdout, syn, families=["vibes"])


def test_empty_synthetic_cohort_is_a_clear_error(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    empty = Cohort.from_visits([])
    with pytest.raises(CohortError, match="empty"):
        evaluate(train, holdout, empty, progress=False)


def test_holdout_scores_near_ideal(calibration):
    h = calibration["holdout"]
    assert 0.45 <= h["mia_auc"] <= 0.55
    assert abs(h["nnaar"]) <= 0.03
    assert 0.4 <= h["disc_auc"] <= 0.6
    assert h["exact_copy_rate"] < 0.05


def test_memorizer_is_flagged_by_every_privacy_metric(calibration):
    m, h = calibration["memorizer"], calibration["holdout"]
    assert m["exact_copy_rate"] == 1.0
    assert m["mia_auc"] > 0.6
    assert m["nnaar"] > 0.1 and m["nnaar"] > h["nnaar"] + 0.1
    assert m["dcr_share"] > h["dcr_share"] + 0.1


def test_marginals_matches_prevalence_but_a_discriminator_separates_it(calibration):
    mg, h = calibration["marginals"], calibration["holdout"]
    assert mg["prevalence_r2"] > 0.8
    assert mg["disc_auc"] > 0.65 and mg["disc_auc"] > h["disc_auc"] + 0.1


def test_table1_has_a_row_per_model_and_intervals(calibration):
    df = calibration.reset_index().assign(family="x", ci_low=np.nan, ci_high=np.nan, spread=np.nan)
    wide = table1(df)
    assert list(wide.model) == ["holdout", "marginals", "memorizer"]
    assert "prevalence_r2" in wide.columns and isinstance(wide.iloc[0]["nnaar"], str)


def test_cli_evaluates_long_format_files(tmp_path, small_cohort):
    from ehrlib.cli import main

    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(80, seed=0)
    paths = {}
    for name, c in {"train": train, "holdout": holdout, "mymodel": syn}.items():
        paths[name] = tmp_path / f"{name}.csv"
        c.events.to_csv(paths[name], index=False)
    assert main(["evaluate", "--train", str(paths["train"]), "--holdout", str(paths["holdout"]),
                 "--synthetic", str(paths["mymodel"]), "--out", str(tmp_path / "out"), "--n-bootstrap", "20"]) == 0
    import pandas as pd

    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert set(metrics.model) == {"mymodel"} and "nnaar" in set(metrics.metric)
    assert (tmp_path / "out" / "table1.md").is_file()
