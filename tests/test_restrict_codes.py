"""Cohort.restrict_codes: keep some codes, drop empty visits and patients, renumber visits."""
import pytest

from ehrlib.cohort import Cohort, CohortError


def cohort():
    # P0: visit 0 {A, B}, visit 1 {C}, visit 2 {A};  P1: visit 0 {C};  P2: visit 0 {B}, visit 1 {A}
    return Cohort.from_visits([[["A", "B"], ["C"], ["A"]], [["C"]], [["B"], ["A"]]],
                              subject_ids=["P0", "P1", "P2"])


def test_other_codes_empty_visits_and_empty_patients_are_dropped_and_visits_renumbered():
    restricted, counts = cohort().restrict_codes(["A"], report=True)
    assert restricted.records() == [[["A"], ["A"]], [["A"]]]
    assert list(restricted.subject_ids) == ["P0", "P2"]
    restricted.validate()  # visit ids are 0..L-1 again
    assert counts == {"codes_kept": 1, "events_dropped": 4, "visits_dropped": 3, "patients_dropped": 1}


def test_keeping_every_code_changes_nothing():
    c = cohort()
    same = c.restrict_codes(c.codes())
    assert same.checksum() == c.checksum()


def test_codes_are_normalised_like_the_cohorts():
    c = Cohort.from_visits([[["4019", "25000"]]])
    with pytest.warns(UserWarning, match="dot"):
        assert c.restrict_codes(["401.9"]).codes() == ["4019"]


def test_a_code_list_that_matches_nothing_is_a_clear_error():
    with pytest.raises(CohortError, match="none of the 2 code\\(s\\) given \\(e.g. 'X'\\)"):
        cohort().restrict_codes(["X", "Y"])
    with pytest.raises(CohortError, match="no codes given"):
        cohort().restrict_codes([])
