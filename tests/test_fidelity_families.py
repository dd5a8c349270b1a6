"""Fidelity beyond marginals: the calibration rows land where they must in every new family."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr, wasserstein_distance

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.data import simulate, split
from ehrlib.data.encode import Vocabulary
from ehrlib.errors import MetricError
from ehrlib.metrics import names
from ehrlib.metrics.context import EvaluationContext
from ehrlib.metrics.evaluate import _families, evaluate_context
from ehrlib.metrics.prevalence import spearman
from ehrlib.metrics.temporal import _w1_from_histograms, encoding_artifact, nested_visit_share
from ehrlib.metrics.utility import baseline_recalls

B = 100


def _nested(cohort: Cohort) -> Cohort:
    """Each multi-code record rewritten as count mode writes it: visit t holds the codes counted more than t times."""
    records = []
    for rec in cohort.records():
        codes = sorted({c for v in rec for c in v})
        records.append([codes, codes[: max(1, len(codes) // 2)], codes[:1]] if len(codes) > 1 else [codes])
    return Cohort.from_visits(records)


@pytest.fixture(scope="module")
def ctx():
    data = simulate(4000, seed=11)
    train, holdout = split(data, n_holdout=800, seed=0)
    train, reference = split(train, n_holdout=800, seed=1)
    synthetic = {"holdout": models.get("holdout", records=reference).fit(train).generate(800, seed=0),
                 "marginals": models.get("marginals").fit(train).generate(800, seed=0),
                 "memorizer": models.get("memorizer").fit(train).generate(800, seed=0),
                 "real_with_demographics": reference}
    synthetic["count_mode"] = _nested(synthetic["memorizer"])
    synthetic["flat"] = Cohort.from_visits([[sorted({c for v in r for c in v})] for r in synthetic["marginals"].records()])
    return EvaluationContext.build(train, holdout, synthetic)


@pytest.fixture(scope="module")
def results(ctx):
    out = evaluate_context(ctx, list(names.FIDELITY_FAMILIES) + [names.UTILITY], n_bootstrap=B, progress=False)
    return out.set_index(["model", "metric"])


def _est(results, model, metric):
    return results.loc[(model, metric), "estimate"]


# ---------------------------------------------------------------------------- the family set
def test_fidelity_families_are_asked_for_by_name_and_not_in_the_default_set():
    assert _families(None, ("rf",)) == list(names.FAMILIES)
    assert _families([names.TEMPORAL, names.SAMPLE_FIDELITY], ()) == [names.TEMPORAL, names.SAMPLE_FIDELITY]
    with pytest.raises(MetricError, match="unknown metric family"):
        _families(["temporl"], ())


def test_every_row_is_in_the_tidy_form(results):
    assert {"family", "estimate", "ci_low", "ci_high", "spread", "note"} <= set(results.columns)
    assert set(results["family"]) == {*names.FIDELITY_FAMILIES, names.UTILITY}
    assert results["note"].str.len().gt(0).all()


# ---------------------------------------------------------------------------- next visit
def test_repeat_last_and_most_frequent_baselines_on_a_constructed_cohort():
    a, b, c, d, e, f, g, h, x, z = "4019", "25000", "4280", "5849", "0389", "5859", "41401", "42731", "2724", "V3000"
    cohort = Cohort.from_visits([[[a, b], [a, c]],  # repeat-last: a, b, then d, e, f: hits a of {a, c}: 1/2
                                 [[d], [x], [d, e]],  # the visit before the last has no target: d..h, hits 2/2
                                 [[a, b, c]],  # one visit: not in the task
                                 [[a], [z]]],  # no target code in the last visit: not in the task
                                subject_ids=["p1", "p2", "p3", "p4"])
    vocab = Vocabulary([a, b, c, d, e, f, g, h, x, z])
    targets = vocab.index([d, e, f, g, h, a, b, c])  # in train's last-visit frequency order
    (rep, rep_b), (freq, freq_b) = baseline_recalls(cohort, vocab, targets, np.ones((1, 2)))
    assert rep == pytest.approx((0.5 + 1.0) / 2)
    assert freq == pytest.approx((0.0 + 1.0) / 2)  # d..h for everyone: none of {a, c}, both of {d, e}
    assert rep_b[0] == pytest.approx(rep) and freq_b[0] == pytest.approx(freq)


def test_next_visit_headroom_and_baselines_are_rows_of_every_sequential_generator(results):
    nv = lambda s: names.task_metric(s, names.NEXT_VISIT)  # noqa: E731
    for model in ("holdout", "marginals", "memorizer"):
        rep, trtr = _est(results, model, nv("repeat_last_recall_at_k")), _est(results, model, nv("trtr_recall_at_k"))
        assert _est(results, model, nv("headroom_recall_at_k")) == pytest.approx(trtr - rep)
        assert 0 <= _est(results, model, nv("frequent_recall_at_k")) < rep
    # the marginals lose to repeating the last visit; the memorizer does not
    assert results.loc[("marginals", nv("tstr_minus_repeat_last")), "ci_high"] < 0
    assert results.loc[("memorizer", nv("tstr_minus_repeat_last")), "ci_high"] > 0


def test_count_mode_visits_are_marked_and_left_out_of_the_sequential_comparison(ctx, results):
    share, m = nested_visit_share(ctx.synthetic["count_mode"])
    assert share == 1.0 and m > 20
    assert nested_visit_share(ctx.train)[0] < 0.5 and not encoding_artifact(ctx.train)
    row = results.loc[("count_mode", names.task_metric("tstr_recall_at_k", names.NEXT_VISIT))]
    assert np.isnan(row.estimate) and "encoding artifact" in row.note and "left out" in row.note
    for stat in names.TEMPORAL_STATS:
        r = results.loc[("count_mode", stat)]
        assert np.isnan(r.estimate) and "encoding artifact" in r.note
    assert not np.isnan(_est(results, "memorizer", names.TRANSITION_RMSE))


# ---------------------------------------------------------------------------- temporal
def test_holdout_matches_real_transitions_and_marginals_do_not(results):
    for stat in (names.TRANSITION_RMSE, names.PERSISTENCE_RMSE):
        assert _est(results, "holdout", stat) < 0.6 * _est(results, "marginals", stat)
    assert _est(results, "holdout", names.TRANSITION_PEARSON) > _est(results, "marginals", names.TRANSITION_PEARSON) + 0.3
    gap = results.loc[("holdout", names.PERSISTENCE_GAP)]
    assert gap.ci_low <= 0 <= gap.ci_high  # a real sample persists codes as train does
    assert results.loc[("marginals", names.PERSISTENCE_GAP), "ci_high"] < 0  # independent visits repeat less


def test_flat_generators_get_no_transitions_but_distributions(results):
    assert np.isnan(_est(results, "flat", names.TRANSITION_RMSE))
    assert "flat generator" in results.loc[("flat", names.TRANSITION_RMSE), "note"]
    vpp = names.task_metric(names.WASSERSTEIN, "visits_per_patient")
    assert _est(results, "flat", vpp) > 3 * _est(results, "holdout", vpp)


def test_wasserstein_from_histograms_equals_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 9, 300), rng.poisson(3, 200)
    ha, hb = np.bincount(a), np.bincount(b)
    assert _w1_from_histograms(ha[None], hb[None])[0] == pytest.approx(wasserstein_distance(a, b))


# ---------------------------------------------------------------------------- sample level
def test_memorizer_is_not_authentic_and_real_data_is(results):
    assert _est(results, "memorizer", names.AUTHENTICITY) < 0.02
    assert _est(results, "holdout", names.AUTHENTICITY) > 0.3
    assert results.loc[("holdout", names.AUTHENTICITY), "spread"] > 0


def test_marginals_have_lower_precision_and_recall_than_real_data(results):
    for stat in (names.ALPHA_PRECISION, names.BETA_RECALL):
        assert _est(results, "marginals", stat) < _est(results, "holdout", stat) - 0.1
    assert _est(results, "holdout", names.ALPHA_PRECISION) > 0.9
    assert abs(_est(results, "holdout", names.ALPHA_PRECISION_HIGH) - 0.9) < 0.05


# ---------------------------------------------------------------------------- prevalence rank
def test_counting_ranks_give_scipys_spearman():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 6, (4, 80)), rng.integers(0, 9, (4, 80))
    got = spearman(a / 50, b / 70, 50, 70)
    assert got == pytest.approx([spearmanr(a[i], b[i]).statistic for i in range(4)])
    assert spearman(a[0] / 50, b[0] / 70) == pytest.approx(got[0])


def test_prevalence_rank_rows_have_intervals_per_bucket(results):
    for bucket in ("common", "middle", "rare"):
        r = results.loc[("holdout", names.task_metric(names.PREVALENCE_SPEARMAN, bucket))]
        assert -1 <= r.ci_low <= r.ci_high <= 1
    assert _est(results, "holdout", names.task_metric(names.PREVALENCE_PEARSON, "common")) > 0.9
    # rare codes: a real sample of the same size agrees far less than on common ones
    assert _est(results, "holdout", names.task_metric(names.PREVALENCE_SPEARMAN, "rare")) < \
        _est(results, "holdout", names.task_metric(names.PREVALENCE_SPEARMAN, "common"))


# ---------------------------------------------------------------------------- plausibility
def test_a_record_beyond_real_data_is_counted(ctx):
    from ehrlib.metrics.plausibility import SEX_SPECIFIC

    codes = [c for c in sorted(ctx.vocab.codes) if not any(c.startswith(s.prefixes) for s in SEX_SPECIFIC.values())]
    absurd = [codes[:325]] + [[codes[0]]] * 60  # one visit of 325 codes, then 60 repeats of one code
    male_pregnancy = [["64891", "4019"]]
    cohort = Cohort.from_visits([absurd, male_pregnancy] + [[["4019"]]] * 98)
    demo = pd.DataFrame({"subject_id": cohort.subject_ids, "age": 50.0, "sex": "M"})
    cohort = Cohort.from_events(cohort.events, demo)
    c = EvaluationContext(ctx.train, ctx.holdout, {"odd": cohort})
    out = evaluate_context(c, [names.PLAUSIBILITY], progress=False).set_index("metric")
    for kind in ("visits", "codes_per_visit", "code_repeats"):
        assert out.loc[names.task_metric(names.IMPLAUSIBLE_SHARE, kind), "estimate"] == pytest.approx(0.01)
    assert out.loc[names.task_metric(names.IMPLAUSIBLE_SHARE, "sex_specific_code"), "estimate"] == pytest.approx(0.01)
    total = out.loc[names.IMPLAUSIBLE_SHARE]
    assert total.estimate == pytest.approx(0.02) and total.ci_low < 0.02 < total.ci_high


def test_real_data_is_rarely_implausible(results):
    assert results.loc[("holdout", names.IMPLAUSIBLE_SHARE), "ci_low"] < 0.01
    assert np.isnan(_est(results, "holdout", names.task_metric(names.IMPLAUSIBLE_SHARE, "sex_specific_code")))


# ---------------------------------------------------------------------------- subgroups
def test_subgroups_are_judged_only_with_demographics_and_real_data_meets_its_ceiling(results):
    assert _est(results, "marginals", names.SUBGROUP_JUDGED) == 0
    assert "no demographics" in results.loc[("marginals", names.SUBGROUP_JUDGED), "note"]
    assert _est(results, "real_with_demographics", names.SUBGROUP_JUDGED) >= 4
    for group in ("sex=F", "sex=M"):
        ours = results.loc[("real_with_demographics", names.task_metric("subgroup_r2", group))]
        ceiling = results.loc[("real_with_demographics", names.task_metric("subgroup_holdout_r2", group))]
        assert ours.ci_low <= ceiling.ci_high and ceiling.ci_low <= ours.ci_high  # real data: not below its ceiling


# ---------------------------------------------------------------------------- ehrbench evaluate
def test_cli_computes_the_named_fidelity_families(tmp_path, small_cohort):
    from ehrlib.cli import main

    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(80, seed=0)
    paths = {}
    for name, c in {"train": train, "holdout": holdout, "mymodel": syn}.items():
        paths[name] = tmp_path / f"{name}.csv"
        c.events.to_csv(paths[name], index=False)
    assert main(["evaluate", "--train", str(paths["train"]), "--holdout", str(paths["holdout"]), "--synthetic",
                 str(paths["mymodel"]), "--out", str(tmp_path / "out"), "--n-bootstrap", "20",
                 "--families", names.TEMPORAL, names.PLAUSIBILITY]) == 0
    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert set(metrics.family) == {names.TEMPORAL, names.PLAUSIBILITY}
    assert {names.TRANSITION_RMSE, names.IMPLAUSIBLE_SHARE} <= set(metrics.metric)


def test_the_page_figures_draw_from_the_family_rows(ctx, results):
    import matplotlib.pyplot as plt

    from ehrlib import book, plots
    from ehrlib.metrics.sample_level import precision_recall_curves

    rows = results.reset_index()
    fig = plots.fig_metric_bars(rows[rows.family == names.TEMPORAL], [names.TRANSITION_RMSE, names.PERSISTENCE_GAP],
                                "t")
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    curves = precision_recall_curves(ctx, ["holdout", "memorizer"])
    assert set(curves.model) == {"holdout", "memorizer"} and curves.alpha.is_monotonic_increasing is False
    fig2 = plots.fig_alpha_precision(curves)
    assert len(fig2.axes) == 2
    plt.close(fig), plt.close(fig2)
    for artifact in ("table_next_visit", "table_temporal", "fig_temporal", "table_sample_fidelity",
                     "fig_alpha_precision", "table_prevalence_rank", "table_plausibility", "table_subgroups"):
        assert book.caption(artifact)


def test_an_empty_prevalence_bucket_is_skipped_with_the_reason(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)  # 300 train patients: no code below 0.1 %
    c = EvaluationContext.build(train, holdout, {"m": models.get("marginals").fit(train).generate(100, seed=0)})
    out = evaluate_context(c, [names.PREVALENCE_RANK], n_bootstrap=20, progress=False).set_index("metric")
    rare = out.loc[names.task_metric(names.PREVALENCE_SPEARMAN, "rare")]
    assert np.isnan(rare.estimate) and "skipped: 0 train codes" in rare.note
    assert np.isfinite(out.loc[names.PREVALENCE_SPEARMAN, "estimate"])
