import pandas as pd
import pytest

from ehrlib.cohort import Cohort, CohortError


def events(rows):
    return pd.DataFrame(rows, columns=["subject_id", "visit_id", "code"])


def test_codes_are_strings_with_leading_zeros_kept():
    c = Cohort.from_events(events([(1, 0, "0389"), (1, 0, "V5861")]))
    assert c.events["code"].tolist() == ["0389", "V5861"]
    assert c.events["subject_id"].tolist() == ["1", "1"]


def test_missing_codes_are_dropped():
    c = Cohort.from_events(events([(1, 0, "4019"), (1, 0, None), (1, 0, ""), (1, 0, "nan"), (1, 0, "NaN")]))
    assert c.events["code"].tolist() == ["4019"]


def test_duplicate_codes_in_a_visit_are_dropped():
    c = Cohort.from_events(events([(1, 0, "4019"), (1, 0, "4019"), (1, 1, "4019")]))
    assert c.n_events == 2 and c.n_visits == 2


def test_visits_become_ordinals_in_key_order_and_empty_visits_vanish():
    df = events([(7, 30, "A1"), (7, 10, "B2"), (7, 20, None), (8, 5, "C3")])
    c = Cohort.from_events(df)
    assert c.records() == [[["B2"], ["A1"]], [["C3"]]]
    c.validate()


def test_dotted_codes_are_normalised_with_a_warning():
    with pytest.warns(UserWarning, match="401.9"):
        c = Cohort.from_events(events([(1, 0, "401.9"), (1, 0, "E878.1")]))
    assert sorted(c.events["code"]) == ["4019", "E8781"]


def test_empty_cohort_is_an_error():
    with pytest.raises(CohortError, match="empty cohort"):
        Cohort.from_events(events([(1, 0, None)]))


def test_missing_column_error_names_the_column():
    with pytest.raises(CohortError, match="visit_id"):
        Cohort.from_events(pd.DataFrame({"subject_id": [1], "code": ["1"]}))


def test_missing_subject_error_names_the_row():
    with pytest.raises(CohortError, match="row 1"):
        Cohort.from_events(events([(1, 0, "4019"), (None, 0, "4019")]))


def test_demographics_must_cover_every_subject():
    demo = pd.DataFrame({"subject_id": ["1"], "age": [40], "sex": ["F"]})
    with pytest.raises(CohortError, match="'2'"):
        Cohort.from_events(events([(1, 0, "4019"), (2, 0, "4019")]), demo)


def test_bad_sex_value_is_named():
    demo = pd.DataFrame({"subject_id": ["1"], "age": [40], "sex": ["X"]})
    with pytest.raises(CohortError, match="'X'"):
        Cohort.from_events(events([(1, 0, "4019")]), demo)


def test_validate_rejects_non_canonical_events():
    bad = Cohort(events([("1", 0, "4019"), ("1", 0, "4019")]))
    with pytest.raises(CohortError, match="repeated"):
        bad.validate()
    gap = Cohort(events([("1", 0, "4019"), ("1", 2, "4019")]))
    with pytest.raises(CohortError, match="0..L-1"):
        gap.validate()


def test_renamed_cohort_carries_no_real_ids(small_cohort):
    r = small_cohort.renamed()
    assert not set(r.subject_ids) & set(small_cohort.subject_ids)
    assert r.subject_ids[0] == "SYNTH_000001"
    assert r.n_events == small_cohort.n_events
    assert set(r.demographics["subject_id"]) == set(r.subject_ids)


def test_save_and_load_round_trip(tmp_path, small_cohort):
    path = small_cohort.save(tmp_path / "c.parquet")
    back = Cohort.load(path)
    pd.testing.assert_frame_equal(back.events, small_cohort.events)
    pd.testing.assert_frame_equal(back.demographics, small_cohort.demographics, check_dtype=False)


def test_failed_save_keeps_the_previous_file(tmp_path, small_cohort, monkeypatch):
    path = small_cohort.save(tmp_path / "c.parquet")
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(RuntimeError):
        small_cohort.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.parquet"]
