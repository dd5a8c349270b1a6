"""Privacy metrics (paper 3.2): NNAAR, membership inference, exact copies, DCR.

The tiny cohorts have one visit per patient, so a distance is the size of a symmetric
difference and every expected value below can be checked by hand.
"""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ehrlib.cohort import Cohort, CohortError
from ehrlib.data import simulate, split
from ehrlib.metrics.privacy import (
    PRIVACY_METRICS,
    attack_metrics,
    dcr,
    exact_copy_rate,
    membership_inference,
    nnaar,
    paper_attack_metrics,
    privacy_metrics,
)
from ehrlib.errors import ConfigError
from ehrlib.metrics import names


def one_visit(*code_sets: str) -> Cohort:
    """``one_visit("ab", "c")``: two patients with one visit each, codes a, b and c."""
    return Cohort.from_visits([[list(codes)] for codes in code_sets])


# --------------------------------------------------------------------------- NNAAR
# T = {a}, {a,b}    E = {c}, {c,d}    S = {a}, {x}    (n = 2: every record is used)
# d_TT = 1, 1; d_TS = 0, 1 -> 1(TS > TT) = 0, tie -> 0.25.  d_SS = 2, 2; d_ST = 0, 2 -> 0.25.
# AA_TS = (0.25 + 0.25) / 2 = 0.25.
# d_EE = 1, 1; d_ES = 2, 3 -> 1.  d_SE = 2, 2 vs d_SS = 2, 2 -> ties -> 0.5.  AA_ES = 0.75.
T_HAND, E_HAND, S_HAND = one_visit("a", "ab"), one_visit("c", "cd"), one_visit("a", "x")


def test_nnaar_counts_ties_as_one_half():
    result = nnaar(T_HAND, E_HAND, S_HAND, repeats=1)
    assert result["aa_ts"] == 0.25
    assert result["aa_es"] == 0.75
    assert result["nnaar"] == 0.5
    assert result["n"] == 2


def test_nnaar_excludes_self_by_index_so_twins_are_at_distance_zero():
    # T holds a record twice: d_TT = 0 for both twins (not the next-nearest record).
    # d_TS = 0, 0 (S has {a}) -> ties 0.5, 0.5; d_SS = 2, 2, d_ST = 0, 2 -> 0, 0.5; AA_TS = 0.375.
    result = nnaar(one_visit("a", "a"), E_HAND, S_HAND, repeats=1)
    assert result["aa_ts"] == 0.375


def test_nnaar_repeats_give_a_spread_and_per_repeat_values():
    c = simulate(300, seed=3)
    train, rest = split(c, 200, seed=0)
    holdout, synthetic = split(rest, 100, seed=0)
    result = nnaar(train, holdout, synthetic, n=50, repeats=4, seed=7)
    assert result["n"] == 50 and result["repeats"] == 4
    assert len(result["nnaar_values"]) == 4
    assert result["nnaar"] == pytest.approx(result["nnaar_values"].mean())
    assert result["nnaar_std"] == pytest.approx(result["nnaar_values"].std(ddof=1))
    np.testing.assert_allclose(result["nnaar_values"], result["aa_es_values"] - result["aa_ts_values"])
    again = nnaar(train, holdout, synthetic, n=50, repeats=4, seed=7)
    np.testing.assert_array_equal(again["nnaar_values"], result["nnaar_values"])


def test_nnaar_sample_size_defaults_to_the_smallest_cohort():
    result = nnaar(one_visit("a", "ab", "b", "c"), E_HAND, one_visit("a", "x", "y"), repeats=2)
    assert result["n"] == 2


def test_nnaar_rejects_n_larger_than_a_cohort():
    with pytest.raises(CohortError, match="n=3"):
        nnaar(T_HAND, E_HAND, S_HAND, n=3)


# --------------------------------------------------------------------------- membership inference
def test_attack_breaks_ties_at_the_median_fractionally():
    # scores 0 1 1 | 1 1 2 3 3: the 4th smallest is 1; 1 record below, 4 at 1 -> each 3/4 member.
    # members: 1 + .75 + .75 = 2.5 true positives; non-members .75 + .75 = 1.5 false positives.
    result = attack_metrics([0, 1, 1, 3], [1, 1, 2, 3])
    for name in ("accuracy", "precision", "recall", "f1"):
        assert result[name] == pytest.approx(0.625)
    # pairs member < non-member: 4 + 3 + 3 + 0.5 (ties count 1/2) of 16
    assert result["auc"] == pytest.approx(10.5 / 16)
    # ROC: (0, .25) after score 0, (.5, .75) after score 1 -> at FPR .01: .25 + .5 * .01 / .5
    assert result["tpr_at_1pct_fpr"] == pytest.approx(0.26)


