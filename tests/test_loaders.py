import gzip
import shutil

import pandas as pd
import pytest

from conftest import MIMIC3_DEMO, MIMIC4_DEMO, needs_demo
from ehrlib.cohort import CohortError
from ehrlib.data import load_mimic3, load_mimic4, read_long
from ehrlib.metrics.structure import summary

pytestmark = needs_demo
TABLES = ("PATIENTS.csv", "ADMISSIONS.csv", "DIAGNOSES_ICD.csv")


@pytest.fixture
def mimic3(tmp_path):
    """A writable copy of the MIMIC-III demo tables."""
    for t in TABLES:
        shutil.copy(MIMIC3_DEMO / t, tmp_path / t)
    return tmp_path


def edit(path, fn):
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df).to_csv(path, index=False)


# ---------------------------------------------------------------- the real demos

def test_mimic3_demo_matches_its_published_statistics():
    c = load_mimic3(MIMIC3_DEMO)
    s = summary(c)
    assert (s["patients"], s["visits"], s["unique_codes"]) == (100, 129, 581)
    assert c.n_events == 1761
    assert s["codes_per_visit"] == pytest.approx(1761 / 129)
    assert c.visits_per_patient().max() == 15 and (c.visits_per_patient() == 1).sum() == 86
    c.validate()


def test_mimic3_demo_demographics_map_shifted_ages_to_90():
    d = load_mimic3(MIMIC3_DEMO).demographics
    assert d["age"].max() == 90 and d["age"].min() >= 0
    assert set(d["sex"]) == {"F", "M"}


def test_mimic3_visits_follow_admission_time_not_hadm_id(mimic3):
    # subject 10006 has one admission; give it a second, earlier one with a larger hadm_id
    edit(mimic3 / "ADMISSIONS.csv", lambda df: pd.concat([df, df.iloc[[0]].assign(
        hadm_id="999999", admittime="2100-01-01 00:00:00", row_id="1")], ignore_index=True))
    edit(mimic3 / "DIAGNOSES_ICD.csv", lambda df: pd.concat([df, df.iloc[[0]].assign(
        hadm_id="999999", icd9_code="V5861")], ignore_index=True))
    c = load_mimic3(mimic3)
    first = c.events[(c.events.subject_id == "10006") & (c.events.visit_id == 0)]
    assert first["code"].tolist() == ["V5861"]


def test_mimic3_reads_gzip_and_upper_case_columns(tmp_path):
    for t in TABLES:
        df = pd.read_csv(MIMIC3_DEMO / t, dtype=str)
        df.columns = [c.upper() for c in df.columns]
        with gzip.open(tmp_path / f"{t}.gz", "wt") as fh:
            df.to_csv(fh, index=False)
    assert load_mimic3(tmp_path).n_events == 1761


def test_mimic4_demo_icd9_and_icd10_are_never_mixed():
    c9 = load_mimic4(MIMIC4_DEMO)
    c10 = load_mimic4(MIMIC4_DEMO, icd_version=10)
    assert (c9.n_patients, c9.n_visits, c9.n_events) == (76, 152, 2193)
    assert c10.n_visits == 123 and c10.n_events == 2313
    with pytest.raises(CohortError, match="icd_version"):
        load_mimic4(MIMIC4_DEMO, icd_version=11)


# ---------------------------------------------------------------- bad input

def test_missing_file_is_named(mimic3):
    (mimic3 / "ADMISSIONS.csv").unlink()
    with pytest.raises(CohortError, match="ADMISSIONS"):
        load_mimic3(mimic3)


def test_missing_column_is_named(mimic3):
    edit(mimic3 / "DIAGNOSES_ICD.csv", lambda df: df.drop(columns=["icd9_code"]))
    with pytest.raises(CohortError, match="icd9_code"):
        load_mimic3(mimic3)


def test_wrong_delimiter_is_explained(mimic3):
    df = pd.read_csv(mimic3 / "PATIENTS.csv", dtype=str)
    df.to_csv(mimic3 / "PATIENTS.csv", index=False, sep=";")
    with pytest.raises(CohortError, match="semicolon-delimited"):
        load_mimic3(mimic3)


def test_dotted_codes_are_normalised_and_said_so(mimic3):
    edit(mimic3 / "DIAGNOSES_ICD.csv", lambda df: df.assign(
        icd9_code=df.icd9_code.where(df.icd9_code != "4019", "401.9")))
    with pytest.warns(UserWarning, match="401.9"):
        c = load_mimic3(mimic3)
    assert "4019" in set(c.events.code) and c.n_events == 1761


def test_nan_and_empty_codes_are_dropped(mimic3):
    def blank(df):
        df.loc[0, "icd9_code"] = ""
        df.loc[1, "icd9_code"] = "nan"
        return df
    edit(mimic3 / "DIAGNOSES_ICD.csv", blank)
    c = load_mimic3(mimic3)
    assert c.n_events == 1759 and not c.events.code.isin(["nan", ""]).any()


