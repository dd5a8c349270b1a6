"""Utility (train on synthetic, test on real): the calibration rows land where they must."""
import numpy as np
import pandas as pd
import pytest

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.data import simulate, split
from ehrlib.metrics import names
from ehrlib.metrics.context import EvaluationContext
from ehrlib.metrics.utility import PHENOTYPES, phenotype_columns, phenotype_table, utility_from_context

B = 300


@pytest.fixture(scope="module")
def results():
    train, holdout = split(simulate(5000, seed=11), n_holdout=1000, seed=0)
    train, reference = split(train, n_holdout=1000, seed=1)
    synthetic = {"holdout": models.get("holdout", records=reference).fit(train).generate(1000, seed=0),
                 "marginals": models.get("marginals").fit(train).generate(1000, seed=0),
                 "memorizer": models.get("memorizer").fit(train).generate(1000, seed=0)}
    context = EvaluationContext.build(train, holdout, synthetic)
    out = pd.concat([utility_from_context(context, n, n_bootstrap=B, seed=0).assign(model=n) for n in synthetic],
                    ignore_index=True)
    return out.set_index(["model", "metric"])


def test_every_phenotype_has_a_source_and_at_least_six_are_defined():
    table = phenotype_table()
    assert len(table) >= 6 and table["source"].str.len().gt(10).all()
    assert {"diabetes", "heart_failure", "ckd", "sepsis", "aki", "hypertension"} <= set(table.task)


def test_phenotype_codes_match_by_prefix_without_neighbours():
    sepsis = next(p for p in PHENOTYPES if p.name == "sepsis")
    codes = ["0380", "0389", "99591", "99592", "99590", "0381", "038", "V038"]
    assert [codes[i] for i in phenotype_columns(codes, sepsis)] == ["0380", "0389", "99591", "99592", "0381", "038"]


def test_the_holdout_reference_is_as_useful_as_real_training_data(results):
    r = results.loc[("holdout", names.UTILITY_RATIO)]
    assert abs(r.estimate - 1.0) < 0.1
    assert r.ci_low < r.estimate < r.ci_high


def test_the_memorizer_is_as_useful_as_real_training_data(results):
    assert results.loc[("memorizer", names.UTILITY_RATIO), "estimate"] > 0.9


def test_the_marginals_generator_is_near_chance_where_the_label_depends_on_co_occurrence(results):
    tasks = [p.name for p in PHENOTYPES]
    trtr = {t: results.loc[("marginals", names.task_metric(names.TRTR_AUROC, t)), "estimate"] for t in tasks}
    dependent = [t for t, auc in trtr.items() if auc > 0.6]  # other codes do predict the label in real data
    assert len(dependent) >= 4
    tstr = {t: results.loc[("marginals", names.task_metric(names.TSTR_AUROC, t))] for t in dependent}
    near_chance = [t for t, r in tstr.items() if abs(r.estimate - 0.5) < 0.1]
    assert len(near_chance) >= len(dependent) / 2
    assert all(r.estimate < trtr[t] for t, r in tstr.items())
    assert results.loc[("marginals", names.UTILITY_RATIO), "ci_high"] < results.loc[("holdout", names.UTILITY_RATIO),
                                                                                   "ci_low"]


def test_every_phenotype_row_has_a_bootstrap_interval(results):
    rows = results.reset_index()
    per_task = rows[rows.metric.map(lambda m: names.split_task_metric(m)[0] in names.UTILITY_PHENOTYPE_STATS)]
    assert len(per_task) == 3 * len(PHENOTYPES) * 3
    assert np.isfinite(per_task[["ci_low", "ci_high"]].to_numpy()).all()
    assert (per_task.ci_low <= per_task.ci_high).all()


def test_flat_generators_get_phenotype_tasks_only_and_say_so():
    train, holdout = split(simulate(1500, seed=2), n_holdout=300, seed=0)
    syn = models.get("marginals").fit(train).generate(300, seed=0)
    flat = Cohort.from_events(syn.events.assign(visit_id=0).drop_duplicates(["subject_id", "code"]))
    context = EvaluationContext.build(train, holdout, {"flat": flat, "sequential": syn})
    flat_rows = utility_from_context(context, "flat", n_bootstrap=20).set_index("metric")
    next_visit = flat_rows.loc[[names.task_metric(s, names.NEXT_VISIT) for s in names.NEXT_VISIT_STATS]]
    assert next_visit.estimate.isna().all() and next_visit.note.str.contains("flat generator").all()
    assert np.isfinite(flat_rows.loc[names.UTILITY_RATIO, "estimate"])
    seq_rows = utility_from_context(context, "sequential", n_bootstrap=20).set_index("metric")
    assert np.isfinite(seq_rows.loc[names.task_metric("tstr_recall_at_k", names.NEXT_VISIT), "estimate"])


def test_a_phenotype_with_too_few_holdout_patients_is_skipped_with_the_reason():
    train, holdout = split(simulate(400, seed=2), n_holdout=40, seed=0)
    context = EvaluationContext.build(train, holdout, {"m": models.get("marginals").fit(train).generate(50, seed=0)})
    rows = utility_from_context(context, "m", n_bootstrap=20).set_index("metric")
    skipped = rows[rows.note.str.startswith("skipped")]
    assert len(skipped) and skipped.estimate.isna().all()


def test_the_phenotypes_own_codes_are_not_features():
    # diabetic patients carry two diabetes codes and nothing else that differs: with every 250* code
    # removed from the features, no classifier can find them (AUROC ~ 0.5); with one left, it would (~1)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(1200):
        codes = {f"C{j:02d}" for j in rng.choice(30, 3, replace=False)}
        if i % 3 == 0:
            codes |= {"25000", "25002"}
        rows += [(f"P{i:04d}", 0, c) for c in codes]
    cohort = Cohort.from_events(pd.DataFrame(rows, columns=["subject_id", "visit_id", "code"]))
    train = cohort.subset(cohort.subject_ids[:800])
    holdout = cohort.subset(cohort.subject_ids[800:])
    context = EvaluationContext.build(train, holdout, {"copy": train}, allow_overlap=True)
    rows = utility_from_context(context, "copy", n_bootstrap=50).set_index("metric")
    assert abs(rows.loc[names.task_metric(names.TRTR_AUROC, "diabetes"), "estimate"] - 0.5) < 0.1
