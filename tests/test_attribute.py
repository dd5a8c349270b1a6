"""Attribute inference: the memorizer is flagged, the holdout reference is not."""
import numpy as np
import pandas as pd
import pytest

from ehrlib import models
from ehrlib.data import simulate, split
from ehrlib.metrics import names
from ehrlib.metrics.attribute import ATTRIBUTES, attribute_from_context, attribute_table
from ehrlib.metrics.context import EvaluationContext

B = 300


@pytest.fixture(scope="module")
def inputs():
    train, holdout = split(simulate(5000, seed=11), n_holdout=1000, seed=0)
    train, reference = split(train, n_holdout=1000, seed=1)
    synthetic = {"holdout": models.get("holdout", records=reference).fit(train).generate(1000, seed=0),
                 "memorizer": models.get("memorizer").fit(train).generate(1000, seed=0)}
    return train, holdout, reference, synthetic


@pytest.fixture(scope="module")
def results(inputs):
    train, holdout, reference, synthetic = inputs
    context = EvaluationContext.build(train, holdout, synthetic, reference)
    return pd.concat([attribute_from_context(context, n, n_bootstrap=B).assign(model=n) for n in synthetic],
                     ignore_index=True).set_index(["model", "metric"])


def test_every_sensitive_attribute_has_a_source():
    table = attribute_table()
    assert {"hiv", "mental", "substance"} == set(table.attribute) and table.source.str.len().gt(10).all()
    assert {a.name: a.prefixes[0] for a in ATTRIBUTES}["hiv"] == "042"


def test_the_memorizer_is_flagged(results):
    r = results.loc[("memorizer", names.ATTRIBUTE_ADVANTAGE)]
    assert r.ci_low > 0 and r.note.startswith("flagged")


def test_the_holdout_reference_is_not_flagged(results):
    r = results.loc[("holdout", names.ATTRIBUTE_ADVANTAGE)]
    assert r.ci_low <= 0 <= r.ci_high and r.note.startswith("not flagged")


def test_members_are_inferred_better_than_the_reference_baseline_only_under_memorisation(results):
    pooled = names.ATTRIBUTE_POOLED
    members = names.attribute_metric("f1_members", pooled)
    baseline = names.attribute_metric("f1_reference", pooled)
    assert results.loc[("memorizer", members), "estimate"] > results.loc[("memorizer", baseline), "ci_high"]
    assert results.loc[("holdout", members), "ci_low"] < results.loc[("holdout", baseline), "ci_high"]


def test_pooled_rows_have_intervals(results):
    pooled = [names.attribute_metric(s, names.ATTRIBUTE_POOLED) for s in names.ATTRIBUTE_STATS]
    rows = results.loc[[(m, p) for m in ("holdout", "memorizer") for p in pooled]]
    assert np.isfinite(rows[["estimate", "ci_low", "ci_high"]].to_numpy()).all()


def test_without_a_reference_the_baseline_rows_say_so(inputs):
    train, holdout, _, synthetic = inputs
    context = EvaluationContext.build(train, holdout, {"memorizer": synthetic["memorizer"]})
    out = attribute_from_context(context, "memorizer", n_bootstrap=20).set_index("metric")
    row = out.loc[names.attribute_metric("f1_reference", names.ATTRIBUTE_POOLED)]
    assert np.isnan(row.estimate) and "no reference cohort" in row.note
