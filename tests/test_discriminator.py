"""Real-vs-synthetic discriminators (paper 3.1, appendix E) on a balanced, stratified split."""
import numpy as np
import pandas as pd
import pytest

from ehrlib.cohort import Cohort, CohortError
from ehrlib.data import simulate, split
from ehrlib.metrics.discriminator import (
    DISCRIMINATOR_METRICS,
    LSTMConfig,
    RandomForestConfig,
    balanced_split,
    discriminator_metrics,
    discriminator_scores,
)

FAST_LSTM = LSTMConfig(hidden_size=32, epochs=8, batch_size=32)


def random_cohort(n_patients: int, seed: int, *, visits: int = 1, reverse: bool = False,
                  n_codes: int = 60, prefix: str = "P") -> Cohort:
    """Patients with 3-8 distinct Zipf-weighted codes spread over ``visits`` visits.

    ``reverse`` flips code popularity (the rarest code becomes the most common).
    """
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_codes + 1)
    p = (p[::-1] if reverse else p) / p.sum()
    records = []
    for _ in range(n_patients):
        codes = [f"C{c:03d}" for c in rng.choice(n_codes, size=rng.integers(3, 9), replace=False, p=p)]
        records.append([list(v) for v in np.array_split(codes, visits)])
    return Cohort.from_visits(records, subject_ids=[f"{prefix}{i}" for i in range(n_patients)])


@pytest.fixture(scope="module")
def halves():
    """Two disjoint halves of one simulated cohort: the same distribution."""
    return split(simulate(1000, seed=3), n_holdout=500, seed=0)


# ------------------------------------------------------------------ the split
def test_balanced_split_subsamples_both_classes_to_the_smaller_size():
    parts = balanced_split(100, 1000, test_size=0.3, seed=0)
    assert [len(p) for p in parts] == [70, 30, 70, 30]
    for train, test, n in ((parts.real_train, parts.real_test, 100),
                           (parts.synthetic_train, parts.synthetic_test, 1000)):
        both = np.r_[train, test]
        assert len(np.unique(both)) == len(both)  # disjoint, no patient twice
        assert both.min() >= 0 and both.max() < n


