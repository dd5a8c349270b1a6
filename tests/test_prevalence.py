"""Patient-level prevalence and the paper's R², Pearson r and RMSE (section 3.1)."""
import numpy as np
import pytest

from ehrlib.cohort import Cohort, CohortError
from ehrlib.data import Vocabulary
from ehrlib.metrics.prevalence import (
    pearson,
    prevalence_metrics,
    prevalence_scores,
    prevalence_vector,
    r2,
    rmse,
)

# 4 real patients, 2 synthetic ones; codes A..D.
REAL = Cohort.from_visits([[["A", "B"], ["A"]], [["A"]], [["B", "C"]], [["A"]]], source="real")
SYNTHETIC = Cohort.from_visits([[["A", "D"]], [["B"], ["B"]]], source="synthetic")
VOCAB = Vocabulary(["A", "B", "C", "D"])
REAL_PREVALENCE = np.array([3, 2, 1, 0]) / 4
SYNTHETIC_PREVALENCE = np.array([1, 1, 0, 1]) / 2


def test_prevalence_counts_patients_not_visits_or_events():
    np.testing.assert_array_equal(prevalence_vector(REAL, VOCAB), REAL_PREVALENCE)


def test_codes_missing_from_a_cohort_have_prevalence_zero():
    np.testing.assert_array_equal(prevalence_vector(SYNTHETIC, VOCAB), SYNTHETIC_PREVALENCE)


def test_metrics_match_hand_computed_values_on_the_union_vocabulary():
    m = prevalence_metrics(REAL, SYNTHETIC)
    diff = REAL_PREVALENCE - SYNTHETIC_PREVALENCE
    ss_tot = np.sum((REAL_PREVALENCE - REAL_PREVALENCE.mean()) ** 2)
    assert m["prevalence_r2"] == pytest.approx(1 - np.sum(diff**2) / ss_tot)
    assert m["prevalence_pearson"] == pytest.approx(np.corrcoef(REAL_PREVALENCE, SYNTHETIC_PREVALENCE)[0, 1])
    assert m["prevalence_rmse"] == pytest.approx(np.sqrt(np.mean(diff**2)))
    assert all(isinstance(v, float) for v in m.values())


def test_r2_takes_real_as_the_truth():
    real, synthetic = np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.3, 0.4])
    assert r2(real, synthetic) == pytest.approx(1 - 0.3 / 0.32)
    assert r2(synthetic, real) != pytest.approx(r2(real, synthetic))


def test_identical_cohorts_score_perfectly():
    m = prevalence_metrics(REAL, REAL)
    assert m == pytest.approx({"prevalence_r2": 1.0, "prevalence_pearson": 1.0, "prevalence_rmse": 0.0})


def test_disjoint_vocabularies_are_scored_over_their_union():
    other = Cohort.from_visits([[["X"]], [["Y", "X"]]])
    m = prevalence_metrics(REAL, other)
    assert m["prevalence_pearson"] < 0
    assert m["prevalence_r2"] < 0
    union = Vocabulary.from_cohorts(REAL, other)
    assert m["prevalence_rmse"] == pytest.approx(
        rmse(prevalence_vector(REAL, union), prevalence_vector(other, union))
    )


def test_empty_synthetic_cohort_raises_cohort_error():
    empty = Cohort.from_visits([], source="empty.csv")
    with pytest.raises(CohortError, match="synthetic cohort.*no patients"):
        prevalence_metrics(REAL, empty)


def test_vocabulary_missing_a_code_raises_cohort_error():
    with pytest.raises(CohortError, match="not in the vocabulary"):
        prevalence_metrics(REAL, SYNTHETIC, vocab=Vocabulary(["A", "B", "C"]))


def test_undefined_r2_and_pearson_are_nan():
    flat = np.array([0.5, 0.5, 0.5])
    assert np.isnan(r2(flat, np.array([0.1, 0.2, 0.3])))
    assert np.isnan(pearson(np.array([0.1, 0.2, 0.3]), flat))
    assert rmse(flat, flat) == 0.0


def test_scores_of_prevalence_matrices_equal_scores_of_each_row():
    rng = np.random.default_rng(0)
    real, synthetic = rng.random((5, 20)), rng.random((5, 20))
    batch = prevalence_scores(real, synthetic)
    for name, values in batch.items():
        assert values.shape == (5,)
        rows = [prevalence_scores(real[b], synthetic[b])[name] for b in range(5)]
        np.testing.assert_allclose(values, rows, rtol=1e-12)


def test_a_real_vector_broadcasts_against_synthetic_replicates():
    rng = np.random.default_rng(1)
    real, synthetic = rng.random(20), rng.random((4, 20))
    for name, values in prevalence_scores(real, synthetic).items():
        expected = prevalence_scores(np.tile(real, (4, 1)), synthetic)[name]
        np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_arrays_with_different_code_axes_are_rejected():
    with pytest.raises(ValueError, match="last \\(code\\) axis"):
        rmse(np.zeros(3), np.zeros(4))
