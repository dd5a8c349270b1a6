"""MEDS in and out: load_meds, write_meds, meds:PATH, the dataset's splits, bad datasets."""
import json
import warnings

import meds
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import MIMIC3_DEMO, MIMIC4_DEMO, needs_demo
from ehrlib.cohort import Cohort, CohortError, CohortWarning
from ehrlib.data import load, load_meds, load_mimic3, load_mimic4, meds_splits, simulate, write_meds


def _validate_with_meds(root):
    """Every file of a MEDS dataset, checked by the ``meds`` package's own schemas."""
    shards = sorted((root / meds.data_subdirectory).rglob("*.parquet"))
    assert shards
    for shard in shards:
        meds.DataSchema.validate(pq.read_table(shard))
    meds.CodeMetadataSchema.validate(pq.read_table(root / meds.code_metadata_filepath))
    meds.SubjectSplitSchema.validate(pq.read_table(root / meds.subject_splits_filepath))
    dataset = json.loads((root / meds.dataset_metadata_filepath).read_text())
    meds.DatasetMetadataSchema.validate(dataset)
    return dataset


def _write_shard(path, frame, **types):
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("subject_id", types.get("subject_id", pa.int64())),
                        ("time", types.get("time", pa.timestamp("us"))), ("code", types.get("code", pa.string())),
                        *[(c, pa.int64()) for c in frame.columns if c not in ("subject_id", "time", "code")]])
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