def test_attack_auc_equals_sklearn_midranks():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.integers(0, 6, 40), rng.integers(1, 7, 50)
    labels = np.r_[np.ones(40), np.zeros(50)]
    expected = roc_auc_score(labels, -np.r_[members, nonmembers])
    assert attack_metrics(members, nonmembers)["auc"] == pytest.approx(expected)


def test_attack_predicts_exactly_half_as_members():
    # all scores tie: every record is a 1/2 member -> accuracy 0.5, AUC 0.5
    result = attack_metrics([2, 2, 2], [2, 2, 2])
    assert result["accuracy"] == 0.5 and result["auc"] == 0.5 and result["tpr_at_1pct_fpr"] == pytest.approx(0.01)


def test_membership_inference_scores_by_distance_to_the_nearest_synthetic_record():
    # S = {a,b}. members T: {a,b} {a,b,c} {c} -> 0 1 3; non-members E: {a} {b} {a,b,c,d} -> 1 1 2.
    # sorted 0 1 1 1 2 3: threshold 1, 1 below, 3 at -> 2/3 each; TP = 5/3, FP = 4/3.
    result = membership_inference(one_visit("ab", "abc", "c"), one_visit("a", "b", "abcd"), one_visit("ab"))
    assert result["accuracy"] == pytest.approx(5 / 9)
    assert result["precision"] == pytest.approx(5 / 9)
    assert result["auc"] == pytest.approx(5 / 9)  # 3 + 2 + 0 of 9 pairs
    assert result["tpr_at_1pct_fpr"] == pytest.approx(1 / 3 + 1 / 3 * 0.01 / (2 / 3))
    assert result["n"] == 3 and np.isnan(result["auc_std"])


def test_membership_inference_uses_equal_numbers_of_members_and_non_members():
    result = membership_inference(one_visit("ab", "abc", "c", "d", "e"), one_visit("a", "b"), one_visit("ab"),
                                  repeats=3, seed=1)
    assert result["n"] == 2 and len(result["auc_values"]) == 3


# --------------------------------------------------------------------------- copies and DCR
def test_exact_copy_rate_needs_the_same_codes_in_the_same_visits():
    train = Cohort.from_visits([[["a"], ["b"]], [["c"]]])
    synthetic = Cohort.from_visits([[["a"], ["b"]], [["b"], ["a"]], [["c"]], [["a", "b"]], [["z"]]])
    assert exact_copy_rate(train, synthetic) == pytest.approx(2 / 5)


def test_dcr_share_counts_ties_as_one_half():
    # T = {a} {b}; E = {c} {d}. S: {a} 0 vs 2 -> 1; {a,b} 1 vs 3 -> 1; {e} 2 vs 2 -> .5; {a,c} 1 vs 1 -> .5
    result = dcr(one_visit("a", "b"), one_visit("c", "d"), one_visit("a", "ab", "e", "ac"))
    assert result["dcr_share"] == 0.75
    assert result["median_dcr_train"] == 1.0  # 0 1 2 1
    assert result["median_dcr_holdout"] == 2.0  # 2 3 2 1


def test_dcr_subsamples_train_to_the_holdout_size():
    result = dcr(one_visit("a", "b", "c", "d", "e"), one_visit("x", "y"), one_visit("a"), repeats=5, seed=0)
    assert result["n"] == 2
    # {a} is closer to train exactly when the train sample holds {a} (2 of 5 records)
    assert set(result["dcr_share_values"]) <= {0.5, 1.0}


def test_subsamples_are_independent_of_a_generator_seeded_alike():
    # A memorizer that copied default_rng(0).choice(N, 20, replace=False): the attack, also
    # seeded 0, must not draw exactly those 20 records as its members.
    train = Cohort.from_visits([[[f"C{i}"]] for i in range(200)])
    copied = np.sort(np.random.default_rng(0).choice(200, 20, replace=False))
    synthetic = train.subset(train.subject_ids[copied]).renamed()
    holdout = Cohort.from_visits([[[f"H{i}"]] for i in range(20)])
    # copied members score 0, every other record 2: accuracy 1.0 if the members are the copies
    assert membership_inference(train, holdout, synthetic, seed=0)["accuracy"] < 0.7


# --------------------------------------------------------------------------- calibration generators
@pytest.fixture(scope="module")
def real():
    """train 400, holdout 400 and a disjoint real sample of 400 from one simulated population."""
    train, rest = split(simulate(1200, seed=11), 800, seed=0)
    holdout, independent = split(rest, 400, seed=0)
    return train, holdout, independent.renamed()


