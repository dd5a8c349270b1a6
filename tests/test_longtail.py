"""Long-tail metrics (paper Fig. 3, appendix G.2) on tiny hand-built cohorts with known answers."""
import math

import numpy as np
import pandas as pd
import pytest

from ehrlib.cohort import Cohort, CohortError
from ehrlib.metrics import longtail as lt


def cohort(records, prefix="P"):
    """records[p][v] = codes of visit v of patient p."""
    return Cohort.from_visits(records, subject_ids=[f"{prefix}{i:03d}" for i in range(len(records))])


def flat(code_sets, prefix="P"):
    """One visit per patient."""
    return cohort([[list(s)] for s in code_sets], prefix)


# Train: 10 patients; patient counts A=10, B=5, C=3, D=1, E=1.
TRAIN_SETS = (
    [["A", "B", "C", "D"]] + [["A", "B", "C", "E"]] + [["A", "B", "C"]] + [["A", "B"]] * 2 + [["A"]] * 5
)


@pytest.fixture
def train():
    return flat(TRAIN_SETS)


def random_cohort(rng, prevalence, n, prefix):
    """Independent codes with the given prevalences (every patient gets at least code 0)."""
    x = rng.random((n, len(prevalence))) < prevalence
    x[:, 0] = True
    p, c = np.nonzero(x)
    return Cohort.from_events(pd.DataFrame({"subject_id": [f"{prefix}{i:05d}" for i in p], "visit_id": 0,
                                            "code": [f"C{j:03d}" for j in c]}))


# ---------------------------------------------------------------- counts and inputs
def test_code_counts_count_patients_not_visits():
    c = cohort([[["A"], ["A", "B"]], [["B"]]])
    counts = lt.code_counts(c)
    assert counts.to_dict() == {"A": 1, "B": 2}


def test_single_cohort_is_named_synthetic(train):
    out = lt.coverage_table(train, train)
    assert out["model"].tolist() == ["synthetic"]


@pytest.fixture
def holdout():
    return flat([["A", "B"], ["A", "C"], ["A"], ["B", "D"]], prefix="H")


def prevalence_panels(train, holdout, synthetic, percentiles):
    """The Figure 3 prevalence panels only, one row per model and percentile."""
    out = lt.longtail_ablation(train, holdout, synthetic, percentiles, panels=("prevalence",), n_bootstrap=20,
                               allow_overlap=True)
    return out.pivot(index=["model", "percentile", "threshold", "n_codes"], columns="metric",
                     values="estimate").reset_index()


def test_empty_synthetic_cohort_raises(train, holdout):
    empty = Cohort.from_visits([], subject_ids=[])
    with pytest.raises(CohortError, match="'gpt'.*no diagnosis events"):
        lt.longtail_ablation(train, holdout, {"gpt": empty}, panels=("prevalence",))
    with pytest.raises(CohortError):
        lt.coverage_table(train, {})


# ---------------------------------------------------------------- percentile ablation (Fig. 3)
def test_percentile_filter_keeps_codes_at_or_below_threshold(train, holdout):
    # counts [10, 5, 3, 1, 1]: the 50th percentile is 3, so the training codes C, D, E are kept
    synth = flat([["A", "C", "X"], ["A"], ["B"]])
    out = prevalence_panels(train, holdout, {"m": synth}, (50, 100)).set_index("percentile")
    assert out.at[50.0, "threshold"] == 3.0 and out.at[50.0, "n_codes"] == 3
    assert out.at[100.0, "n_codes"] == 5


def test_percentile_subset_fit_matches_hand_computation(train, holdout):
    synth = flat([["A", "C", "X"], ["A"], ["B"]])
    row = prevalence_panels(train, holdout, {"m": synth}, (50,)).iloc[0]
    real = np.array([0.3, 0.1, 0.1, 0.0])        # C, D, E and the novel X (kept: training count 0)
    syn = np.array([1 / 3, 0.0, 0.0, 1 / 3])
    r2 = 1 - ((syn - real) ** 2).sum() / ((real - real.mean()) ** 2).sum()
    assert row["prevalence_r2"] == pytest.approx(r2)
    assert row["prevalence_rmse"] == pytest.approx(np.sqrt(((syn - real) ** 2).mean()))