def test_balanced_split_is_deterministic_given_the_seed():
    a, b, c = (balanced_split(50, 80, 0.3, seed) for seed in (1, 1, 2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_too_few_patients_to_split_raise_cohort_error():
    with pytest.raises(CohortError, match="both sides of the split"):
        balanced_split(1, 500, test_size=0.3)


# ------------------------------------------------------------------ the scores
def test_scores_follow_the_paper_and_count_a_coin_flip_as_half_right():
    scores = discriminator_scores([1, 1, 0, 0], [0.9, 0.5, 0.2, 0.6])
    assert scores == pytest.approx(
        {"disc_accuracy": 0.625, "disc_score": 0.75, "disc_auc": 0.75, "disc_auc_score": 0.5}
    )


def test_auc_below_one_half_scores_as_indistinguishable():
    assert discriminator_scores([1, 0], [0.2, 0.8])["disc_auc_score"] == 1.0


# ------------------------------------------------------------------ the classifiers
@pytest.mark.parametrize("kind", ["rf", "lstm"])
def test_same_distribution_is_indistinguishable(halves, kind):
    real, synthetic = halves
    # 100 test patients per class: one split's AUC has a standard error of ~0.04, so average three
    runs = [discriminator_metrics(real, synthetic, kind=kind, seed=s, lstm=FAST_LSTM) for s in range(3)]
    assert all(set(m) == set(DISCRIMINATOR_METRICS) for m in runs)
    assert abs(np.mean([m["disc_auc"] for m in runs]) - 0.5) < 0.07
    assert abs(np.mean([m["disc_accuracy"] for m in runs]) - 0.5) < 0.07


@pytest.mark.parametrize("kind", ["rf", "lstm"])
def test_shifted_code_frequencies_are_detected(kind):
    real = random_cohort(400, seed=0)
    synthetic = random_cohort(400, seed=1, reverse=True, prefix="S")
    m = discriminator_metrics(real, synthetic, kind=kind, seed=0, lstm=FAST_LSTM)
    assert m["disc_auc"] > 0.8
    assert m["disc_score"] < 0.5


@pytest.mark.parametrize("kind", ["rf", "lstm"])
def test_the_same_codes_in_more_visits_are_detected(kind):
    real = random_cohort(400, seed=0, visits=1)
    synthetic = random_cohort(400, seed=1, visits=3, prefix="S")
    m = discriminator_metrics(real, synthetic, kind=kind, seed=0, lstm=FAST_LSTM)
    assert m["disc_auc"] > 0.8


def test_rf_on_the_papers_features_cannot_see_visit_structure():
    real = random_cohort(400, seed=0, visits=1)
    synthetic = random_cohort(400, seed=1, visits=3, prefix="S")
    m = discriminator_metrics(real, synthetic, kind="rf", rf=RandomForestConfig(include_n_visits=False))
    assert abs(m["disc_auc"] - 0.5) < 0.1


def test_unequal_cohort_sizes_give_chance_level_for_one_distribution(halves):
    real, synthetic = halves
    small = real.subset(real.subject_ids[:150])
    m = discriminator_metrics(small, synthetic, kind="rf", seed=0)
    assert abs(m["disc_accuracy"] - 0.5) < 0.12


@pytest.mark.parametrize("kind", ["rf", "lstm"])
def test_results_are_deterministic_given_the_seed(kind):
    real = random_cohort(150, seed=0)
    synthetic = random_cohort(150, seed=1, reverse=True, prefix="S")
    runs = [discriminator_metrics(real, synthetic, kind=kind, seed=s, lstm=FAST_LSTM) for s in (5, 5, 6)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_empty_synthetic_cohort_raises_cohort_error():
    with pytest.raises(CohortError, match="synthetic cohort.*no patients"):
        discriminator_metrics(random_cohort(20, seed=0), Cohort.from_visits([]))


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="kind='svm'"):
        discriminator_metrics(random_cohort(20, seed=0), random_cohort(20, seed=1), kind="svm")


# ------------------------------------------------------------------ protocols and intervals
from ehrlib.errors import ConfigError  # noqa: E402
from ehrlib.metrics import names  # noqa: E402
from ehrlib.metrics.discriminator import (  # noqa: E402
    PAPER_LSTM,
    discriminator_family,
    paper_split,
    prediction_intervals,
)


def test_paper_split_keeps_every_patient_and_the_class_imbalance():
    parts = paper_split(800, 200, test_size=0.2, seed=0)
    assert len(parts.real_train) + len(parts.real_test) == 800
    assert len(parts.synthetic_train) + len(parts.synthetic_test) == 200
    assert len(parts.real_test) + len(parts.synthetic_test) == 200
    assert 0.7 < len(parts.real_test) / 200 < 0.9  # unstratified: about the 80% real share


def test_bootstrap_interval_over_predictions_covers_the_estimate_and_shrinks_with_more_patients():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        y = np.r_[np.ones(n), np.zeros(n)].astype(int)
        p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 2 * n), 0, 1)
        stats = prediction_intervals(y, p, n_bootstrap=300, seed=0)
        for est, low, high in stats.values():
            assert low <= est <= high
        assert stats["auc"][0] == pytest.approx(discriminator_scores(y, p)["disc_auc"])
        widths.append(stats["auc"][2] - stats["auc"][1])
    assert widths[1] < widths[0] / 2


def test_family_rows_are_named_by_kind_and_say_which_real_class_was_used(halves):
    train, synthetic = halves
    out = discriminator_family(train, None, synthetic, ("rf",), n_bootstrap=50)
    assert list(out.metric) == [names.disc_metric("rf", s) for s in names.DISCRIMINATOR_STATS]
    assert out.note.str.contains("real class: train \\(500 real vs 500 synthetic").all()
    with pytest.raises(CohortError, match="needs the holdout cohort"):
        discriminator_family(train, None, synthetic, ("rf",), real="holdout")
    with pytest.raises(ConfigError, match="protocol"):
        discriminator_family(train, None, synthetic, ("rf",), protocol="strict")


def test_paper_lstm_settings_follow_the_papers_notebook():
    assert (PAPER_LSTM.hidden_size, PAPER_LSTM.epochs, PAPER_LSTM.batch_size) == (32, 5, 32)


def test_paper_longtail_lstm_is_the_paper_lstm_with_hidden_size_16():
    from ehrlib.metrics.discriminator import PAPER_LONGTAIL_LSTM

    assert PAPER_LONGTAIL_LSTM.hidden_size == 16
    assert (PAPER_LONGTAIL_LSTM.epochs, PAPER_LONGTAIL_LSTM.batch_size) == (PAPER_LSTM.epochs, PAPER_LSTM.batch_size)


