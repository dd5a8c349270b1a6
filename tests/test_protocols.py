"""protocol_effects: each paper-vs-corrected difference measured on the same cohorts."""
import pytest

from ehrlib import models
from ehrlib.data import split
from ehrlib.metrics import names
from ehrlib.metrics.protocols import COLUMNS, DIFFERENCES, protocol_effects


@pytest.fixture(scope="module")
def effects(small_cohort):
    train, holdout = split(small_cohort, n_holdout=100, seed=0)
    syn = {"memorizer": models.get("memorizer").fit(train).generate(100, seed=0)}
    return protocol_effects(train, holdout, syn, n_bootstrap=20, repeats=2)


def test_every_difference_is_measured_with_both_values(effects):
    assert list(effects.columns) == COLUMNS
    assert set(effects.difference) == set(DIFFERENCES)
    assert (effects.effect == effects.paper - effects.corrected).all()


def test_the_papers_self_match_inflates_nnaar_for_a_memorizer(effects):
    row = effects[(effects.difference == "nnaar_rules") & (effects.metric == names.NNAAR)].iloc[0]
    assert row.effect > 0.05


def test_whole_protocol_rows_cover_the_papers_table1_metrics(effects):
    whole = set(effects[effects.difference == "whole"].metric)
    assert {names.NNAAR, names.MIA_F1, names.MIA_ACCURACY, names.PREVALENCE_R2, names.PREVALENCE_RMSE,
            names.disc_metric("rf", "score")} <= whole


def test_each_discriminator_is_fitted_once_and_the_whole_protocols_reuse_the_fits(small_cohort):
    from ehrlib.metrics.context import EvaluationContext
    from ehrlib.metrics.discriminator import discriminator_from_context

    train, holdout = split(small_cohort, n_holdout=100, seed=0)
    syn = {"memorizer": models.get("memorizer").fit(train).generate(100, seed=0)}
    context = EvaluationContext.build(train, holdout, syn)
    effects = protocol_effects(train, holdout, syn, n_bootstrap=20, repeats=2, context=context)
    # corrected, paper and holdout-as-real: three forests; the whole protocols' rows reuse two of them
    assert context.builds["memo:discriminator"] == 3
    whole = effects[(effects.difference == "whole")].set_index("metric")
    fresh = discriminator_from_context(EvaluationContext.build(train, holdout, syn), "memorizer", seed=0,
                                       n_bootstrap=20).set_index("metric")["estimate"]
    assert whole.loc[names.disc_metric("rf", "score"), "corrected"] == fresh[names.disc_metric("rf", "score")]