def test_identical_cohort_fits_perfectly(train, holdout):
    out = prevalence_panels(train, holdout, {"copy": train}, (100,)).iloc[0]
    assert out["prevalence_r2"] == pytest.approx(1.0) and out["prevalence_rmse"] == 0.0


def test_r2_is_nan_when_real_prevalences_are_equal(train, holdout):
    # at the 25th percentile only D and E (both in 1 patient) remain: SS_tot = 0
    with pytest.warns(UserWarning, match="could not be computed"):
        out = prevalence_panels(train, holdout, {"copy": train}, (25,)).iloc[0]
    assert out["n_codes"] == 2 and math.isnan(out["prevalence_r2"])


def test_percentiles_out_of_range_raise(train, holdout):
    with pytest.raises(ValueError, match="percentiles"):
        lt.longtail_ablation(train, holdout, train, percentiles=(0, 50), panels=("prevalence",), allow_overlap=True)


# ---------------------------------------------------------------- frequency buckets (Fig. 8)
def test_buckets_are_equal_size_with_q1_most_frequent():
    # 11 codes with counts 11..1: 3 buckets of sizes 4, 4, 3
    sets = [[f"K{j:02d}" for j in range(11) if j < 11 - i] for i in range(11)]
    b = lt.code_buckets(flat(sets), n_buckets=3)
    assert b.groupby("bucket").size().tolist() == [4, 4, 3]
    assert b.loc[b["bucket"] == 1, "code"].tolist() == ["K00", "K01", "K02", "K03"]
    assert b["patients"].is_monotonic_decreasing and b["label"].iloc[0] == "Q1"


def test_bucket_ties_are_broken_by_code(train):
    b = lt.code_buckets(train, n_buckets=5)
    assert b["code"].tolist() == ["A", "B", "C", "D", "E"]
    assert b["bucket"].tolist() == [1, 2, 3, 4, 5]


def test_too_many_buckets_raise(train):
    with pytest.raises(ValueError, match="n_buckets"):
        lt.code_buckets(train, n_buckets=6)


def test_buckets_ignore_novel_codes(train):
    out = lt.frequency_buckets(train, {"m": flat([["A", "X"], ["B"]])}, n_buckets=5)
    assert out["n_codes"].sum() == 5 and out["label"].tolist() == [f"Q{b}" for b in range(1, 6)]


def test_reference_rows_come_first_and_their_reference_ratio_is_one(train):
    holdout = flat([["A", "B"], ["A"], ["C"]], prefix="H")
    out = lt.frequency_buckets(train, {"m": flat([["A", "X"], ["B"]])}, n_buckets=5, reference=holdout)
    assert out["model"].unique().tolist() == ["holdout", "m"]
    ref = out[out["model"] == "holdout"]
    assert (ref["rmse_ratio_reference"][ref["rmse"] > 0] == 1.0).all()
    m = out[out["model"] == "m"].set_index("label")
    # Q1 = A: train 1, model 1/2, holdout 2/3 -> (1/2) / (1/3); Q2 = B: the model is exact
    assert m.at["Q1", "rmse_ratio_reference"] == pytest.approx(1.5)
    assert m.at["Q2", "rmse_ratio_reference"] == 0.0


def test_reference_name_clash_raises(train):
    with pytest.raises(ValueError, match="reference_name"):
        lt.frequency_buckets(train, {"holdout": train}, n_buckets=2, reference=train)


def test_mass_ratio_is_zero_where_model_drops_a_bucket(train):
    synth = flat([["A"], ["A", "B"]])
    out = lt.frequency_buckets(train, {"m": synth}, n_buckets=5).set_index("label")
    assert out.at["Q1", "mass_ratio"] == pytest.approx(1.0)            # A: 1.0 vs 1.0
    assert out.at["Q3", "mass_ratio"] == 0.0 and out.at["Q5", "mass_ratio"] == 0.0


