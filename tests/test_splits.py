import pytest

from ehrlib.cohort import CohortError
from ehrlib.errors import ConfigError
from ehrlib.data import split
from ehrlib.data.splits import plan_splits, read_ids, save_ids


def test_split_is_subject_level_disjoint_and_complete(small_cohort):
    train, holdout = split(small_cohort, n_holdout=50, seed=0)
    assert holdout.n_patients == 50 and train.n_patients == small_cohort.n_patients - 50
    assert not set(train.subject_ids) & set(holdout.subject_ids)
    assert train.n_events + holdout.n_events == small_cohort.n_events


def test_split_is_deterministic_by_seed_and_ignores_row_order(small_cohort):
    a = split(small_cohort, 50, seed=3)[1].subject_ids
    b = split(small_cohort.subset(small_cohort.subject_ids[::-1]), 50, seed=3)[1].subject_ids
    c = split(small_cohort, 50, seed=4)[1].subject_ids
    assert set(a) == set(b) and set(a) != set(c)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "10", None])
def test_holdout_size_that_is_not_a_positive_integer_is_a_config_error(small_cohort, n):
    with pytest.raises(ConfigError, match="n_holdout"):
        split(small_cohort, n_holdout=n)


@pytest.mark.parametrize("n", [400, 10_000])
def test_holdout_size_not_below_the_cohort_size_is_a_cohort_error(small_cohort, n):
    with pytest.raises(CohortError, match="n_holdout.*400 subjects"):
        split(small_cohort, n_holdout=n)


@pytest.mark.parametrize("seed", [-1, True, 0.5, None])
def test_bad_seed_is_a_config_error(small_cohort, seed):
    with pytest.raises(ConfigError, match="seed"):
        split(small_cohort, n_holdout=10, seed=seed)


def test_ids_round_trip(tmp_path, small_cohort):
    save_ids(small_cohort, tmp_path / "ids.txt")
    assert read_ids(tmp_path / "ids.txt") == list(small_cohort.subject_ids)


def test_plan_splits_shrinks_for_small_cohorts():
    assert plan_splits(47_520, 1000, 1000) == (1000, 1000)
    with pytest.warns(UserWarning, match="using 20 and 20"):
        assert plan_splits(100, 1000, 1000) == (20, 20)
