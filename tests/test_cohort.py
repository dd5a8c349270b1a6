import warnings

import numpy as np
import pandas as pd
import pytest

from ehrlib.cohort import Cohort, CohortError, CohortWarning, check_int, check_seed, normalise_codes
from ehrlib.errors import ConfigError


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


# ---------------------------------------------------------------- code shapes and argument checks

@pytest.mark.parametrize("version,good,bad", [
    (9, ["4019", "0389", "V5861", "E8781", "401.9", "V58.61"], ["I10", "4O19", "40 19", "4019;", "12", "401.9.1"]),
    (10, ["I10", "E119", "S72001A", "E11.9"], ["4019", "1I0", "I 10", "=I10"]),
    (None, ["A", "C1", "X-1", "TOKEN_7"], ["A B", "<PAD>", "A;B", "X" * 21]),
])
def test_code_shapes_by_icd_version(version, good, bad):
    codes = pd.Series(good * 3 + bad)  # invalid values stay a minority: dropped with a warning
    with pytest.warns(CohortWarning, match=f"{len(bad)} of {len(codes)} value"):
        out = normalise_codes(codes, "f.csv", icd_version=version)
    assert out.notna().tolist() == [True] * (3 * len(good)) + [False] * len(bad)


def test_invalid_codes_are_refused_when_they_are_more_than_half():
    with pytest.warns(CohortWarning, match="2 of 4"):
        normalise_codes(pd.Series(["4019", "0389", "x y", "a;b"]), icd_version=9)
    with pytest.raises(CohortError, match="3 of 5.*right column"):
        normalise_codes(pd.Series(["4019", "0389", "x y", "a;b", "c d"]), icd_version=9)


def test_dropped_rows_are_reported_only_when_asked():
    df = events([(1, 0, "4019"), (1, 0, "4019"), (1, 0, None)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Cohort.from_events(df)  # generators rebuild cohorts from lists: no report
    with pytest.warns(CohortWarning, match=r"src: dropped 1 row\(s\) with a missing code .* and 1 repeat"):
        Cohort.from_events(df, source="src", report_dropped=True)


@pytest.mark.parametrize("value", [True, np.bool_(False), 2.0, "3", None, -1])
def test_check_int_refuses_everything_but_non_negative_integers(value):
    with pytest.raises(ConfigError, match="n="):
        check_int(value, "n")


def test_check_int_accepts_numpy_integers_and_returns_int():
    assert check_int(np.int32(5), "n", minimum=1) == 5 and type(check_int(np.int64(5), "n")) is int
    with pytest.raises(ConfigError, match="<= 3"):
        check_int(4, "n", maximum=3)
    assert check_seed(0) == 0