def test_noise_ratio_is_about_one_for_an_independent_sample_and_lower_for_copies():
    rng = np.random.default_rng(0)
    prevalence = np.linspace(0.05, 0.5, 150)
    train = random_cohort(rng, prevalence, 3000, "T")
    holdout = random_cohort(rng, prevalence, 1500, "H")
    copies = train.subset(rng.choice(train.subject_ids, 1500, replace=False))
    out = lt.frequency_buckets(train, {"holdout": holdout, "copies": copies}, n_buckets=1).set_index("model")
    assert out.at["holdout", "rmse_ratio"] == pytest.approx(1.0, abs=0.12)
    # a subsample of train: sqrt((1/1500 - 1/3000) / (1/1500 + 1/3000)) = 0.577
    assert out.at["copies", "rmse_ratio"] == pytest.approx(np.sqrt(1 / 3), abs=0.08)
    assert out.at["holdout", "r2"] == pytest.approx(out.at["holdout", "r2_noise"], abs=0.05)


# ---------------------------------------------------------------- Figs. 4-7
def test_rank_frequency_ranks_each_cohort_on_its_own(train):
    other = flat([["E"], ["E", "D"]])
    out = lt.rank_frequency({"train": train, "m": other})
    assert out[out["model"] == "train"]["code"].tolist() == ["A", "B", "C", "D", "E"]
    m = out[out["model"] == "m"]
    assert m["code"].tolist() == ["E", "D"] and m["rank"].tolist() == [1, 2]
    assert m["prevalence"].tolist() == [1.0, 0.5]


def test_top_codes_reports_zero_for_codes_a_model_never_emits(train):
    out = lt.top_codes(train, {"m": flat([["A"], ["Z"]])}, k=3)
    assert out["model"].tolist() == ["train"] * 3 + ["m"] * 3
    m = out[out["model"] == "m"]
    assert m["code"].tolist() == ["A", "B", "C"] and m["prevalence"].tolist() == [0.5, 0.0, 0.0]
    assert m["real_prevalence"].tolist() == [1.0, 0.5, 0.3]


def test_per_code_prevalence_covers_the_union(train):
    out = lt.per_code_prevalence(train, {"m": flat([["A", "X"]])})
    assert out["code"].tolist() == ["A", "B", "C", "D", "E", "X"]
    assert out.set_index("code").loc["X", ["real", "synthetic"]].tolist() == [0.0, 1.0]


def test_cumulative_mass_is_increasing_and_ends_at_one(train):
    out = lt.cumulative_mass({"train": train})
    assert out["cumulative_share"].tolist() == pytest.approx(np.cumsum([10, 5, 3, 1, 1]) / 20)


# ---------------------------------------------------------------- Table 13
def test_coverage_novel_and_jaccard_counts(train):
    out = lt.coverage_table(train, {"m": flat([["A", "B"], ["X"], ["Y", "A"]])}).iloc[0]
    assert out["unique_codes"] == 4
    assert out["coverage_pct"] == pytest.approx(40.0)    # A, B of 5 train codes
    assert out["novel"] == 2
    assert out["jaccard"] == pytest.approx(2 / 7)


def test_kl_and_js_are_zero_for_identical_distributions(train):
    same_shape = flat(TRAIN_SETS * 3, prefix="S")        # same frequencies, three times the patients
    out = lt.coverage_table(train, {"copy": train, "scaled": same_shape})
    assert out["kl"].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert out["js"].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)


def test_kl_is_finite_when_codes_are_missing_and_js_is_bounded(train):
    out = lt.coverage_table(train, {"disjoint": flat([["X"], ["Y"]]), "partial": flat([["A"]])}, skew=0.99)
    out = out.set_index("model")
    assert out.at["disjoint", "kl"] == pytest.approx(-np.log(0.01))
    assert out.at["disjoint", "js"] == pytest.approx(np.log(2))
    assert 0 < out.at["partial", "kl"] < -np.log(0.01)


