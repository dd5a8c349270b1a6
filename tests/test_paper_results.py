"""The paper's printed numbers as data, and the paper-vs-ours table."""
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA
from ehrlib.errors import MetricError
from ehrlib.metrics.paper import COMPARE_COLUMNS, compare, paper_results, tidy


def test_every_printed_number_parses_to_its_value():
    paper = paper_results()
    printed = paper["printed"].str.replace(",", "").astype(float)
    assert np.allclose(printed, paper["value"])
    assert paper.groupby("table").size().to_dict() == {"1": 2, "12": 36, "13": 40, "14": 10}
    assert not paper.duplicated(["table", "model", "metric"]).any()
    assert all(p in s for p, s in zip(paper["printed"], paper["source"]))


def test_differences_only_where_ours_came_from_the_same_artifacts():
    ours = pd.DataFrame({"model": ["halo", "train"], "metric": ["cosine", "patients"], "estimate": [0.976, 45_517]})
    other = compare(ours, "simulated cohort")
    assert list(other.columns) == list(COMPARE_COLUMNS)
    assert other["difference"].isna().all() and not other["comparable"].any()
    same = compare(ours, "the paper's released samples", same_artifacts=True).set_index(["model", "metric"])
    assert same.loc[("halo", "cosine"), "difference"] == pytest.approx(0)
    assert bool(same.loc[("halo", "cosine"), "within_rounding"])
    assert np.isnan(same.loc[("train", "patients"), "difference"])  # the real row is MIMIC-III, never ours
    assert np.isnan(same.loc[("halo", "kl"), "ours"])


def test_within_rounding_uses_the_printed_precision():
    ours = pd.DataFrame({"model": ["gpt", "gpt"], "metric": ["lstm_disc_score", "prevalence_r2"],
                         "estimate": [0.35504, 0.8735]})
    got = compare(ours, "x", same_artifacts=True, tables=["1"]).set_index("metric")["within_rounding"]
    assert bool(got["lstm_disc_score"]) and not bool(got["prevalence_r2"])


def test_bad_ours_is_a_metric_error():
    with pytest.raises(MetricError, match="lacks column"):
        compare(pd.DataFrame({"model": ["halo"], "value": [1]}), "x")
    twice = pd.DataFrame({"model": ["halo", "HALO"], "metric": ["kl", "kl"], "estimate": [1, 2]})
    with pytest.raises(MetricError, match="more than once"):
        compare(twice, "x")
    with pytest.raises(MetricError, match="data="):
        compare(twice.iloc[:1], " ")


def test_missing_results_file_names_it(tmp_path):
    with pytest.raises(MetricError, match="nope.csv"):
        paper_results(tmp_path / "nope.csv")


@pytest.mark.skipif(not (SHARED_DATA / "paper-samples").is_dir(), reason="../shared/data/paper-samples not present")
def test_table12_of_the_released_samples_matches_the_paper():
    from ehrlib.data.registry import load_paper_samples
    from ehrlib.metrics.structure import summary_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = load_paper_samples(SHARED_DATA)
    got = compare(tidy(summary_table(samples), "dataset"), "released samples", same_artifacts=True, tables=["12"])
    synthetic = got[got["model"] != "train"]
    assert len(synthetic) == 30 and synthetic["within_rounding"].all()


def test_between_samples_scores_every_ordered_pair(small_cohort):
    from ehrlib.metrics.paper import between_samples

    ids = small_cohort.subject_ids
    samples = {"a": small_cohort.subset(ids[:150]), "b": small_cohort.subset(ids[150:300]), "c": small_cohort.subset(ids[:150])}
    got = between_samples(samples, k=20)
    assert set(zip(got["reference"], got["model"])) == {(r, m) for r in "abc" for m in "abc" if r != m}
    same = got[(got["reference"] == "a") & (got["model"] == "c")].set_index("metric")["estimate"]
    assert same["prevalence_r2"] == pytest.approx(1) and same["cosine"] == pytest.approx(1)
    assert same["coverage_pct"] == pytest.approx(100) and same["js"] == pytest.approx(0, abs=1e-12)
    with pytest.raises(MetricError, match="at least two"):
        between_samples({"a": samples["a"]})