def table(frame):
    return dict(zip(frame["metric"], frame["estimate"]))


def test_a_copier_is_flagged_by_every_privacy_metric(real):
    train, holdout, _ = real
    result = table(privacy_metrics(train, holdout, train.renamed(), seed=0, repeats=5))
    assert result["exact_copy_rate"] == 1.0
    assert result["mia_auc"] > 0.6
    assert result["nnaar"] > 0.2
    assert result["dcr_share"] > 0.8


def test_an_independent_sample_looks_private(real):
    train, holdout, independent = real
    frame = privacy_metrics(train, holdout, independent, seed=0, repeats=10)
    result = table(frame)
    assert abs(result["nnaar"]) < 0.05
    assert abs(result["mia_auc"] - 0.5) < 0.06
    assert abs(result["dcr_share"] - 0.5) < 0.1  # one fixed synthetic set: noisier (0.45-0.56 over seeds)
    assert result["exact_copy_rate"] < 0.05


def test_privacy_metrics_rows_columns_and_intervals(real):
    train, holdout, independent = real
    frame = privacy_metrics(train, holdout, independent, seed=0, repeats=2)
    assert list(frame.columns) == ["metric", "estimate", "ci_low", "ci_high", "spread", "note"]
    assert tuple(frame["metric"]) == PRIVACY_METRICS
    assert frame["ci_low"].isna().all() and frame["ci_high"].isna().all()
    spread = dict(zip(frame["metric"], frame["spread"]))
    assert np.isnan(spread["exact_copy_rate"]) and spread["nnaar"] >= 0
    assert table(frame)["nnaar"] == pytest.approx(nnaar(train, holdout, independent, repeats=2, seed=0)["nnaar"])


# --------------------------------------------------------------------------- bad input
def test_an_empty_synthetic_cohort_is_a_cohort_error():
    empty = Cohort.from_visits([], source="model.parquet")
    with pytest.raises(CohortError, match="synthetic cohort \\(model.parquet\\) is empty"):
        privacy_metrics(T_HAND, E_HAND, empty)


def test_synthetic_codes_unseen_in_training_are_fine():
    result = table(privacy_metrics(T_HAND, E_HAND, one_visit("zz1", "zz2"), repeats=1))
    assert result["exact_copy_rate"] == 0.0


def test_a_one_record_cohort_cannot_give_nnaar():
    with pytest.raises(CohortError, match="holdout cohort has 1 record"):
        nnaar(T_HAND, one_visit("c"), S_HAND)


# --------------------------------------------------------------------------- the paper's protocol
def test_paper_nnaar_matches_its_self_match_and_strict_rule_by_hand():
    # Self-match: d_XX = d_SS = 0, so AA_XS = mean 1(d_XS > 0) / 2 + mean 1(d_SX > 0) / 2.
    # T = {a},{a,b}; S = {a},{x}: d_TS = 0, 1 -> 0.5; d_ST = 0, 2 -> 0.5; AA_TS = 0.5.
    # E = {c},{c,d}: d_ES = 2, 3 -> 1; d_SE = 2, 2 -> 1; AA_ES = 1.  NNAAR = 0.5.
    frame = privacy_metrics(T_HAND, E_HAND, S_HAND, repeats=1, protocol="paper").set_index("metric")
    assert frame.at["nnaar", "estimate"] == 0.5


def test_paper_attack_predicts_members_strictly_below_the_median():
    # scores 0, 1, 1, 1: median 1, only the 0 is predicted a member (a member): precision 1, recall 0.5.
    result = paper_attack_metrics([0, 1], [1, 1])
    assert result == pytest.approx({"accuracy": 0.75, "precision": 1.0, "recall": 0.5, "f1": 2 / 3})
    # all tied: nobody predicted a member, precision 0 as in sklearn
    assert paper_attack_metrics([1, 1], [1, 1])["precision"] == 0.0


def test_paper_protocol_uses_500_plus_500_attack_and_1000_record_samples():
    cohort = simulate(3000, seed=5)
    train, holdout = split(cohort, n_holdout=1200, seed=0)
    syn = split(train, n_holdout=1100, seed=1)[1]
    frame = privacy_metrics(train, holdout, syn, repeats=1, protocol="paper").set_index("metric")
    assert tuple(frame.index) == names.PAPER_PRIVACY_METRICS
    assert "samples of 1000" in frame.at["nnaar", "note"]
    assert "500 members + 500 non-members" in frame.at["mia_f1", "note"]


def test_unknown_privacy_protocol_is_a_config_error():
    with pytest.raises(ConfigError, match="protocol"):
        privacy_metrics(T_HAND, E_HAND, S_HAND, protocol="fast")
