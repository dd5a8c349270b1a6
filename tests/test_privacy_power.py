"""Membership attacks with known power (ehrlib.metrics.membership) and the partial memorizers."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.data import make_splits, simulate
from ehrlib.errors import MetricError
from ehrlib.metrics import membership
from ehrlib.metrics.privacy import copied_records


# --------------------------------------------------------------------------- ROC at low FPR
def test_tpr_at_low_fpr_on_a_constructed_example():
    # 1,000 non-members scored 999..0; of 100 members, 10 outscore every non-member, 10 sit just
    # below the 5 highest non-members, 80 below everyone.
    nonmember = np.arange(1000, dtype=float)[::-1]
    member = np.r_[np.full(10, 2000.0), np.full(10, 994.5), np.full(80, -1.0)]
    r = membership.roc_summary(member, nonmember)
    assert r["tpr_at_0_1pct"] == pytest.approx(0.10)  # 1 false positive allowed: only the top 10
    assert r["tpr_at_1pct"] == pytest.approx(0.20)  # 10 false positives: the next 10 members too
    y = np.r_[np.ones(100), np.zeros(1000)]
    assert r["auc"] == pytest.approx(roc_auc_score(y, np.r_[member, nonmember]))


def test_tied_scores_give_the_diagonal():
    r = membership.roc_summary(np.zeros(50), np.zeros(200))
    assert r == pytest.approx({"auc": 0.5, "tpr_at_0_1pct": 0.001, "tpr_at_1pct": 0.01})


def test_tpr_interpolates_between_roc_points():
    # 4 non-members (0.25 FPR a step); a member tied with a non-member at 2 joins (0, 0.5) to
    # (0.25, 1.0) by a straight segment: FPR 1% lies 1/25 of the way along it
    r = membership.roc_summary([3.0, 2.0], [2.0, 0.0, -1.0, -2.0])
    assert r["tpr_at_1pct"] == pytest.approx(0.5 + 0.5 * 0.01 / 0.25)


def test_bootstrap_intervals_are_seeded_and_bracket_the_estimate():
    rng = np.random.default_rng(3)
    member, nonmember = rng.normal(0.5, 1, 400), rng.normal(0, 1, 300)
    a = membership.attack_summary(member, nonmember, n_bootstrap=200, seed=1)
    b = membership.attack_summary(member, nonmember, n_bootstrap=200, seed=1)
    assert a == b
    assert a["auc_low"] < a["auc"] < a["auc_high"]
    assert a["auc"] == pytest.approx(membership.roc_summary(member, nonmember)["auc"])
    assert 0.0 <= a["tpr_at_0_1pct_low"] <= a["tpr_at_0_1pct_high"] <= 1.0


def test_bad_scores_are_one_clear_error():
    with pytest.raises(MetricError, match="members and non-members"):
        membership.roc_summary([], [1.0])
    with pytest.raises(MetricError, match="not finite"):
        membership.roc_summary([np.nan], [1.0])


# --------------------------------------------------------------------------- the detection rule
def _power(attack, rows):
    return pd.DataFrame([{"attack": attack, "generator": g, "copy_rate": rate, "auc_low": lo, "auc_high": hi,
                          "tpr_at_1pct_low": tlo, "tpr_at_1pct_high": thi} for g, rate, lo, hi, tlo, thi in rows])


def test_the_detection_rule_on_constructed_intervals():
    a = _power("a", [("holdout", 0.0, 0.48, 0.52, 0.00, 0.02),
                     ("marginals", 0.0, 0.47, 0.53, 0.00, 0.02),
                     ("memorizer_1", 0.01, 0.50, 0.55, 0.00, 0.02),   # overlaps: not ordered
                     ("memorizer_5", 0.05, 0.49, 0.56, 0.03, 0.05),   # AUC overlaps, TPR above: detected
                     ("memorizer_20", 0.20, 0.521, 0.60, 0.00, 0.10)])  # AUC above: detected
    b = _power("b", [("holdout", 0.0, 0.48, 0.52, 0.00, 0.02),
                     ("memorizer_100", 1.0, 0.52, 0.70, 0.02, 0.30)])  # touching is not above
    power = membership.mark_detected(pd.concat([a, b], ignore_index=True))
    assert power["detected"].tolist() == [False, False, False, True, True, False, False]
    found = membership.detection(power).set_index("attack")["min_detected_copy_rate"]
    assert found["a"] == 0.05 and np.isnan(found["b"])
    assert not membership.is_detected(float("nan"), 0.5)


def test_detection_needs_one_holdout_row_per_attack():
    power = _power("a", [("memorizer_1", 0.01, 0.5, 0.6, 0.0, 0.1)])
    with pytest.raises(MetricError, match="holdout"):
        membership.mark_detected(power)


# --------------------------------------------------------------------------- partial memorizers
@pytest.fixture(scope="module")
def splits():
    return make_splits(simulate(1500, seed=4), 250, 250, seed=0)


def test_partial_memorizers_copy_their_share(splits, tmp_path):
    train = splits["train"]
    for name, rate in (("memorizer_20", 0.2), ("memorizer_100", 1.0)):
        gen = models.get(name).fit(train)
        out = gen.generate(200, seed=5)
        assert out.n_patients == 200
        copies = copied_records(train, out)["synthetic_subject"].nunique()
        assert int(rate * 200) <= copies <= int(rate * 200) + 20  # + chance matches of the marginals part
        assert out.records() == gen.generate(200, seed=5).records()
        assert not set(out.subject_ids) & set(train.subject_ids)
    gen.save(tmp_path / "m")
    loaded = models.load(tmp_path / "m")
    assert loaded.name == "memorizer_100" and loaded.generate(50, seed=1).records() == gen.generate(50, seed=1).records()


def test_the_memorizer_stays_as_it_is():
    assert models.get("memorizer").name == "memorizer"
    assert {"memorizer_1", "memorizer_5", "memorizer_20", "memorizer_100"} <= set(models.NAMES)


# --------------------------------------------------------------------------- attacks with known power
@pytest.fixture(scope="module")
def power(splits):
    return membership.calibration_rows(splits["train"], splits["holdout"], splits["reference"], n_synthetic=500,
                                       seed=0, n_bootstrap=200)


def test_both_attacks_separate_the_memorizer_from_the_holdout(power):
    by = power.set_index(["attack", "generator"])
    for attack in membership.ATTACKS:
        hold, mem = by.loc[(attack, "holdout")], by.loc[(attack, "memorizer_100")]
        assert 0.44 < hold["auc"] < 0.56, attack
        assert mem["auc_low"] > hold["auc_high"], attack
        assert mem["detected"], attack
    assert by.loc[("distance", "memorizer_100"), "auc"] > 0.65  # half of the members are copied


def test_power_grows_with_the_copy_rate(power):
    for attack in membership.ATTACKS:
        auc = power[power["attack"] == attack].set_index("generator")["auc"]
        assert auc["memorizer_100"] > auc["memorizer_20"] - 0.02 > auc["memorizer_1"] - 0.05, attack
    copies = power.drop_duplicates("generator").set_index("generator")["exact_copies"]
    assert copies["memorizer_1"] < copies["memorizer_5"] < copies["memorizer_20"] < copies["memorizer_100"] == 500


def test_power_table_has_the_columns_the_ledger_reads(power):
    assert list(power.columns[:9]) == ["attack", "generator", *membership.POWER_COLUMNS[1:]]
    detected = membership.detection(power)
    assert list(detected.columns) == list(membership.DETECTION_COLUMNS)
    assert detected.set_index("attack").loc["distance", "min_detected_copy_rate"] <= 1.0


def test_the_holdout_row_never_shares_records_with_the_density_reference(splits):
    ref, held = membership.split_reference(splits["reference"], seed=0)
    assert not set(ref.subject_ids) & set(held.subject_ids)
    assert ref.n_patients + held.n_patients == splits["reference"].n_patients


def test_density_attack_refuses_too_small_a_cohort(splits):
    tiny = Cohort.from_visits([[["4019"]], [["25000"]]])
    with pytest.raises(MetricError, match="needs at least"):
        membership.density_scores(splits["holdout"], tiny, splits["reference"])


def test_most_exposed_lists_codes_rarest_first(splits):
    train = splits["train"]
    scores = np.zeros(train.n_patients)
    scores[7] = 5.0
    table = membership.most_exposed(train, scores, top=2)
    assert table["rank"].tolist() == [1, 2] and table.loc[0, "score"] == 5.0
    counts = [int(part.rsplit("(", 1)[1].rstrip(")")) for part in table.loc[0, "codes"].split("; ") if "(" in part]
    assert counts == sorted(counts)


# --------------------------------------------------------------------------- the stages
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from ehrlib import pipeline, runs

    mp = pytest.MonkeyPatch()
    mp.setenv("EHRLIB_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    pipeline.split_cohort(runs.stage("00_data", run="p", profile="smoke", seed=0), simulate(600, seed=0))
    pipeline.reference_generators(runs.stage("15_reference_generators", run="p", profile="smoke", seed=0))
    power = pipeline.privacy_power(runs.stage("35_privacy_power", run="p", profile="smoke", seed=0))
    pipeline.privacy(runs.stage("32_privacy", run="p", profile="smoke", seed=0))
    yield power, runs.open_run("p").path
    mp.undo()


def test_the_power_stage_saves_the_tables_the_ledger_reads(smoke_run):
    power, path = smoke_run
    saved = pd.read_csv(path / "tables" / "table_privacy_power.csv")
    assert set(membership.POWER_COLUMNS) <= set(saved.columns)
    assert set(saved["generator"]) == set(membership.CALIBRATION)
    found = pd.read_csv(path / "tables" / "table_privacy_detection.csv")
    assert list(found.columns) == list(membership.DETECTION_COLUMNS) and set(found["attack"]) == set(membership.ATTACKS)
    exposed = pd.read_csv(path / "tables" / "table_privacy_exposed.csv")
    assert exposed.loc[exposed["attack"] == "distance", "copied"].iloc[0]  # the distance attack's first is a copy


def test_the_privacy_page_shares_the_power_stages_holdout_row(smoke_run):
    power, path = smoke_run
    attacks = pd.read_csv(path / "tables" / "table_privacy_attacks.csv")
    mine = attacks[attacks["model"] == "holdout"].set_index("attack")["auc"]
    theirs = power[power["generator"] == "holdout"].set_index("attack")["auc"]
    assert mine.to_dict() == pytest.approx(theirs.to_dict())
    assert attacks.set_index(["model", "attack"]).loc[("memorizer", "distance"), "above_holdout"]


def test_a_collapsed_release_still_has_a_density(splits):
    same = Cohort.from_visits([[["4019", "25000"]]] * 30)
    out = membership.membership_attacks(splits["train"], splits["holdout"], same, splits["reference"], n_bootstrap=20)
    assert np.isfinite(out["auc"]).all()


def test_a_small_reference_leaves_the_density_attack_out(splits):
    small = splits["reference"].subset(splits["reference"].subject_ids[:60])
    attacks, why = membership.usable_attacks(small)
    assert attacks == ("distance",) and "30 records" in why
    assert membership.usable_attacks(splits["reference"]) == (membership.ATTACKS, "")


def test_the_kernel_density_is_scipys():
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(0)
    data = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    points = rng.normal(size=(40, 5))
    ours = membership._Kde(data, "test").logpdf(points)
    assert ours == pytest.approx(gaussian_kde(data.T).logpdf(points.T), abs=1e-9)