def test_top_k_overlap_counts_shared_head_codes(train):
    synth = flat([["A", "D"], ["A", "D"], ["B"]])      # model head: A, D, B
    out = lt.coverage_table(train, {"m": synth}, top=(1, 2, 3)).iloc[0]
    assert (out["top1"], out["top2"], out["top3"]) == (1, 1, 2)


# ---------------------------------------------------------------- Fig. 3, all six panels
from ehrlib.errors import ConfigError  # noqa: E402
from ehrlib.metrics import names  # noqa: E402


def test_occurrence_counts_count_visits_not_patients():
    c = cohort([[["A"], ["A", "B"]], [["B"]]])
    assert lt.occurrence_counts(c).to_dict() == {"A": 2, "B": 2}


def test_tail_codes_use_patient_counts_or_occurrences_by_protocol():
    # A: 1 patient in 3 visits; B, C, D: 1 patient each, one visit.
    c = cohort([[["A"], ["A"], ["A"]], [["B"]], [["C"]], [["D"]]])
    assert lt.tail_codes(c, 75, "corrected")["codes"] == {"A", "B", "C", "D"}
    paper = lt.tail_codes(c, 75, "paper")  # occurrences 3, 1, 1, 1: the 75th percentile is 1.5
    assert paper["codes"] == {"B", "C", "D"} and paper["tail_share"] == pytest.approx(0.5)


def test_tail_codes_reject_bad_percentiles_and_protocols(train):
    for bad in (0, 100.5, float("nan")):
        with pytest.raises(ValueError, match="percentiles"):
            lt.tail_codes(train, bad)
    with pytest.raises(ConfigError, match="protocol"):
        lt.tail_codes(train, 90, "legacy")


@pytest.fixture(scope="module")
def ablation_inputs():
    rng = np.random.default_rng(0)
    prevalence = np.r_[0.9, 0.5, 0.3, np.full(30, 0.03)]
    real = random_cohort(rng, prevalence, 400, "R")
    ids = real.subject_ids
    train, holdout = real.subset(ids[:300]), real.subset(ids[300:])
    return train, holdout, {"fresh": random_cohort(rng, prevalence, 200, "S")}


@pytest.mark.parametrize("protocol", ["corrected", "paper"])
def test_longtail_ablation_has_six_metrics_per_percentile_with_intervals(ablation_inputs, protocol):
    train, holdout, synthetic = ablation_inputs
    out = lt.longtail_ablation(train, holdout, synthetic, (90, 99), protocol=protocol, n_bootstrap=50, repeats=2)
    assert set(out.metric) == set(names.FIG3_METRICS)
    assert len(out) == 2 * len(names.FIG3_METRICS)
    banded = out[out.metric.isin(["prevalence_r2", "prevalence_rmse", "disc_score"])]
    assert np.isfinite(banded[["ci_low", "ci_high"]].to_numpy()).all()
    assert np.isfinite(out[out.metric == "nnaar"].spread).all()
    assert (out.tail_share > 0).all() and (out.tail_share <= 1).all()
    assert out.groupby("percentile").tail_share.first().is_monotonic_increasing


def test_longtail_ablation_reports_a_model_without_tail_codes_as_nan_with_the_reason(ablation_inputs):
    train, holdout, _ = ablation_inputs
    head_only = flat([["C000"]] * 50, prefix="S")
    with pytest.warns(UserWarning, match="could not be computed"):
        out = lt.longtail_ablation(train, holdout, {"head": head_only}, (75,), protocol="paper", n_bootstrap=20,
                                   repeats=1)
    assert out.estimate.isna().all() and out.note.str.len().gt(0).all()


