import numpy as np
import pandas as pd
import pytest

from ehrlib.cohort import CohortError
from ehrlib.data import icd9, load_mimic3, simulate, write_simulated
from ehrlib.metrics.structure import summary


@pytest.fixture(scope="module")
def cohort():
    return simulate(8000, seed=0)


def test_same_seed_same_cohort_other_seed_other_cohort():
    a, b, c = simulate(300, seed=5), simulate(300, seed=5), simulate(300, seed=6)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.demographics, b.demographics)
    assert not a.events.equals(c.events)


def test_written_csvs_load_through_the_mimic3_loader_to_the_same_cohort(tmp_path):
    root = write_simulated(tmp_path / "sim", 300, seed=2)
    assert sorted(p.name for p in root.iterdir()) == ["ADMISSIONS.csv", "DIAGNOSES_ICD.csv", "PATIENTS.csv", "SIMULATED.txt"]
    loaded = load_mimic3(root)
    direct = simulate(300, seed=2)
    pd.testing.assert_frame_equal(loaded.events, direct.events)
    pd.testing.assert_frame_equal(loaded.demographics, direct.demographics)


def test_hadm_ids_are_not_in_time_order(tmp_path):
    root = write_simulated(tmp_path / "sim", 2000, seed=0)
    adm = pd.read_csv(root / "ADMISSIONS.csv").sort_values(["SUBJECT_ID", "ADMITTIME"])
    multi = adm.groupby("SUBJECT_ID").filter(lambda g: len(g) > 1)
    increasing = multi.groupby("SUBJECT_ID")["HADM_ID"].apply(lambda s: s.is_monotonic_increasing)
    assert 0.2 < increasing.mean() < 0.8


def test_codes_are_real_icd9_cm_v32_codes(cohort):
    assert set(cohort.codes()) <= set(icd9.codes())


def test_structure_is_mimic_shaped_at_moderate_size(cohort):
    s = summary(cohort)
    assert 1.2 < s["visits_per_patient"] < 1.35
    assert 10.5 < s["codes_per_visit"] < 11.6
    assert s["codes_per_patient"] < s["visits_per_patient"] * s["codes_per_visit"]  # chronic codes recur
    assert cohort.visits_per_patient().max() >= 15
    assert cohort.codes_per_visit().max() <= 39


def test_prevalence_is_long_tailed_over_four_decades(cohort):
    prev = cohort.events.drop_duplicates(["subject_id", "code"]).code.value_counts() / cohort.n_patients
    assert prev.max() > 0.1 and np.log10(prev.max() / prev.min()) > 3
    assert (prev < 10 / cohort.n_patients).mean() > 0.4  # many rare codes


def test_codes_co_occur_beyond_independence(cohort):
    from ehrlib.data.encode import Vocabulary, binary_matrix

    x = binary_matrix(cohort, Vocabulary.from_cohorts(cohort)).tocsc()
    p = np.asarray(x.mean(axis=0)).ravel()
    top = np.argsort(-p)[:30]
    joint = (x[:, top].T @ x[:, top]).toarray() / x.shape[0]
    lift = joint / np.outer(p[top], p[top])
    off = lift[~np.eye(len(top), dtype=bool)]
    assert np.mean(off > 1.5) > 0.1


def test_age_and_sex_shape_the_codes(cohort):
    demo = cohort.demographics.set_index("subject_id")
    ev = cohort.events.join(demo, on="subject_id")
    chapter = icd9.chapters(ev.code.to_numpy())
    newborn = ev.age.to_numpy() == 0
    assert (chapter[newborn] == "15").mean() > 0.2 and (chapter[~newborn] == "15").mean() < 0.02
    pregnancy = chapter == "11"
    assert (ev.sex.to_numpy()[pregnancy] == "F").all()
    assert demo.age.max() == 90 and (demo.age == 0).mean() > 0.1


def test_bad_size_is_an_error():
    with pytest.raises(CohortError, match="n_patients"):
        simulate(0)


def test_interrupted_write_leaves_no_partial_folder(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError):
        write_simulated(tmp_path / "sim", 50)
    assert list(tmp_path.iterdir()) == []
