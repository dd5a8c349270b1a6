"""The evaluation context: built once, every family reads it, each cohort encoded once."""
import numpy as np
import pandas as pd
import pytest

from ehrlib import models
from ehrlib.cohort import CohortError
from ehrlib.data import simulate, split
from ehrlib.metrics import evaluate, names
from ehrlib.metrics.context import HOLDOUT, TRAIN, EvaluationContext
from ehrlib.metrics.discriminator import RandomForestConfig
from ehrlib.metrics.evaluate import evaluate_context
from ehrlib.metrics.privacy import privacy_metrics

RF = RandomForestConfig(n_estimators=10, n_jobs=1)


@pytest.fixture(scope="module")
def cohorts():
    train, holdout = split(simulate(1500, seed=3), n_holdout=300, seed=0)
    train, reference = split(train, n_holdout=300, seed=1)
    synthetic = {"holdout": models.get("holdout", records=reference).fit(train).generate(300, seed=0),
                 "marginals": models.get("marginals").fit(train).generate(300, seed=0),
                 "memorizer": models.get("memorizer").fit(train).generate(300, seed=0)}
    return train, holdout, reference, synthetic


def test_every_family_and_protocol_encodes_each_cohort_once(cohorts):
    train, holdout, reference, synthetic = cohorts
    context = EvaluationContext.build(train, holdout, synthetic, reference)
    for protocol in names.PROTOCOLS:
        evaluate_context(context, protocol=protocol, n_bootstrap=20, repeats=2, rf=RF, progress=False)
    # memo:* counts fits shared through the context (one per cohort, kind and protocol), not encodings
    encodings = {k: v for k, v in context.builds.items() if not k.startswith("memo:")}
    assert encodings and max(encodings.values()) == 1
    assert context.builds["memo:discriminator"] == len(synthetic) * len(names.PROTOCOLS)  # each fit once
    assert {f"encoded:{k}" for k in (TRAIN, HOLDOUT, *synthetic)} <= set(context.builds)


def test_a_generator_named_holdout_is_not_the_real_holdout(cohorts):
    train, holdout, reference, synthetic = cohorts
    context = EvaluationContext.build(train, holdout, synthetic, reference)
    assert context.binary("holdout").shape[0] == synthetic["holdout"].n_patients
    assert context.binary(HOLDOUT).shape[0] == holdout.n_patients
    with pytest.raises(CohortError, match="no cohort 'gpt'"):
        context.binary("gpt")


def test_the_context_family_equals_the_cohort_level_function(cohorts):
    train, holdout, reference, synthetic = cohorts
    alone = privacy_metrics(train, holdout, synthetic["marginals"], seed=0, repeats=2)
    ours = evaluate(train, holdout, synthetic["marginals"], families=[names.PRIVACY], repeats=2, progress=False)
    np.testing.assert_allclose(ours["estimate"].to_numpy(), alone["estimate"].to_numpy())


def test_the_overlap_check_runs_when_the_context_is_built(cohorts):
    train, holdout, reference, synthetic = cohorts
    with pytest.raises(CohortError, match="the holdout overlaps train"):
        EvaluationContext.build(train, train, synthetic)
    context = EvaluationContext.build(train, train, synthetic, allow_overlap=True)
    assert context.overlap["refuse"] and context.overlap["shared_ids"] == train.n_patients


def test_the_paper_protocol_records_that_it_has_no_utility_or_attribute_family(cohorts):
    train, holdout, reference, synthetic = cohorts
    context = EvaluationContext.build(train, holdout, synthetic, reference)
    out = evaluate_context(context, [names.UTILITY, names.ATTRIBUTE_INFERENCE], protocol=names.PAPER,
                           n_bootstrap=20, models=["marginals"], progress=False)
    assert list(out.metric) == [names.UTILITY_RATIO, names.ATTRIBUTE_ADVANTAGE]
    assert out.estimate.isna().all()
    assert out.note.str.contains("paper protocol has no").all()


def test_the_context_prevalence_equals_the_standalone_bootstrap(cohorts):
    from ehrlib.metrics.bootstrap import bootstrap_prevalence

    train, holdout, reference, synthetic = cohorts
    context = EvaluationContext.build(train, holdout, synthetic, reference)
    ours = evaluate_context(context, [names.PREVALENCE], n_bootstrap=30, seed=4, models=["marginals"], progress=False)
    alone = bootstrap_prevalence(train, synthetic["marginals"], n_bootstrap=30, seed=4)
    np.testing.assert_allclose(ours[["estimate", "ci_low", "ci_high"]].to_numpy(),
                               alone[["estimate", "ci_low", "ci_high"]].to_numpy())


def test_the_cohort_level_functions_take_a_context_instead_of_pre_encoded_extras(cohorts):
    train, holdout, reference, synthetic = cohorts
    context = EvaluationContext.build(train, holdout, synthetic, reference)
    alone = privacy_metrics(train, holdout, synthetic["marginals"], seed=0, repeats=2)
    for _ in range(2):
        shared = privacy_metrics(train, holdout, synthetic["marginals"], seed=0, repeats=2, context=context)
        pd.testing.assert_frame_equal(alone, shared)
    assert context.builds["encoded:marginals"] == 1 and context.builds[f"encoded:{TRAIN}"] == 1
    ours = evaluate(train, holdout, synthetic["memorizer"], families=[names.PREVALENCE], n_bootstrap=20, progress=False)
    given = evaluate(train, holdout, synthetic["memorizer"], families=[names.PREVALENCE], n_bootstrap=20,
                     progress=False, context=context)
    numbers = ["metric", "estimate", "ci_low", "ci_high", "bias"]
    pd.testing.assert_frame_equal(ours[numbers], given[numbers])
    assert given.note.str.contains("train side shared across generators").all()
    with pytest.raises(ValueError, match="context does not hold"):
        evaluate(train, holdout, synthetic["marginals"].renamed(), families=[names.PREVALENCE], context=context)
    with pytest.raises(ValueError, match="context does not hold"):
        privacy_metrics(holdout, train, synthetic["marginals"], context=context)