def test_duplicate_rows_are_collapsed(mimic3):
    edit(mimic3 / "DIAGNOSES_ICD.csv", lambda df: pd.concat([df, df.iloc[:10]]))
    assert load_mimic3(mimic3).n_events == 1761


def test_admissions_without_diagnoses_are_not_visits(mimic3):
    edit(mimic3 / "ADMISSIONS.csv", lambda df: pd.concat([df, df.iloc[[0]].assign(
        hadm_id="999999", admittime="2199-01-01 00:00:00")], ignore_index=True))
    assert load_mimic3(mimic3).n_visits == 129


def test_diagnosis_without_admission_is_an_error(mimic3):
    edit(mimic3 / "DIAGNOSES_ICD.csv", lambda df: df.assign(hadm_id=df.hadm_id.where(df.index != 5, "1")))
    with pytest.raises(CohortError, match=r"hadm_id.*line 7.*'?1'? has no admission"):
        load_mimic3(mimic3)


def test_unparsable_date_is_named(mimic3):
    edit(mimic3 / "ADMISSIONS.csv", lambda df: df.assign(admittime=df.admittime.where(df.index != 3, "not a date")))
    with pytest.raises(CohortError, match="admittime.*line 5.*not a date"):
        load_mimic3(mimic3)


def test_subject_missing_from_patients_is_an_error(mimic3):
    edit(mimic3 / "PATIENTS.csv", lambda df: df[df.subject_id != "10006"])
    with pytest.raises(CohortError, match="10006.*no patient"):
        load_mimic3(mimic3)


def test_empty_cohort_is_an_error(mimic3):
    edit(mimic3 / "DIAGNOSES_ICD.csv", lambda df: df.iloc[:0])
    with pytest.raises(CohortError, match="empty cohort"):
        load_mimic3(mimic3)


def test_non_utf8_file_is_named(mimic3):
    raw = (mimic3 / "DIAGNOSES_ICD.csv").read_bytes()
    (mimic3 / "DIAGNOSES_ICD.csv").write_bytes(raw + b"999,10006,142345,99,40\xe91\n")
    with pytest.raises(CohortError, match="DIAGNOSES_ICD.csv.*UTF-8"):
        load_mimic3(mimic3)


# ---------------------------------------------------------------- long format

RELEASED_FORMATS = {
    # the column layouts of the paper's released synthetic CSVs (REFERENCES.md)
    "halo.csv": "SUBJECT_ID,HADM_ID,ICD9_CODE\npatient_0,1,4019\npatient_0,1,0389\npatient_0,2,4019\npatient_1,1,V5861\n",
    "gpt.csv": "SUBJECT_ID,HADM_ID,ICD9_CODE\n0,0,4019\n0,0,4019\n0,1,nan\n0,10,0389\n0,2,25000\n1,0,V5861\n",
    "corgan.csv": "SUBJECT_ID,ICD9_CODE,HADM_ID\nSYNTHETIC_000001,0389,0\nSYNTHETIC_000001,4019,0\nSYNTHETIC_000002,V5861,0\n",
    "medgan.csv": "SUBJECT_ID,ICD9_CODE\nS1,0389\nS1,4019\nS2,E8781\n",
}


@pytest.mark.parametrize("name", sorted(RELEASED_FORMATS))
def test_read_long_accepts_the_released_formats(tmp_path, name):
    p = tmp_path / name
    p.write_text(RELEASED_FORMATS[name])
    c = read_long(p).validate()
    assert c.n_patients == 2
    assert not c.events.code.isin(["nan"]).any()
    assert c.events.code.str.match(r"^[0-9VE]").all()


def test_read_long_orders_numeric_visits_numerically(tmp_path):
    p = tmp_path / "gpt.csv"
    p.write_text(RELEASED_FORMATS["gpt.csv"])
    recs = read_long(p).records()
    assert recs[0] == [["4019"], ["25000"], ["0389"]]  # visit 1 held only 'nan': gone; 2 before 10


def test_read_long_without_visit_column_gives_one_visit_per_patient(tmp_path):
    p = tmp_path / "medgan.csv"
    p.write_text(RELEASED_FORMATS["medgan.csv"])
    s = summary(read_long(p))
    assert s["visits"] == s["patients"] == 2


def test_read_long_maps_index_coded_files(tmp_path):
    p = tmp_path / "halo_idx.csv"
    p.write_text("patient_id,visit_id,code\n0,0,1\n0,0,0\n1,0,2\n")
    c = read_long(p, code_map=["0389", "4019", "V5861"])
    assert c.records() == [[["0389", "4019"]], [["V5861"]]]
    with pytest.raises(CohortError, match="index '2'"):
        read_long(p, code_map=["0389", "4019"])


def test_read_long_missing_code_column_lists_accepted_names(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("SUBJECT_ID,HADM_ID\n1,1\n")
    with pytest.raises(CohortError, match="icd9_code"):
        read_long(p)


def test_read_long_round_trips_a_saved_cohort(tmp_path, small_cohort):
    back = read_long(small_cohort.save(tmp_path / "c.parquet"))
    pd.testing.assert_frame_equal(back.events, small_cohort.events)
    assert back.demographics is not None