# ---------------------------------------------------------------- KL(syn || real)
def test_kl_syn_real_is_unsmoothed_finite_without_novel_codes_and_infinite_with_one(train):
    same = lt.coverage_table(train, {"same": flat(TRAIN_SETS, "S")}).iloc[0]
    assert same.kl_syn_real == pytest.approx(0.0, abs=1e-12)
    subset = lt.coverage_table(train, {"sub": flat([["A"], ["A", "B"]], "S")}).iloc[0]
    # Q = A 2/3, B 1/3; P = A 10/20, B 5/20:  KL = 2/3 ln(4/3) + 1/3 ln(4/3) = ln(4/3)
    assert subset.kl_syn_real == pytest.approx(math.log(4 / 3))
    novel = lt.coverage_table(train, {"novel": flat([["A", "Z"]], "S")}).iloc[0]
    assert novel.novel == 1 and novel.kl_syn_real == math.inf


def test_coverage_intervals_are_paired_basic_intervals_that_vanish_for_identical_cohorts(train):
    tab = lt.coverage_table(train, {"same": flat(TRAIN_SETS, "S")}, n_bootstrap=50, seed=0).iloc[0]
    for col in ("coverage_pct", "jaccard", "js", "top10"):
        assert tab[f"{col}_ci_low"] <= tab[f"{col}_ci_high"]
    # one set of weights per side: an identical model is not identical in each resample, so JS > 0 there
    assert tab.js_ci_high >= 0 and np.isfinite(tab.jaccard_ci_low)
    again = lt.coverage_table(train, {"same": flat(TRAIN_SETS, "S")}, n_bootstrap=50, seed=0).iloc[0]
    assert again.equals(tab)


def test_bucket_intervals_cover_rmse_and_repeat_with_the_seed():
    rng = np.random.default_rng(3)
    prevalence = np.r_[0.6, 0.4, 0.3, 0.2, np.linspace(0.15, 0.01, 16)]
    train = random_cohort(rng, prevalence, 600, "T")
    synthetic = {"fresh": random_cohort(rng, prevalence, 300, "S")}
    out = lt.frequency_buckets(train, synthetic, n_buckets=4, n_bootstrap=100, seed=0)
    assert (out.rmse_ci_low <= out.rmse_ci_high).all() and (out.rmse_ci_low >= 0).all()
    again = lt.frequency_buckets(train, synthetic, n_buckets=4, n_bootstrap=100, seed=0)
    pd.testing.assert_frame_equal(out, again)
    assert "r2_ci_low" not in lt.frequency_buckets(train, synthetic, n_buckets=4).columns


def test_top_codes_carry_the_icd9_short_title_and_nothing_for_unknown_codes():
    cohort = flat([["4019", "42731"], ["4019"], ["NOTACODE"]])
    out = lt.top_codes(cohort, {"m": cohort}, k=3).drop_duplicates("code").set_index("code")["title"]
    assert out["4019"] == "Hypertension NOS" and out["42731"] == "Atrial fibrillation" and out["NOTACODE"] == ""


def test_longtail_ablation_runs_the_long_tail_loops_lstm_in_the_paper_protocol(ablation_inputs, monkeypatch):
    from ehrlib.metrics import discriminator as disc

    seen = []

    def fake_family(*args, lstm=None, **kwargs):
        seen.append((kwargs["protocol"], lstm))
        raise CohortError("not run in this test")

    monkeypatch.setattr(disc, "discriminator_family", fake_family)
    train, holdout, synthetic = ablation_inputs
    mine = disc.LSTMConfig(hidden_size=4)
    with pytest.warns(UserWarning):
        for protocol, lstm in (("paper", None), ("paper", mine), ("corrected", None)):
            kw = {} if lstm is None else {"lstm": lstm}
            lt.longtail_ablation(train, holdout, synthetic, (90,), protocol=protocol, discriminator="lstm",
                                 n_bootstrap=20, repeats=1, **kw)
    assert seen == [("paper", disc.PAPER_LONGTAIL_LSTM), ("paper", mine), ("corrected", None)]
