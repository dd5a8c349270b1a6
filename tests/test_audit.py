"""copied_records and the memorisation audit."""
import numpy as np
import pandas as pd
import pytest

from ehrlib.cohort import Cohort
from ehrlib.errors import MetricError
from ehrlib.metrics.audit import (
    MARGINALS, SAMPLE, audit, clopper_pearson, detectable_rate, marginals_control,
)
from ehrlib.metrics.distance import pairwise
from ehrlib.metrics.privacy import COPIED_RECORD_COLUMNS, copied_records


def cohort(records: dict, source="test") -> Cohort:
    rows = [(s, v, c) for s, visits in records.items() for v, codes in enumerate(visits) for c in codes]
    return Cohort.from_events(pd.DataFrame(rows, columns=["subject_id", "visit_id", "code"]), source=source)


REAL = cohort({
    "1": [["4019", "25000"], ["4280"]],
    "2": [["4019"]],
    "3": [["5849", "0389", "99591", "78552", "2762"]],
    "4": [["V3000", "7742"]],
})


def test_copied_records_finds_code_set_copies_and_says_whether_visits_match():
    synthetic = cohort({
        "a": [["4019", "25000"], ["4280"]],            # copy of 1, same visits
        "b": [["4019", "25000", "4280"]],              # copy of 1's code set, one visit
        "c": [["5849", "0389", "99591", "78552", "2762"]],  # copy of 3
        "d": [["4019", "4280"]],                       # not a copy
    })
    got = copied_records(REAL, synthetic)
    assert list(got.columns) == list(COPIED_RECORD_COLUMNS)
    assert got.values.tolist() == [["1", "a", 3, True], ["1", "b", 3, False], ["3", "c", 5, True]]


def test_min_codes_drops_short_real_records():
    synthetic = cohort({"x": [["4019"]], "y": [["5849", "0389", "99591", "78552", "2762"]]})
    assert copied_records(REAL, synthetic, min_codes=1)["real_subject"].tolist() == ["2", "3"]
    assert copied_records(REAL, synthetic, min_codes=5)["real_subject"].tolist() == ["3"]
    assert copied_records(REAL, synthetic, min_codes=6).empty


def test_no_copy_gives_an_empty_table_with_the_columns():
    got = copied_records(REAL, cohort({"z": [["E8881"]]}))
    assert got.empty and list(got.columns) == list(COPIED_RECORD_COLUMNS)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_min_codes_is_a_metric_error(bad):
    with pytest.raises(MetricError, match="min_codes"):
        copied_records(REAL, REAL, min_codes=bad)


def test_copies_of_a_simulated_cohort_are_all_found(small_cohort):
    copies = small_cohort.subset(small_cohort.subject_ids[:30]).renamed()
    got = copied_records(small_cohort, copies)
    expected = dict(zip(copies.subject_ids, small_cohort.subject_ids[:30]))
    found = got[got["same_visits"]]
    assert {s: r for r, s in zip(found["real_subject"], found["synthetic_subject"]) if expected.get(s) == r} == expected


def roles_of(c: Cohort, train) -> pd.Series:
    return pd.Series(["train-list" if s in train else "test-list" for s in c.subject_ids], index=c.subject_ids)


def test_audit_counts_copies_per_role_and_size(small_cohort):
    ids = small_cohort.subject_ids
    train = set(ids[:300])
    planted = small_cohort.subset(ids[:20]).renamed("COPY_")  # 20 train-list patients copied
    result = audit(small_cohort, {"leaky": planted}, roles_of(small_cohort, train), control=False)
    rows = result.copies.set_index(["role", "min_codes"])
    n_codes = small_cohort.codes_per_patient().groupby(level=0).size()  # one row per subject
    flat = small_cohort.events.drop_duplicates(["subject_id", "code"]).groupby("subject_id").size()
    for m in (1, 5, 10):
        eligible_train = int((flat.loc[list(ids[:300])] >= m).sum())
        copied = int((flat.loc[list(ids[:20])] >= m).sum())
        assert rows.loc[("train-list", m), "eligible"] == eligible_train
        assert rows.loc[("train-list", m), "copied"] >= copied
        assert rows.loc[("train-list", m), "copied_same_visits"] >= copied
    assert rows.loc[("train-list", 1), "patients"] == 300 and rows.loc[("test-list", 1), "patients"] == len(n_codes) - 300
    train_near = result.nearest[result.nearest["role"] == "train-list"]
    assert (train_near.set_index("real_subject").loc[list(ids[:20]), "set_distance"] == 0).all()


