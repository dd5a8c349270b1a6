"""The paper's released split as package data, applied to cohorts."""
import warnings

import pandas as pd
import pytest

from conftest import MIMIC3_DEMO, needs_demo
from ehrlib.cohort import Cohort, CohortError
from ehrlib.data import load_mimic3, paper_split
from ehrlib.data.splits import PAPER_SPLIT_DIR, PAPER_TEST_IDS, PAPER_TRAIN_IDS, read_split_ids


def cohort_of(ids, source="test cohort"):
    return Cohort.from_events(
        pd.DataFrame({"subject_id": [str(i) for i in ids], "visit_id": 0, "code": "4019"}), source=source
    )


def write(path, text):
    path.write_text(text)
    return path


def test_released_lists_ship_with_their_licence():
    assert (PAPER_SPLIT_DIR / "LICENSE").read_text().startswith("MIT License")
    train, test = read_split_ids(PAPER_TRAIN_IDS), read_split_ids(PAPER_TEST_IDS)
    assert (len(train), len(test)) == (45_520, 1_000)
    assert not set(train) & set(test)


@needs_demo
def test_demo_gives_98_train_and_2_test_with_a_warning_of_the_missing_ids():
    demo = load_mimic3(MIMIC3_DEMO)
    with pytest.warns(UserWarning, match=r"found 98 of 45520 training ids and 2 of 1000 test ids \(45422 and 998 missing"):
        result = paper_split(demo)
    train, holdout = result
    assert (train.n_patients, holdout.n_patients) == (98, 2)
    assert (len(result.missing_train), len(result.missing_test)) == (45_422, 998)
    assert result.roles.value_counts().to_dict() == {"train-list": 98, "test-list": 2}
    with pytest.raises(CohortError, match="no patients are left for a reference split"):
        result.reference


def test_unlisted_patients_are_the_reference_candidates(tmp_path):
    tr, te = write(tmp_path / "tr.txt", "1\n2\n"), write(tmp_path / "te.txt", "3\n")
    with pytest.warns(UserWarning, match="1 patient\\(s\\) are on neither list"):
        result = paper_split(cohort_of([1, 2, 3, 4]), train_ids=tr, test_ids=te)
    assert sorted(result.train.subject_ids) == ["1", "2"]
    assert list(result.holdout.subject_ids) == ["3"]
    assert list(result.reference.subject_ids) == ["4"]
    assert result.missing_train == [] and result.missing_test == []


def test_complete_match_gives_no_warning(tmp_path):
    tr, te = write(tmp_path / "tr.txt", "1\n2\n"), write(tmp_path / "te.txt", "3\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paper_split(cohort_of([1, 2, 3]), train_ids=tr, test_ids=te)


def test_ids_match_as_integers(tmp_path):
    tr, te = write(tmp_path / "tr.txt", "007\n"), write(tmp_path / "te.txt", "8\n")
    train, holdout = paper_split(cohort_of(["7", "0008"]), train_ids=tr, test_ids=te)
    assert list(train.subject_ids) == ["7"] and list(holdout.subject_ids) == ["0008"]


def test_non_integer_id_names_the_file_and_line(tmp_path):
    bad = write(tmp_path / "train.txt", "1\n2\nP-3\n")
    with pytest.raises(CohortError, match=r"train.txt, line 3: 'P-3' is not an integer subject id"):
        read_split_ids(bad)


def test_repeated_id_names_both_lines(tmp_path):
    bad = write(tmp_path / "train.txt", "5\n6\n5\n")
    with pytest.raises(CohortError, match=r"train.txt, line 3: subject id 5 repeats line 1"):
        read_split_ids(bad)


def test_overlapping_lists_are_refused(tmp_path):
    tr, te = write(tmp_path / "tr.txt", "1\n2\n"), write(tmp_path / "te.txt", "2\n")
    with pytest.raises(CohortError, match="share 1 subject id"):
        paper_split(cohort_of([1, 2]), train_ids=tr, test_ids=te)


def test_cohort_without_any_listed_id_is_an_error_naming_source_and_lists():
    with pytest.raises(CohortError, match=r"simulated.csv: none of its 2 subject ids .*train_patient_ids.txt"):
        paper_split(cohort_of(["SIM_1", "SIM_2"], source="simulated.csv"))