def _mimic4_etl(raw, out, n_shards=2):
    """A MEDS dataset from the raw MIMIC-IV demo by the MIMIC-IV MEDS ETL's conventions: MEDS_BIRTH
    at 1 January of anchor_year - anchor_age, GENDER//<sex> without time, MEDS_DEATH at dod,
    HOSPITAL_ADMISSION//<type>//<location> at admittime and HOSPITAL_DISCHARGE//<location> at
    dischtime with hadm_id, DIAGNOSIS//ICD//<version>//<code> at the admission's dischtime with
    hadm_id; subjects sharded, sorted by time."""
    hosp = raw / "hosp"
    patients = pd.read_csv(hosp / "patients.csv.gz")
    adm = pd.read_csv(hosp / "admissions.csv.gz", parse_dates=["admittime", "dischtime"])
    dx = pd.read_csv(hosp / "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    dx = dx.merge(adm[["hadm_id", "dischtime"]], on="hadm_id")
    frames = [
        pd.DataFrame({"subject_id": patients["subject_id"], "time": pd.to_datetime(
            (patients["anchor_year"] - patients["anchor_age"]).astype(str), format="%Y"), "code": "MEDS_BIRTH"}),
        pd.DataFrame({"subject_id": patients["subject_id"], "time": pd.NaT, "code": "GENDER//" + patients["gender"]}),
        pd.DataFrame({"subject_id": patients["subject_id"], "time": pd.to_datetime(patients["dod"]),
                      "code": "MEDS_DEATH"}).dropna(subset=["time"]),
        pd.DataFrame({"subject_id": adm["subject_id"], "time": adm["admittime"], "hadm_id": adm["hadm_id"],
                      "code": "HOSPITAL_ADMISSION//" + adm["admission_type"] + "//" + adm["admission_location"].fillna("UNK")}),
        pd.DataFrame({"subject_id": adm["subject_id"], "time": adm["dischtime"], "hadm_id": adm["hadm_id"],
                      "code": "HOSPITAL_DISCHARGE//" + adm["discharge_location"].fillna("UNK")}),
        pd.DataFrame({"subject_id": dx["subject_id"], "time": dx["dischtime"], "hadm_id": dx["hadm_id"],
                      "code": "DIAGNOSIS//ICD//" + dx["icd_version"].astype(str) + "//" + dx["icd_code"].str.strip()}),
        pd.DataFrame({"subject_id": adm["subject_id"], "time": adm["admittime"], "hadm_id": adm["hadm_id"],
                      "code": "LAB//50912//mg/dL"}),
    ]
    events = pd.concat(frames, ignore_index=True)
    events["hadm_id"] = events["hadm_id"].astype("Int64")
    events = events.sort_values(["subject_id", "time"], na_position="first", kind="stable")
    subjects = np.sort(events["subject_id"].unique())
    for i, part in enumerate(np.array_split(subjects, n_shards)):
        _write_shard(out / "data" / f"train/{i}.parquet", events[events["subject_id"].isin(part)])
    return out


# ---------------------------------------------------------------------------- MEDS in
@needs_demo
def test_mimic4_etl_dataset_loads_into_the_cohort_of_load_mimic4(tmp_path):
    root = _mimic4_etl(MIMIC4_DEMO, tmp_path / "meds")
    with pytest.warns(CohortWarning, match="LAB 100|HOSPITAL_DISCHARGE"):
        via_meds = load_meds(root)
    raw = load_mimic4(MIMIC4_DEMO)
    assert via_meds.n_patients == raw.n_patients > 50
    pd.testing.assert_frame_equal(via_meds.events, raw.events)
    pd.testing.assert_frame_equal(via_meds.demographics, raw.demographics)
    assert via_meds.checksum() == raw.checksum()


@needs_demo
def test_mimic4_etl_icd10_part_matches_load_mimic4_icd10(tmp_path):
    root = _mimic4_etl(MIMIC4_DEMO, tmp_path / "meds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CohortWarning)
        assert load_meds(root, icd_version=10).checksum() == load_mimic4(MIMIC4_DEMO, icd_version=10).checksum()


@needs_demo
def test_meds_path_is_a_data_source(tmp_path):
    root = _mimic4_etl(MIMIC4_DEMO, tmp_path / "meds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CohortWarning)
        assert load(f"meds:{root}").checksum() == load_mimic4(MIMIC4_DEMO).checksum()
        assert load(f"meds-icd10:{root}").checksum() == load_mimic4(MIMIC4_DEMO, icd_version=10).checksum()


def _events(rows):
    return pd.DataFrame(rows, columns=["subject_id", "time", "code"]).assign(time=lambda d: pd.to_datetime(d["time"], format="ISO8601"))


def test_diagnosis_forms_of_the_etls_are_recognised_and_other_codes_counted(tmp_path):
    _write_shard(tmp_path / "data" / "0.parquet", _events([
        (1, "2100-01-01", "DIAGNOSIS//ICD//9//4019"),
        (1, "2100-01-01", "ICD9CM//25000"),
        (1, "2100-01-01", "ICD9CM/427.31"),
        (1, "2100-01-01", "LAB//123"),
        (2, "2100-02-01", "diagnosis//icd//9//v5861"),
        (2, "2100-02-01", "DIAGNOSIS//ICD//10//I10"),
    ]))
    with pytest.warns(CohortWarning) as caught:
        cohort = load_meds(tmp_path)
    said = " ".join(str(w.message) for w in caught)
    assert "LAB 1" in said and "ICD-10 diagnoses 1" in said
    assert cohort.records() == [[["25000", "4019", "42731"]], [["V5861"]]]


def test_visits_group_timestamps_without_admission_events(tmp_path):
    _write_shard(tmp_path / "data" / "0.parquet", _events([
        (1, "2100-03-01", "ICD9CM//4019"), (1, "2100-01-01", "ICD9CM//25000"), (1, "2100-01-01", "ICD9CM//4280"),
    ]))
    assert load_meds(tmp_path).records() == [[["25000", "4280"], ["4019"]]]


def test_visits_follow_admission_events_without_an_admission_column(tmp_path):
    _write_shard(tmp_path / "data" / "0.parquet", _events([
        (1, "2100-01-01 08:00", "HOSPITAL_ADMISSION//EW EMER.//ER"),
        (1, "2100-01-03", "ICD9CM//25000"), (1, "2100-01-05", "ICD9CM//4280"),   # one stay, two times
        (1, "2100-06-01", "HOSPITAL_ADMISSION"), (1, "2100-06-02", "ICD9CM//4019"),
    ]))
    assert load_meds(tmp_path).records() == [[["25000", "4280"], ["4019"]]]


def test_demographics_come_from_birth_and_gender_codes(tmp_path):
    _write_shard(tmp_path / "data" / "0.parquet", _events([
        (7, None, "GENDER//M"), (7, "2030-06-15", "MEDS_BIRTH"), (7, "2100-06-14", "ICD9CM//4019"),
    ]))
    demo = load_meds(tmp_path).demographics
    assert demo.to_dict("records") == [{"subject_id": "7", "age": 69.0, "sex": "M"}]


def test_no_data_folder_is_refused(tmp_path):
    with pytest.raises(CohortError, match="no data/ folder"):
        load_meds(tmp_path)


def test_a_subject_split_across_shards_is_refused_naming_both_files(tmp_path):
    _write_shard(tmp_path / "data" / "a.parquet", _events([(1, "2100-01-01", "ICD9CM//4019")]))
    _write_shard(tmp_path / "data" / "b.parquet", _events([(1, "2100-02-01", "ICD9CM//25000")]))
    with pytest.raises(CohortError, match=r"subject 1 is in two shards, .*a\.parquet and .*b\.parquet"):
        load_meds(tmp_path)


def test_a_string_subject_id_column_is_refused_with_the_meds_type(tmp_path):
    frame = _events([("p1", "2100-01-01", "ICD9CM//4019")])
    _write_shard(tmp_path / "data" / "0.parquet", frame, subject_id=pa.string())
    with pytest.raises(CohortError, match=r"0\.parquet: column 'subject_id' has type string; expected int64"):
        load_meds(tmp_path)


def test_a_dataset_without_diagnosis_codes_is_refused_listing_what_it_has(tmp_path):
    _write_shard(tmp_path / "data" / "0.parquet", _events([(1, "2100-01-01", "LAB//1"), (1, None, "GENDER//F")]))
    with pytest.raises(CohortError, match=r"no ICD-9 diagnosis codes among 2 events \(code families: .*LAB 1"):
        load_meds(tmp_path)


# ---------------------------------------------------------------------------- MEDS out
@needs_demo
def test_mimic3_demo_round_trips_through_meds_identically(tmp_path):
    cohort = load_mimic3(MIMIC3_DEMO)
    dataset = _validate_with_meds(write_meds(cohort, tmp_path / "meds"))
    assert dataset["ehrlib"]["patients"] == cohort.n_patients
    with warnings.catch_warnings():
        warnings.simplefilter("error", CohortWarning)  # nothing written is left out on reading
        back = load_meds(tmp_path / "meds")
    pd.testing.assert_frame_equal(back.events, cohort.events)
    pd.testing.assert_frame_equal(back.demographics, cohort.demographics)
    assert back.checksum() == cohort.checksum()


def test_every_written_code_has_a_description(tmp_path):
    cohort = simulate(80, seed=3)
    write_meds(cohort, tmp_path / "m")
    codes = pq.read_table(tmp_path / "m" / meds.code_metadata_filepath).to_pandas()
    data = pd.concat(pq.read_table(p).to_pandas() for p in (tmp_path / "m" / "data").glob("*.parquet"))
    assert set(data["code"]) <= set(codes["code"])
    assert codes["description"].notna().all() and (codes["description"].str.len() > 0).all()
    title = codes.set_index("code").loc["DIAGNOSIS//ICD//9//4019", "description"] \
        if "DIAGNOSIS//ICD//9//4019" in set(codes["code"]) else None
    assert title is None or "hypertension" in title.lower()


def test_synthetic_cohort_is_written_with_its_provenance_and_time_convention(tmp_path):
    synthetic = Cohort.from_visits([[["4019", "25000"], ["4280"]], [["V5861"]]])
    dataset = _validate_with_meds(write_meds(synthetic, tmp_path / "s", generator="markov", profile="smoke", seed=4,
                                             commit="abc123"))
    info = dataset["ehrlib"]
    assert (info["generator"], info["profile"], info["seed"], info["commit"]) == ("markov", "smoke", 4, "abc123")
    assert "plus v days" in info["time_convention"] and "1..N" in info["subject_id_convention"]
    back = load_meds(tmp_path / "s")
    assert back.records() == synthetic.records()
    assert list(back.subject_ids) == ["1", "2"]


def test_splits_are_written_and_read_back_as_train_holdout_reference(tmp_path):
    from ehrlib.data import make_splits

    cohort = simulate(200, seed=2)
    splits = make_splits(cohort, 30, 20, seed=0)
    write_meds(cohort, tmp_path / "m", splits=splits)
    table = pq.read_table(tmp_path / "m" / meds.subject_splits_filepath).to_pandas()
    assert table["split"].value_counts().to_dict() == {"train": 150, "held_out": 30, "tuning": 20}
    back = meds_splits(tmp_path / "m", load_meds(tmp_path / "m"))
    assert {k: sorted(v.subject_ids) for k, v in back.items()} == {k: sorted(v.subject_ids) for k, v in splits.items()}


def test_write_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(CohortError, match="refusing to replace it"):
        write_meds(simulate(20, seed=0), tmp_path / "mine")
    write_meds(simulate(20, seed=0), tmp_path / "again")
    write_meds(simulate(30, seed=0), tmp_path / "again")  # its own output may be replaced
    assert load_meds(tmp_path / "again").n_patients == 30


# ---------------------------------------------------------------------------- ehrbench export
def _run_with_cohorts(tmp_path, monkeypatch):
    from ehrlib.data import make_splits
    from ehrlib.runs import open_run

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    run = open_run("r")
    cohort = simulate(200, seed=5)
    splits = make_splits(cohort, 40, 30, seed=1)
    run.save_splits(**splits)
    run.update_manifest(lambda m: m.setdefault("stages", {}).update({
        "00_data": {"params": {"data": "simulated", "profile": "smoke", "seed": 1}},
        "15_reference_generators": {"results": {"holds_real_records": ["memorizer"]}},
        "20_generate": {"params": {"profile": "smoke", "seed": 3}, "outputs": ["synthetic/markov.parquet"]}}))
    run.save_synthetic("markov", Cohort.from_visits([[["4019"], ["25000", "4280"]]] * 5))
    run.save_synthetic("memorizer", splits["train"].renamed())
    return run, splits


def test_export_writes_a_runs_real_splits_as_one_valid_dataset(tmp_path, monkeypatch):
    from ehrlib.cli import main

    run, splits = _run_with_cohorts(tmp_path, monkeypatch)
    assert main(["export", "--format", "meds", "--run", "r", "--what", "real", "--out", str(tmp_path / "real")]) == 0
    dataset = _validate_with_meds(tmp_path / "real")
    assert (dataset["ehrlib"]["profile"], dataset["ehrlib"]["seed"]) == ("smoke", 1)
    back = meds_splits(tmp_path / "real", load_meds(tmp_path / "real"))
    for name, part in splits.items():
        assert back[name].checksum() == part.checksum()


def test_export_writes_every_synthetic_cohort_of_a_run_naming_its_generator(tmp_path, monkeypatch):
    from ehrlib.cli import main

    run, _ = _run_with_cohorts(tmp_path, monkeypatch)
    assert main(["export", "--format", "meds", "--run", "r", "--out", str(tmp_path / "syn")]) == 0
    dataset = _validate_with_meds(tmp_path / "syn" / "markov")
    assert dataset["ehrlib"]["generator"] == "markov" and dataset["ehrlib"]["synthetic"] is True
    assert (dataset["ehrlib"]["profile"], dataset["ehrlib"]["seed"]) == ("smoke", 3)
    assert "commit" in dataset["ehrlib"]
    assert load_meds(tmp_path / "syn" / "markov").records() == run.synthetic()["markov"].records()
    assert not (tmp_path / "syn" / "memorizer").exists()  # real patients' records: only when asked
    assert main(["export", "--format", "meds", "--run", "r", "--out", str(tmp_path / "all"),
                 "--include-real-records"]) == 0
    assert _validate_with_meds(tmp_path / "all" / "memorizer")["ehrlib"]["real_records"] is True


def test_export_writes_a_cohort_file(tmp_path):
    from ehrlib.cli import main

    cohort = simulate(50, seed=0)
    cohort.save(tmp_path / "c.parquet")
    assert main(["export", "--format", "meds", "--cohort", str(tmp_path / "c.parquet"), "--out", str(tmp_path / "m")]) == 0
    _validate_with_meds(tmp_path / "m")
    assert load_meds(tmp_path / "m").checksum() == cohort.checksum()


def test_stats_reads_a_meds_dataset(tmp_path, capsys):
    from ehrlib.cli import main

    write_meds(simulate(40, seed=0), tmp_path / "m")
    assert main(["stats", f"meds:{tmp_path / 'm'}"]) == 0
    assert "40" in capsys.readouterr().out


def test_a_run_can_take_its_splits_from_the_meds_dataset(tmp_path):
    from ehrlib import pipeline
    from ehrlib.data import make_splits
    from ehrlib.errors import ConfigError
    from ehrlib.runs import Stage, open_run

    cohort = simulate(200, seed=4)
    splits = make_splits(cohort, 30, 20, seed=2)
    write_meds(cohort, tmp_path / "m", splits=splits)
    run = open_run("r", root=tmp_path / "runs")
    stage = Stage("00_data", run, "smoke", 0, {"data": f"meds:{tmp_path / 'm'}"})
    made = pipeline.split_cohort(stage, load(f"meds:{tmp_path / 'm'}"), split="meds")
    assert {k: v.checksum() for k, v in made.items()} == {k: v.checksum() for k, v in splits.items()}
    assert run.load_split("holdout").checksum() == splits["holdout"].checksum()
    with pytest.raises(ConfigError, match="split='meds' .* expected data='meds:PATH'"):
        pipeline.split_cohort(Stage("00_data", run, "smoke", 0, {"data": "simulated"}), cohort, split="meds")


def test_icd9_diagnoses_that_are_icd10_or_lost_their_zeros_are_reported(tmp_path):
    """The prefix says ICD-9; the same code-kind checks as the long-format and MIMIC readers run on
    the codes behind it."""
    _write_shard(tmp_path / "data" / "0.parquet", _events([
        (1, "2100-01-01", "ICD9CM//389"), (1, "2100-01-01", "ICD9CM//4019"),
        (2, "2100-02-01", "ICD9CM//E119"), (2, "2100-02-01", "ICD9CM//845"),
    ]))
    with pytest.warns(CohortWarning) as caught:
        cohort = load_meds(tmp_path)
    said = " ".join(str(w.message) for w in caught)
    assert f"MEDS dataset {tmp_path}" in said
    assert "'389' for '0389'" in said and "lost their leading zeros" in said
    assert "'E119'" in said and "icd_version=10" in said
    assert cohort.n_events == 4  # reported, not dropped


# ---------------------------------------------------------------------------- writers delete only what they wrote
def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_a_written_dataset_lists_its_files_and_a_rewrite_replaces_only_them(tmp_path):
    write_meds(simulate(20, seed=0), tmp_path / "m")
    listed = json.loads((tmp_path / "m" / meds.dataset_metadata_filepath).read_text())["ehrlib"]["files"]
    assert sorted(listed) == [f for f in _files(tmp_path / "m") if (tmp_path / "m" / f).is_file()]
    write_meds(simulate(30, seed=1), tmp_path / "m")
    assert load_meds(tmp_path / "m").n_patients == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # nothing left beside it


@pytest.mark.parametrize("added, named", [("README.md", "README.md"), ("task_labels/mortality.parquet", "task_labels"),
                                          ("metadata/notes.txt", "metadata/notes.txt"), ("data/extra/", "data/extra")])
def test_a_file_the_user_added_to_an_export_is_never_deleted(tmp_path, added, named):
    write_meds(simulate(20, seed=0), tmp_path / "m")
    target = tmp_path / "m" / added
    if added.endswith("/"):
        target.mkdir(parents=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("mine")
    before = {f: (tmp_path / "m" / f).read_bytes() if (tmp_path / "m" / f).is_file() else None
              for f in _files(tmp_path / "m")}
    with pytest.raises(CohortError, match=f"holds {named}, which write_meds did not write"):
        write_meds(simulate(30, seed=1), tmp_path / "m")
    after = {f: (tmp_path / "m" / f).read_bytes() if (tmp_path / "m" / f).is_file() else None
             for f in _files(tmp_path / "m")}
    assert after == before


def test_export_into_the_current_folder_or_above_it_is_refused(tmp_path, monkeypatch):
    from ehrlib.cli import main

    write_meds(simulate(20, seed=0), tmp_path / "old")
    simulate(25, seed=2).save(tmp_path / "c2.parquet")
    monkeypatch.chdir(tmp_path / "old")
    before = _files(tmp_path)
    for out in (".", "..", str(tmp_path / "old")):
        with pytest.raises(CohortError, match="the current folder or a folder above it"):
            write_meds(simulate(10, seed=0), out)
        assert main(["export", "--format", "meds", "--cohort", "../c2.parquet", "--out", out]) == 2
    assert _files(tmp_path) == before and load_meds(tmp_path / "old").n_patients == 20


def test_a_symbolic_link_is_never_followed_or_replaced(tmp_path):
    write_meds(simulate(20, seed=0), tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(CohortError, match="is a symbolic link"):
        write_meds(simulate(30, seed=0), tmp_path / "link")
    (tmp_path / "real" / "data" / "mine.parquet").symlink_to(tmp_path / "outside.parquet")
    (tmp_path / "outside.parquet").write_text("mine")
    with pytest.raises(CohortError, match="a symbolic link write_meds did not make"):
        write_meds(simulate(30, seed=0), tmp_path / "real")
    assert (tmp_path / "outside.parquet").read_text() == "mine" and (tmp_path / "real" / "data" / "mine.parquet").is_symlink()
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / meds.dataset_metadata_filepath).is_file()


def test_one_export_never_nests_in_another(tmp_path, monkeypatch):
    from ehrlib.cli import main

    run, _ = _run_with_cohorts(tmp_path, monkeypatch)
    out = str(tmp_path / "out")
    assert main(["export", "--format", "meds", "--run", "r", "--what", "real", "--out", out]) == 0
    before = _files(tmp_path / "out")
    assert main(["export", "--format", "meds", "--run", "r", "--what", "synthetic", "--out", out]) == 2
    with pytest.raises(CohortError, match="refusing to nest"):
        write_meds(simulate(10, seed=0), tmp_path / "out" / "inner")
    assert _files(tmp_path / "out") == before
    assert main(["export", "--format", "meds", "--run", "r", "--what", "real", "--out", out]) == 0  # its own: replaced
    assert main(["export", "--format", "meds", "--run", "r", "--out", str(tmp_path / "syn")]) == 0
    assert main(["export", "--format", "meds", "--run", "r", "--what", "real", "--out", str(tmp_path / "syn")]) == 2
    assert (tmp_path / "syn" / "markov" / "metadata" / "dataset.json").is_file()


def test_export_of_a_meds_dataset_keeps_its_splits(tmp_path):
    from ehrlib.cli import main
    from ehrlib.data import make_splits

    cohort = simulate(100, seed=1)
    write_meds(cohort, tmp_path / "m", splits=make_splits(cohort, 20, 10, seed=0))
    assert main(["export", "--format", "meds", "--cohort", f"meds:{tmp_path / 'm'}", "--out", str(tmp_path / "n")]) == 0
    a = pq.read_table(tmp_path / "m" / meds.subject_splits_filepath).to_pandas().sort_values("subject_id")
    b = pq.read_table(tmp_path / "n" / meds.subject_splits_filepath).to_pandas().sort_values("subject_id")
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True))
    assert main(["export", "--format", "meds", "--cohort", f"meds:{tmp_path / 'm'}", "--out", str(tmp_path / "m")]) == 2


def test_splits_must_cover_every_subject_once_unless_told(tmp_path):
    cohort = simulate(30, seed=0)
    ids = list(cohort.subject_ids)
    with pytest.raises(CohortError, match="is in no split .*rest='train'"):
        write_meds(cohort, tmp_path / "a", splits={"train": ids[:20], "holdout": ids[20:25]})
    with pytest.raises(CohortError, match="in two splits"):
        write_meds(cohort, tmp_path / "b", splits={"train": ids[:20], "holdout": ids[15:]})
    write_meds(cohort, tmp_path / "c", splits={"train": ids[:20], "holdout": ids[20:25]}, rest="reference")
    table = pq.read_table(tmp_path / "c" / meds.subject_splits_filepath).to_pandas()
    assert table["split"].value_counts().to_dict() == {"train": 20, "held_out": 5, "tuning": 5}
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_ages_above_89_round_trip_exactly_and_others_are_reported(tmp_path):
    cohort = simulate(20, seed=0)
    demo = cohort.demographics.copy()
    demo.loc[0, "age"], demo.loc[1, "age"] = 95.0, 120.0
    old = Cohort(cohort.events, demo, "t")
    write_meds(old, tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CohortWarning)
        back = load_meds(tmp_path / "m")
    pd.testing.assert_frame_equal(back.demographics, old.demographics)
    meta = tmp_path / "m" / meds.dataset_metadata_filepath  # the same data, not written by ehrlib
    meta.write_text(meta.read_text().replace('"ehrlib.write_meds"', '"another_etl"'))
    with pytest.warns(CohortWarning, match=r"2 subject\(s\) older than 89 .* read as 90 .*: 95\)"):
        load_meds(tmp_path / "m")


def test_a_dataset_written_before_files_were_listed_is_replaced_only_when_it_holds_its_layout(tmp_path):
    write_meds(simulate(20, seed=0), tmp_path / "m")
    meta = tmp_path / "m" / meds.dataset_metadata_filepath
    old = json.loads(meta.read_text())
    del old["ehrlib"]["files"]  # as an earlier ehrlib wrote it
    meta.write_text(json.dumps(old))
    (tmp_path / "m" / "data" / "notes.txt").write_text("mine")
    with pytest.raises(CohortError, match="holds data/notes.txt"):
        write_meds(simulate(30, seed=0), tmp_path / "m")
    (tmp_path / "m" / "data" / "notes.txt").unlink()
    write_meds(simulate(30, seed=0), tmp_path / "m")
    assert load_meds(tmp_path / "m").n_patients == 30