def test_nearest_distances_match_the_full_matrix(small_cohort):
    real = small_cohort.subset(small_cohort.subject_ids[:60])
    synthetic = small_cohort.subset(small_cohort.subject_ids[200:260]).renamed()
    result = audit(real, synthetic, control=False)
    assert np.array_equal(result.nearest["set_distance"].to_numpy(), pairwise(real, synthetic).min(axis=1))
    flat = lambda c: Cohort.from_events(c.events.assign(visit_id=0))  # noqa: E731
    jac = pairwise(flat(real), flat(synthetic), metric="jaccard").min(axis=1)
    assert np.allclose(result.nearest["jaccard_distance"].to_numpy(), jac)


def test_marginals_control_keeps_the_visit_structure_and_is_seeded(small_cohort):
    syn = small_cohort.subset(small_cohort.subject_ids[:100])
    a, b, c = marginals_control(syn, seed=1), marginals_control(syn, seed=1), marginals_control(syn, seed=2)
    a.validate()
    assert a.checksum() == b.checksum() != c.checksum()
    assert sorted(a.codes_per_visit().to_numpy()) == sorted(syn.codes_per_visit().to_numpy())
    assert set(a.codes()) <= set(syn.codes())


def test_audit_reports_the_control_beside_the_sample(small_cohort):
    result = audit(small_cohort.subset(small_cohort.subject_ids[:50]),
                   {"s": small_cohort.subset(small_cohort.subject_ids[50:150]).renamed()}, seed=3)
    assert set(result.copies["comparison"]) == {SAMPLE, MARGINALS}
    assert set(result.distances["distance"]) == {"set", "jaccard"}
    assert len(result.nearest) == 2 * 50


def test_exact_interval_and_detectable_rate():
    low, high = clopper_pearson(0, 98)
    assert low == 0 and high == pytest.approx(1 - 0.025 ** (1 / 98))
    low, high = clopper_pearson(98, 98)
    assert high == 1 and low == pytest.approx(0.025 ** (1 / 98))
    assert detectable_rate(98) == pytest.approx(1 - 0.05 ** (1 / 98))
    assert 1 - (1 - detectable_rate(98)) ** 98 == pytest.approx(0.95)
    assert np.isnan(detectable_rate(0)) and all(np.isnan(clopper_pearson(0, 0)))


def test_limits_state_the_counts(small_cohort):
    real = small_cohort.subset(small_cohort.subject_ids[:98])
    result = audit(real, small_cohort.subset(small_cohort.subject_ids[100:130]).renamed(), control=False,
                   distances=False)
    (sentence,) = result.limits()
    assert "98 patients audited" in sentence and "3.01%" in sentence


def test_a_real_patient_without_a_role_is_an_error(small_cohort):
    real = small_cohort.subset(small_cohort.subject_ids[:5])
    roles = pd.Series("train-list", index=small_cohort.subject_ids[:4])
    with pytest.raises(MetricError, match=r"has no role \(1 subject"):
        audit(real, real.renamed(), roles)


def test_bad_options_are_metric_errors(small_cohort):
    c = small_cohort.subset(small_cohort.subject_ids[:5])
    with pytest.raises(MetricError, match="min_codes"):
        audit(c, c, min_codes=(0,))
    with pytest.raises(MetricError, match="confidence"):
        audit(c, c, confidence=1.5)
    with pytest.raises(MetricError, match="no synthetic files"):
        audit(c, {})


def test_audit_figure_has_distance_and_copy_panels(small_cohort):
    from ehrlib.plots import fig_audit

    real = small_cohort.subset(small_cohort.subject_ids[:40])
    result = audit(real, {"halo": small_cohort.subset(small_cohort.subject_ids[:10]).renamed()},
                   roles_of(real, set(real.subject_ids[:30])))
    fig = fig_audit(result.nearest, result.copies)
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="role 'nope'"):
        fig_audit(result.nearest, result.copies, role="nope")


def test_small_real_cohorts_are_reported_with_what_they_cannot_see(small_cohort):
    real = small_cohort.subset(small_cohort.subject_ids[:98])
    with pytest.warns(UserWarning, match=r"only 98 real patient\(s\) .* below 3.0%"):
        copied_records(real, real.renamed())
    with pytest.warns(UserWarning, match=r"only 98 all patients audited: a true copy rate below 3.0%"):
        audit(real, real.renamed(), control=False, distances=False)


def test_records_sharing_no_code_are_at_the_sum_of_their_sizes():
    real = cohort({"1": [["4019"]], "2": [["25000", "4280"], ["5849"]]})
    synthetic = cohort({"a": [["V3000"]], "b": [["E8881", "7742"]]})
    near = audit(real, synthetic, control=False).nearest
    assert near["set_distance"].tolist() == [2.0, 4.0]  # own size + the smallest synthetic record
    assert near["jaccard_distance"].tolist() == [1.0, 1.0] and not near["copied"].any()
