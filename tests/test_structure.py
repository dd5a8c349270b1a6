"""Structure distributions (paper appendix G.3, Figs. 9-11) on hand-built cohorts."""
import pytest

from ehrlib.cohort import Cohort, CohortError
from ehrlib.metrics.structure import DISTRIBUTION_QUANTITIES, distributions


def cohort(records, prefix="P"):
    return Cohort.from_visits(records, subject_ids=[f"{prefix}{i:03d}" for i in range(len(records))])


@pytest.fixture
def train():
    # patient 0: visits {A, B}, {A}; patient 1: {C}; patient 2: {A, B, C}, {D}, {A}
    return cohort([[["A", "B"], ["A"]], [["C"]], [["A", "B", "C"], ["D"], ["A"]]])


def hist(df, model, quantity):
    d = df[(df["model"] == model) & (df["quantity"] == quantity)]
    return dict(zip(d["value"], d["count"]))


def test_distributions_are_histograms_of_each_quantity(train):
    out = distributions({"train": train})
    assert hist(out, "train", "visits_per_patient") == {1: 1, 2: 1, 3: 1}
    assert hist(out, "train", "codes_per_visit") == {1: 4, 2: 1, 3: 1}


def test_codes_per_patient_counts_distinct_codes_of_the_record(train):
    out = distributions({"train": train})
    # patient 0 has A twice (two visits) but two distinct codes
    assert hist(out, "train", "codes_per_patient") == {1: 1, 2: 1, 4: 1}


def test_shares_sum_to_one_and_means_are_reported(train):
    out = distributions({"train": train, "flat": cohort([[["A", "B"]], [["C"]]], prefix="F")})
    sums = out.groupby(["model", "quantity"])["share"].sum()
    assert sums.tolist() == pytest.approx([1.0] * 6)
    means = out.groupby(["model", "quantity"])["mean"].first()
    assert means[("train", "visits_per_patient")] == pytest.approx(2.0)
    assert means[("flat", "visits_per_patient")] == 1.0
    assert set(out["quantity"]) == set(DISTRIBUTION_QUANTITIES)


def test_models_keep_the_given_order(train):
    out = distributions({"halo": train, "train": train})
    assert list(dict.fromkeys(out["model"])) == ["halo", "train"]


def test_empty_cohort_raises(train):
    with pytest.raises(CohortError, match="'gpt'"):
        distributions({"train": train, "gpt": Cohort.from_visits([], subject_ids=[])})


def test_sweep_table_one_row_per_setting(train):
    from ehrlib.metrics.structure import summary, sweep_table

    half = train.subset(train.subject_ids[: train.n_patients // 2])
    table = sweep_table(train, {0.0: train, 1.0: half}, key="alpha")
    assert list(table["alpha"]) == [0.0, 1.0]
    assert table.loc[0, "prevalence_r2"] == pytest.approx(1.0)
    assert table.loc[1, "unique_codes"] == summary(half)["unique_codes"]
    assert (table["real_unique_codes"] == summary(train)["unique_codes"]).all()  # subsample = all of train
    small = sweep_table(train, {0.0: half}, key="alpha")
    assert small.loc[0, "real_visits_per_patient"] in {summary(train.subset([i]))["visits_per_patient"]
                                                        for i in train.subject_ids}