# ------------------------------------------------------------------ threads and shared encoding
def test_forest_results_do_not_depend_on_the_number_of_threads(halves):
    train, synthetic = halves
    one, two = (discriminator_family(train, None, synthetic, ("rf",), n_bootstrap=50, seed=1,
                                     rf=RandomForestConfig(n_estimators=20, n_jobs=n)) for n in (1, 2))
    np.testing.assert_array_equal(one[["estimate", "ci_low", "ci_high"]].to_numpy(),
                                  two[["estimate", "ci_low", "ci_high"]].to_numpy())


def test_forest_threads_come_from_the_config_else_from_omp_num_threads_else_every_core(monkeypatch):
    from ehrlib import threads
    from ehrlib.metrics.discriminator import rf_threads

    assert rf_threads(RandomForestConfig(n_jobs=3)) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert rf_threads(RandomForestConfig()) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert rf_threads(RandomForestConfig()) == threads.available_cpus()
    assert threads.pool_threads(cpus=4, environ={}) == 4
    assert threads.pool_threads(cpus=4, environ={"OMP_NUM_THREADS": "3"}) == 3
    assert threads.pool_threads(cpus=4, environ={"OMP_NUM_THREADS": "auto"}) == 4


def test_a_context_passed_in_gives_the_same_rows_as_one_built_here(halves):
    from ehrlib.data import split
    from ehrlib.metrics.context import EvaluationContext

    train, synthetic = halves
    train, holdout = split(train, n_holdout=max(2, train.n_patients // 5), seed=0)
    kw = dict(n_bootstrap=50, rf=RandomForestConfig(n_estimators=10, n_jobs=1))
    context = EvaluationContext.build(train, holdout, {"s": synthetic}, allow_overlap=True)
    here = discriminator_family(train, None, synthetic, ("rf",), **kw)
    given = discriminator_family(train, holdout, synthetic, ("rf",), context=context, **kw)
    pd.testing.assert_frame_equal(here, given)
    assert context.builds.get(f"binary:{context.real_key('train')}") == 1
    with pytest.raises(ValueError, match="context does not hold"):
        discriminator_family(holdout, None, synthetic, ("rf",), context=context, **kw)


# ------------------------------------------------------------------ the forest on distinct records
def _copies_against_their_originals():
    """Training rows where every synthetic record is a copy of a real one (the forest's worst
    case: leaves of identical records with both labels), with the visit count as a feature."""
    import scipy.sparse as sp

    from ehrlib.data.encode import Vocabulary
    from ehrlib.metrics.discriminator import _flat_features

    real = simulate(400, seed=5)
    copies = real.subset(real.subject_ids[:300])
    vocab = Vocabulary.from_cohorts(real, copies)
    x_real, x_copy = _flat_features(real, vocab, True), _flat_features(copies, vocab, True)
    x = sp.vstack([x_real, x_copy], format="csr")
    y = np.r_[np.ones(x_real.shape[0], int), np.zeros(x_copy.shape[0], int)]
    return x, y


@pytest.mark.parametrize("deduplicate", [True, False])
def test_forest_on_distinct_records_is_scikit_learns_forest_split_for_split(deduplicate):
    from sklearn.ensemble import RandomForestClassifier

    from ehrlib.metrics.discriminator import fit_forest, forest_proba

    x, y = _copies_against_their_originals()
    config = RandomForestConfig(n_estimators=12, n_jobs=2)
    ours = fit_forest(x, y, config, seed=7, deduplicate=deduplicate)
    theirs = RandomForestClassifier(n_estimators=12, max_features="sqrt", random_state=7, n_jobs=1).fit(x, y)
    for a, b in zip(ours, theirs.estimators_):
        assert a.tree_.node_count == b.tree_.node_count
        np.testing.assert_array_equal(a.tree_.feature, b.tree_.feature)
        np.testing.assert_array_equal(a.tree_.threshold, b.tree_.threshold)
    np.testing.assert_array_equal(forest_proba(ours, x), theirs.predict_proba(x)[:, 1])


def test_merging_records_is_refused_where_it_would_change_the_forest():
    from ehrlib.metrics.discriminator import fit_forest

    x, y = _copies_against_their_originals()
    with pytest.raises(ValueError, match="min_samples_leaf=2"):
        fit_forest(x, y, RandomForestConfig(n_estimators=2, min_samples_leaf=2), seed=0, deduplicate=True)
