"""MEDS in and out: a MEDS >= 0.4 dataset <-> Cohort.

A MEDS dataset (the Medical Event Data Standard, PyPI ``meds``) is a folder with
``data/**/*.parquet`` (one row per event: ``subject_id`` int64, ``time`` timestamp, ``code``
string), ``metadata/codes.parquet``, ``metadata/dataset.json`` and
``metadata/subject_splits.parquet``. The Cohort schema of the paper (section 2.1) maps onto it
one to one; this module does both directions and is described on the book's reproducing page.

**Reading** (:func:`load_meds`):

* *Diagnosis codes* are the events whose code starts with one of :data:`DIAGNOSIS_PREFIXES`
  (case-insensitive; longest prefix first): the MIMIC-IV MEDS ETL's ``DIAGNOSIS//ICD//9//5723``,
  ``ICD9CM//5723`` and ``ICD9CM/572.3`` (meds_etl, OMOP vocabulary names), and their ICD-10
  forms. The rest of the code is the ICD code (dots removed, see
  :func:`ehrlib.cohort.normalise_codes`). Pass ``prefixes={"DX//": 9}`` for another ETL's form.
  Diagnoses of the other ICD version and every other code (labs, procedures, discharges, ...)
  are left out and counted in one :class:`~ehrlib.cohort.CohortWarning` by the code's first part;
  admission, sex and birth events are read for the visits and demographics below. Only these
  events reach pandas: each shard is filtered in Arrow first, so large datasets read quickly.
* *Visits*: when the data has a ``hadm_id`` column (the MIMIC ETLs' admission key; another name
  with ``visit_column=``) with a value on the diagnosis rows, a visit is a ``hadm_id``, at the
  time of its admission event (a code in :data:`ADMISSION_CODES`), else at the earliest event
  carrying that ``hadm_id``. Without such a column, a diagnosis belongs to the subject's last
  admission event at or before its time; without admission events at all, diagnoses sharing one
  timestamp form one visit. Diagnoses these rules cannot place (no ``hadm_id`` where the column
  is used, no time, before the first admission) are left out and counted in the warning.
* *Demographics*: sex from ``GENDER//F`` / ``GENDER//M`` (or ``SEX//...``); age at the first
  admission (with or without diagnoses, as the MIMIC loaders take it) from the ``MEDS_BIRTH``
  event, in whole years by calendar date, with the MIMIC rules of
  :func:`ehrlib.data.mimic3.assemble` (ages above 89 become 90). Missing ones stay missing.
* *Splits*: :func:`meds_splits` reads ``metadata/subject_splits.parquet``: ``train`` is the
  train split, ``held_out`` the holdout, ``tuning`` the reference split.

**Writing** (:func:`write_meds`): see its docstring for the conventions (visit times, subject
ids, code metadata); they are also written into ``metadata/dataset.json`` under ``"ehrlib"``.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.cohort import AGE, CODE, SEX, SUBJECT, VISIT, Cohort, CohortError, CohortWarning, short
from ehrlib.errors import ConfigError
from ehrlib.data.icd9 import check_code_kinds
from ehrlib.data.tables import as_path

#: Code prefixes that mark a diagnosis, and the ICD version of the code after them.
DIAGNOSIS_PREFIXES: dict[str, int] = {
    "DIAGNOSIS//ICD//9//": 9, "DIAGNOSIS//ICD//10//": 10,          # MIMIC-IV MEDS ETL (MEDS-Extract)
    "DIAGNOSIS//ICD9CM//": 9, "DIAGNOSIS//ICD10CM//": 10,
    "DIAGNOSIS//ICD9//": 9, "DIAGNOSIS//ICD10//": 10,
    "ICD9CM//": 9, "ICD10CM//": 10,                                  # vocabulary-named codes
    "ICD9CM/": 9, "ICD10CM/": 10,                                    # meds_etl's OMOP concept codes
    "ICD9//": 9, "ICD10//": 10,
}
#: Codes of admission events (exactly, or followed by ``//``): the MIMIC-IV ETL writes
#: ``HOSPITAL_ADMISSION//<type>//<location>`` at ``admittime``.
ADMISSION_CODES = ("HOSPITAL_ADMISSION",)
#: Sex codes (upper-cased) and the Cohort's sex value.
SEX_CODES = {"GENDER//F": "F", "GENDER//M": "M", "SEX//F": "F", "SEX//M": "M"}
#: The admission key column of the MIMIC ETLs.
VISIT_COLUMN = "hadm_id"
#: MEDS split names -> the run's splits (and back, for :func:`write_meds`).
SPLIT_NAMES = {"train": "train", "held_out": "holdout", "tuning": "reference"}
#: The time of visit 0 of every subject in a written dataset; visit ``v`` is ``v`` days later.
VISIT_EPOCH = pd.Timestamp("2000-01-01")
#: The code written for each visit (at the visit's time) by :func:`write_meds`.
VISIT_CODE = "HOSPITAL_ADMISSION"
#: The ETL name written into ``dataset.json``; a folder carrying it may be replaced by a new write.
ETL_NAME = "ehrlib.write_meds"


def _meds():
    try:
        import meds
    except ModuleNotFoundError:
        raise ConfigError("MEDS support needs the package 'meds' (0.4.x): pip install 'ehrlib[meds]'") from None
    return meds


# ---------------------------------------------------------------------------- reading
def _shards(root: Path) -> list[Path]:
    if not root.is_dir():
        raise CohortError(f"MEDS dataset {root}: no such folder")
    data = root / _meds().data_subdirectory
    if not data.is_dir():
        raise CohortError(f"MEDS dataset {root}: no data/ folder; expected data/**/*.parquet (MEDS >= 0.4 layout)")
    shards = sorted(p for p in data.rglob("*.parquet") if p.is_file())
    if not shards:
        raise CohortError(f"MEDS dataset {root}: data/ holds no .parquet file; expected data/**/*.parquet")
    return shards


def _kind_ok(column: str, arrow_type) -> bool:
    import pyarrow as pa

    if column == SUBJECT:
        return pa.types.is_integer(arrow_type)
    if column == "time":
        return pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type)
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


@dataclass
class _Shards:
    """What reading keeps of a dataset: the events ehrlib reads (diagnoses, admissions, sex,
    birth), the count of every other event by code family, and per admission key its first
    time and subject over all events (labs included)."""

    kept: pd.DataFrame
    families: dict
    keys: pd.DataFrame | None
    n_events: int


def _code_matches(upper, exact, prefixes):
    import pyarrow.compute as pc

    mask = None
    for c in exact:
        m = pc.equal(upper, c.upper())
        mask = m if mask is None else pc.or_(mask, m)
    for c in prefixes:
        m = pc.starts_with(upper, pattern=c.upper())
        mask = m if mask is None else pc.or_(mask, m)
    return mask


def _family_counts(codes) -> dict:
    import pyarrow.compute as pc

    if len(codes) == 0:
        return {}
    first = pc.list_element(pc.split_pattern(codes, pattern="//", max_splits=1), 0)
    first = pc.list_element(pc.split_pattern(first, pattern="/", max_splits=1), 0)
    counts = pc.value_counts(first)
    return {str(v): int(n) for v, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())}


def _read_shard(path: Path, visit_column: str, exact, prefixes):
    """One shard, checked (MEDS column kinds, no null subject or code), filtered in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    expected = _meds().DataSchema.schema()
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise CohortError(f"{path}: not a readable parquet file ({type(exc).__name__}: {short(exc, 120)})") from None
    for column in (SUBJECT, "time", CODE):
        if column not in schema.names:
            raise CohortError(f"{path}: no column {column!r} (found {schema.names[:8]}); a MEDS data shard has "
                              f"subject_id, time and code")
        if not _kind_ok(column, schema.field(column).type):
            raise CohortError(f"{path}: column {column!r} has type {schema.field(column).type}; expected "
                              f"{expected.field(column).type} (meds.DataSchema)")
    has_key = bool(visit_column) and visit_column in schema.names
    table = pq.read_table(path, columns=[SUBJECT, "time", CODE] + ([visit_column] if has_key else []))
    if has_key:
        kind = schema.field(visit_column).type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):  # ids written as text: read as numbers
            text = pc.utf8_trim_whitespace(table[visit_column])
            bad = pc.invert(pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{1,18}$"), True))
            if pc.any(bad).as_py():
                i = pc.index(bad, True).as_py()
                raise CohortError(f"{path}: column {visit_column!r}, row {i}: {table[visit_column][i].as_py()!r} is "
                                  "not an integer admission id; expected integer ids (or no such column: diagnoses "
                                  "are then placed by their admission events)")
            table = table.set_column(table.schema.get_field_index(visit_column), visit_column,
                                     pc.cast(text, pa.int64()))
        elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            raise CohortError(f"{path}: column {visit_column!r} has type {kind}; expected integer admission ids")
    for column, what in ((SUBJECT, "subject id"), (CODE, "code")):
        nulls = pc.is_null(table[column])
        if pc.any(nulls).as_py():
            raise CohortError(f"{path}: column {column!r}, row {pc.index(nulls, True).as_py()}: missing {what} "
                              "(MEDS: never null)")
    code = table[CODE]
    if pa.types.is_dictionary(code.type):
        code = pc.cast(code, pa.string())
        table = table.set_column(table.schema.get_field_index(CODE), CODE, code)
    keep = pc.fill_null(_code_matches(pc.utf8_upper(code), exact, prefixes), False)
    families = _family_counts(pc.filter(code, pc.invert(keep)))
    keys = None
    if has_key:
        valid = table.filter(pc.is_valid(table[visit_column]))
        keys = valid.group_by(visit_column).aggregate([("time", "min"), (SUBJECT, "min")]).to_pandas()
        keys = keys.rename(columns={"time_min": "first_time", f"{SUBJECT}_min": SUBJECT})
    kept = table.filter(keep).to_pandas()
    kept["time"] = pd.to_datetime(kept["time"])
    tz = getattr(table.schema.field("time").type, "tz", None)
    return kept, families, keys, table.num_rows, pc.unique(table[SUBJECT]).to_numpy(), tz, has_key


def _read_data(root: Path, visit_column: str, exact, prefixes) -> _Shards:
    """Every shard, checked: the MEDS column kinds, and no subject in two shards."""
    kept, keys, families, n_events, owners, zones, keyed = [], [], {}, 0, [], {}, {}
    shards = _shards(root)
    for i, path in enumerate(shards):
        frame, fams, key_times, n, subjects, zones[path], keyed[path] = _read_shard(path, visit_column, exact, prefixes)
        kept.append(frame)
        if key_times is not None:
            keys.append(key_times)
        for k, v in fams.items():
            families[k] = families.get(k, 0) + v
        n_events += n
        owners.append(pd.DataFrame({SUBJECT: subjects, "_shard": i}))
    aware, naive = [p for p, z in zones.items() if z], [p for p, z in zones.items() if not z]
    if aware and naive:
        raise CohortError(f"MEDS dataset {root}: column 'time' is time-zone aware in {aware[0]} "
                          f"({zones[aware[0]]}) but naive in {naive[0]} ({len(aware)} and {len(naive)} shard(s)); "
                          "MEDS times are naive timestamps: write every shard's time without a time zone")
    if aware:
        for frame in kept:
            frame["time"] = frame["time"].dt.tz_convert("UTC").dt.tz_localize(None)
    with_key, without = [p for p, k in keyed.items() if k], [p for p, k in keyed.items() if not k]
    if with_key and without:
        raise CohortError(f"MEDS dataset {root}: {without[0]} has no column {visit_column!r} while {with_key[0]} has "
                          f"({len(without)} of {len(shards)} shard(s) lack it), so the diagnoses of its subjects "
                          f"could not be placed in visits; write {visit_column!r} in every shard, or read with "
                          "visit_column='' to place every diagnosis by its admission events")
    owners = pd.concat(owners, ignore_index=True)
    twice = owners[owners[SUBJECT].duplicated(keep=False)]
    if len(twice):
        s = twice[SUBJECT].iloc[0]
        a, b = (shards[j] for j in twice.loc[twice[SUBJECT] == s, "_shard"].iloc[:2])
        raise CohortError(f"MEDS dataset {root}: subject {s} is in two shards, {a} and {b}; MEDS keeps each "
                          f"subject's events in one shard ({twice[SUBJECT].nunique()} subject(s) in all)")
    keys = pd.concat(keys, ignore_index=True).groupby(visit_column, as_index=False).min() if keys else None
    return _Shards(pd.concat(kept, ignore_index=True), families, keys, n_events)


def _split_prefixes(codes: pd.Series, prefixes: dict[str, int]) -> tuple[pd.Series, pd.Series]:
    """(ICD version or <NA>, the code after the prefix) for each code."""
    upper = codes.astype("string").str.strip().str.upper()
    version = pd.Series(pd.NA, index=codes.index, dtype="Int64")
    rest = pd.Series(pd.NA, index=codes.index, dtype="string")
    for prefix in sorted(prefixes, key=len, reverse=True):
        hit = (version.isna() & upper.str.startswith(prefix.upper())).to_numpy(dtype=bool)
        if hit.any():
            version[hit] = prefixes[prefix]
            rest[hit] = upper[hit].str.slice(len(prefix))
    return version, rest


def _is_admission(codes: pd.Series, admission_codes) -> np.ndarray:
    upper = codes.astype("string").str.upper()
    out = np.zeros(len(codes), dtype=bool)
    for c in admission_codes:
        c = c.upper()
        out |= ((upper == c) | upper.str.startswith(c + "//")).fillna(False).to_numpy(dtype=bool)
    return out


def _family(codes: pd.Series) -> pd.Series:
    return codes.astype("string").str.split("//").str[0].str.split("/").str[0]


def load_meds(root, icd_version: int = 9, *, prefixes: dict[str, int] | None = None,
              visit_column: str = VISIT_COLUMN, admission_codes=ADMISSION_CODES) -> Cohort:
    """Load a MEDS >= 0.4 dataset's diagnoses of one ICD version as a Cohort (rules: module docstring).

    Args:
        root: the dataset folder (holding ``data/`` and ``metadata/``).
        icd_version: 9 (default, as the paper) or 10; diagnoses of the other version are left out.
        prefixes: more diagnosis prefixes (``{"DX//": 9}``), added to :data:`DIAGNOSIS_PREFIXES`.
        visit_column: the admission-key column used for visits when present (``""``: never).
        admission_codes: codes of admission events (exactly, or followed by ``//``).

    Raises:
        CohortError: no such folder or no ``data/``, a shard that is not parquet or lacks a MEDS
            column, a column of the wrong type, a subject in two shards, no diagnosis code of the
            ICD version at all, or what the Cohort rules refuse (codes, demographics).
    """
    if isinstance(icd_version, bool) or icd_version not in (9, 10):
        raise ConfigError(f"icd_version={icd_version!r}: expected 9 or 10")
    known = dict(DIAGNOSIS_PREFIXES)
    if prefixes:
        bad = {k: v for k, v in prefixes.items() if not isinstance(k, str) or not k or v not in (9, 10)}
        if bad:
            raise ConfigError(f"prefixes={bad!r}: expected code prefixes (strings) mapped to 9 or 10")
        known.update(prefixes)
    root = as_path(root, "root")
    birth_code = _meds().birth_code
    exact = [*admission_codes, *SEX_CODES, birth_code]
    shards = _read_data(root, visit_column, exact, [*known, *(f"{c}//" for c in admission_codes)])
    data = shards.kept
    version, icd = _split_prefixes(data[CODE], known)
    is_dx = version.notna().to_numpy(dtype=bool)
    mine = is_dx & (version == icd_version).fillna(False).to_numpy(dtype=bool)
    left_out = dict(shards.families)  # every event of another kind, by code family
    if not mine.any():
        seen = dict(left_out)
        for fam, n in _family(data[CODE]).value_counts().items():
            seen[str(fam)] = seen.get(str(fam), 0) + int(n)
        top = sorted(seen.items(), key=lambda kv: -kv[1])[:6]
        other = f"; {int(is_dx.sum())} are ICD-{19 - icd_version} diagnoses (pass icd_version={19 - icd_version})" \
            if is_dx.any() else ""
        raise CohortError(
            f"MEDS dataset {root}: no ICD-{icd_version} diagnosis codes among {shards.n_events} events (code families: "
            + ", ".join(f"{k} {v}" for k, v in top) + f"){other}; expected codes such as "
            f"'DIAGNOSIS//ICD//{icd_version}//...' or 'ICD{icd_version}CM//...' (ehrlib.data.medsformat."
            "DIAGNOSIS_PREFIXES; pass prefixes= for another form)")
    if (is_dx & ~mine).any():
        left_out[f"ICD-{19 - icd_version} diagnoses"] = int((is_dx & ~mine).sum())
    admit = _is_admission(data[CODE], admission_codes) & ~is_dx

    dx = pd.DataFrame({"subject_id": data[SUBJECT].to_numpy()[mine], "time": data["time"].to_numpy()[mine],
                       CODE: icd.to_numpy()[mine]})
    if icd_version == 9:  # a prefix says ICD-9, but the codes may be ICD-10 or have lost their leading zeros
        check_code_kinds(dx[CODE], f"MEDS dataset {root}", CODE)
    use_key = shards.keys is not None and data.loc[mine, visit_column].notna().any()
    if use_key:
        dx["hadm_id"] = data[visit_column].to_numpy()[mine]
        keys = shards.keys.set_index(visit_column)
        adm_rows = data[admit & data[visit_column].notna().to_numpy()]
        first_adm = adm_rows.groupby(visit_column)["time"].min()
        times = first_adm.reindex(keys.index).fillna(keys["first_time"])
        admissions = pd.DataFrame({"subject_id": keys[SUBJECT].to_numpy(), "hadm_id": keys.index.to_numpy(),
                                   "admittime": times.to_numpy()})
        unplaced = dx["hadm_id"].isna()
        why = f"no {visit_column}"
    elif admit.any():
        adm = data[admit & data["time"].notna().to_numpy()][[SUBJECT, "time"]].drop_duplicates()
        adm = adm.sort_values("time", kind="stable").reset_index(drop=True)
        adm["hadm_id"] = np.arange(len(adm), dtype=np.int64)
        placed = pd.merge_asof(dx.reset_index().dropna(subset=["time"]).sort_values("time"),
                               adm.rename(columns={SUBJECT: "subject_id"}), on="time", by="subject_id",
                               direction="backward")
        dx["hadm_id"] = placed.set_index("index")["hadm_id"].reindex(dx.index)
        admissions = adm.rename(columns={SUBJECT: "subject_id", "time": "admittime"})
        unplaced = dx["hadm_id"].isna()
        why = "no time or before the subject's first admission event"
    else:
        stamps = dx[["subject_id", "time"]].dropna().drop_duplicates().reset_index(drop=True)
        stamps["hadm_id"] = np.arange(len(stamps), dtype=np.int64)
        dx = dx.merge(stamps, on=["subject_id", "time"], how="left")
        admissions = stamps.rename(columns={"time": "admittime"})
        unplaced = dx["hadm_id"].isna()
        why = "no time"
    if unplaced.any():
        left_out[f"diagnoses with {why}"] = int(unplaced.sum())
        dx = dx[~unplaced.to_numpy()]
        if dx.empty:
            raise CohortError(f"MEDS dataset {root}: none of the ICD-{icd_version} diagnoses can be placed in a visit "
                              f"({why}); see ehrlib.data.medsformat for the visit rules")
    if left_out:
        warnings.warn(f"MEDS dataset {root}: left out {sum(left_out.values())} event(s) that are not ICD-{icd_version} "
                      "diagnoses in a visit: " + ", ".join(f"{k} {v}" for k, v in sorted(
                          left_out.items(), key=lambda kv: -kv[1])[:12]), CohortWarning, stacklevel=2)
    # every admission stays (as in the MIMIC loaders): age is taken at the first one, with or without codes
    admissions = admissions.dropna(subset=["admittime"]).reset_index(drop=True)
    dx["hadm_id"] = dx["hadm_id"].astype("int64")
    admissions["hadm_id"] = admissions["hadm_id"].astype("int64")
    patients = _patients(data, root)
    from ehrlib.data.mimic3 import assemble

    where = f"{root}/data"
    cohort = assemble(patients, admissions, dx[["subject_id", "hadm_id", CODE]],
                      paths=(f"{where} (codes MEDS_BIRTH, GENDER//)", f"{where} (admissions)", f"{where} (diagnoses)"),
                      birth="birth", source=f"{root} (MEDS, ICD-{icd_version})", icd_version=icd_version)
    demo = cohort.demographics
    if demo is not None and demo[AGE].isna().all() and demo[SEX].isna().all():
        cohort = Cohort(cohort.events, None, cohort.source)
    elif demo is not None:
        cohort = _ages_above_89(cohort, patients, admissions, root)
    return cohort


def _ages_above_89(cohort: Cohort, patients: pd.DataFrame, admissions: pd.DataFrame, root: Path) -> Cohort:
    """The MIMIC rule reads ages above 89 as 90. A dataset :func:`write_meds` wrote holds a Cohort's
    own ages (MEDS_BIRTH is the age before visit 0), so they are given back exactly; for any other
    dataset the capped ages are reported (how many, and an example)."""
    from ehrlib.data.mimic3 import MAX_AGE
    from ehrlib.data.tables import age_in_years

    first = admissions.groupby("subject_id")["admittime"].min()
    p = patients.dropna(subset=["birth"]).set_index("subject_id")
    p = p[p.index.isin(first.index)]
    if p.empty:
        return cohort
    raw = pd.Series(age_in_years(p["birth"], first.reindex(p.index)).astype(float), index=p.index.astype(str))
    capped = raw[(raw > MAX_AGE) & (raw <= 130)]
    if capped.empty:
        return cohort
    if _ehrlib_dataset(root) is not None:
        demo = cohort.demographics.copy()
        exact = demo[SUBJECT].map(capped)
        demo[AGE] = exact.fillna(demo[AGE]).astype(float)
        return Cohort(cohort.events, demo, cohort.source)
    example = capped.index[0]
    warnings.warn(f"MEDS dataset {root}: {len(capped)} subject(s) older than {MAX_AGE - 1} at their first admission "
                  f"read as {MAX_AGE} (e.g. subject {example}: {capped.iloc[0]:g}), the MIMIC rule of the MIMIC "
                  "loaders (MIMIC publishes no age above 89)", CohortWarning, stacklevel=3)
    return cohort


def _patients(data: pd.DataFrame, root: Path) -> pd.DataFrame:
    """subject_id, sex (from the sex codes) and birth (the MEDS_BIRTH time) of every subject."""
    birth_code = _meds().birth_code
    upper = data[CODE].astype("string").str.upper()
    subjects = pd.Index(pd.unique(data[SUBJECT]), name="subject_id")
    sex_rows = data[upper.isin(list(SEX_CODES)).to_numpy(dtype=bool)]
    sex = pd.DataFrame({"subject_id": sex_rows[SUBJECT].to_numpy(),
                        SEX: upper[sex_rows.index].map(SEX_CODES).to_numpy()}).drop_duplicates()
    birth_rows = data[(upper == birth_code.upper()).to_numpy(dtype=bool)]
    birth = pd.DataFrame({"subject_id": birth_rows[SUBJECT].to_numpy(),
                          "birth": birth_rows["time"].to_numpy()}).drop_duplicates()
    out = pd.DataFrame({"subject_id": subjects})
    out = out.merge(sex, on="subject_id", how="left").merge(birth, on="subject_id", how="left")
    out["birth"] = pd.to_datetime(out["birth"])
    return out


def meds_splits(root, cohort: Cohort) -> dict[str, Cohort]:
    """The cohort split by the dataset's ``metadata/subject_splits.parquet``.

    ``train`` -> ``train``, ``held_out`` -> ``holdout``, ``tuning`` -> ``reference``
    (:data:`SPLIT_NAMES`); other split names are left out with a warning, as are listed subjects
    without diagnoses (they are not in the cohort). Cohort subjects in no split are reported.

    Raises:
        CohortError: no splits file, a file with the wrong columns, or no ``train`` or
            ``held_out`` subject in the cohort.
    """
    import pyarrow.parquet as pq

    meds = _meds()
    root = as_path(root, "root")
    path = root / meds.subject_splits_filepath
    if not path.is_file():
        raise CohortError(f"MEDS dataset {root}: no {meds.subject_splits_filepath}; use split='random' instead")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        head = path.read_bytes()[:200] if path.stat().st_size else b""
        what = "empty (0 bytes)" if not head else ("its content is text" if head.isascii() else "not parquet")
        raise CohortError(f"{path}: not a readable parquet file ({what}; {type(exc).__name__}); expected the MEDS "
                          "subject_splits table (subject_id int64, split string) written as parquet") from None
    for column in ("subject_id", "split"):
        if column not in table.column_names:
            raise CohortError(f"{path}: no column {column!r} (found {table.column_names}); expected subject_id, split")
    frame = table.to_pandas()
    if not pd.api.types.is_integer_dtype(frame["subject_id"]):
        example = frame["subject_id"].dropna().iloc[0] if frame["subject_id"].notna().any() else None
        raise CohortError(f"{path}: column 'subject_id' has type {table.schema.field('subject_id').type} (e.g. "
                          f"{example!r}); expected int64 subject ids (meds.SubjectSplitSchema), as in data/: write "
                          "them as integers")
    missing = frame["split"].isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise CohortError(f"{path}: column 'split', row {i} (subject {frame['subject_id'].iloc[i]}): missing split "
                          f"name ({int(missing.sum())} row(s)); expected one of {sorted(SPLIT_NAMES)} for every subject")
    frame["split"] = frame["split"].astype(str)
    frame["subject_id"] = frame["subject_id"].astype("string")
    unknown = sorted(set(frame["split"]) - set(SPLIT_NAMES))
    present = set(cohort.subject_ids)
    out, notes = {}, []
    for meds_name, ours in SPLIT_NAMES.items():
        ids = [s for s in frame.loc[frame["split"] == meds_name, "subject_id"] if s in present]
        if ids:
            out[ours] = cohort.subset(ids)
    for needed in ("train", "held_out"):
        if SPLIT_NAMES[needed] not in out:
            if needed not in set(frame["split"]):
                names = sorted(set(frame["split"]))
                raise CohortError(f"{path}: no split named {needed!r}; the file's split names are "
                                  f"{names[:8]}, expected the MEDS names {sorted(SPLIT_NAMES)} (train and held_out "
                                  "at least): rename them in the file")
            raise CohortError(f"{path}: no subject of split {needed!r} has diagnoses in the cohort; expected "
                              "train and held_out subjects")
    if unknown:
        notes.append(f"split(s) {unknown} are not used (expected {sorted(SPLIT_NAMES)})")
    listed = set(frame["subject_id"])
    absent = len(listed - present)
    if absent:
        notes.append(f"{absent} listed subject(s) have no diagnoses and are not in the cohort")
    unsplit = len(present - listed)
    if unsplit:
        notes.append(f"{unsplit} cohort subject(s) are in no split and are left out")
    if notes:
        warnings.warn(f"{path}: " + "; ".join(notes), CohortWarning, stacklevel=2)
    return out


# ---------------------------------------------------------------------------- writing
def _subject_numbers(cohort: Cohort) -> tuple[pd.Series, str]:
    """int64 MEDS subject ids for the cohort's subjects, and the convention used."""
    ids = pd.Series(cohort.subject_ids, dtype="string")
    digits = ids.str.fullmatch(r"[0-9]{1,18}").fillna(False).all()
    if digits and not ids.str.match(r"0[0-9]").any():
        return pd.Series(ids.astype("int64").to_numpy(), index=ids.to_numpy()), "the cohort's own (integer) ids"
    return (pd.Series(np.arange(1, len(ids) + 1, dtype=np.int64), index=ids.to_numpy()),
            "1..N in cohort order (the cohort's ids are not integers)")


def code_descriptions(codes, icd_version: int = 9) -> pd.DataFrame:
    """``code`` (as written), ``description`` and ``parent_codes`` of each ICD code.

    ICD-9-CM titles come from :mod:`ehrlib.data.icd9` (the CMS v32 list); a code not on the list
    (older MIMIC codes) says so. ICD-10 codes get a description naming the code only.
    """
    codes = sorted(set(codes))
    if icd_version == 9:
        from ehrlib.data.icd9 import code_table

        titles = code_table().set_index("code")["title"]
        desc = [titles.get(c, f"ICD-9-CM {c} (not in the CMS v32 code list)") for c in codes]
    else:
        desc = [f"ICD-10 {c}" for c in codes]
    system = "ICD9CM" if icd_version == 9 else "ICD10CM"
    return pd.DataFrame({"code": [f"DIAGNOSIS//ICD//{icd_version}//{c}" for c in codes], "description": desc,
                         "parent_codes": [[f"{system}/{_dotted(c, icd_version)}"] for c in codes]})


def _dotted(code: str, icd_version: int) -> str:
    cut = 4 if (icd_version == 9 and code.startswith("E")) else 3
    return code if len(code) <= cut else f"{code[:cut]}.{code[cut:]}"


#: The files a write leaves in a dataset folder before it recorded them (``dataset.json``'s
#: ``ehrlib.files``): datasets written by earlier versions may be replaced when they hold only these.
_LEGACY_FILES = r"(data/[0-9]+\.parquet|metadata/(codes|subject_splits)\.parquet|metadata/dataset\.json)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _ehrlib_dataset(folder: Path) -> dict | None:
    """``dataset.json`` of ``folder`` when it is a MEDS dataset written by :func:`write_meds`, else ``None``."""
    meta = folder / "metadata" / "dataset.json"
    try:
        if meta.is_symlink() or not meta.is_file():
            return None
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("etl_name") == ETL_NAME else None


def _replaceable(root: Path) -> list[str]:
    """The files of ``root`` an earlier :func:`write_meds` wrote (``[]`` for a new or empty folder),
    after checking that replacing it can lose nothing else.

    Refused, naming what is in the way: ``root`` a symbolic link, the current folder or a folder
    above it, a folder inside a dataset ``write_meds`` wrote (one dataset never nests in another),
    a path under a file, a folder that is not such a dataset, and a dataset holding a file or
    folder the write did not make (a user's README, labels, notes) or a link.
    """
    import re

    from ehrlib.io import blocking_file

    if root.is_symlink():
        raise CohortError(f"{root}: is a symbolic link (to {os.readlink(root)}); write_meds never writes through or "
                          "replaces a link it did not make: give the folder it points to, or a new folder")
    here = Path.cwd().resolve()
    absolute = root.resolve()
    if absolute == here or absolute in here.parents:
        raise CohortError(f"{root}: is the current folder or a folder above it ({absolute}); write_meds never "
                          f"replaces it: write into a new folder, e.g. {root / 'meds'}")
    for above in absolute.parents:
        if _ehrlib_dataset(above) is not None:
            raise CohortError(f"{root}: is inside {above}, a MEDS dataset written by ehrlib; refusing to nest one "
                              "dataset in another: write beside it")
    blocker = blocking_file(absolute)
    if blocker is not None:
        raise CohortError(f"{root}: cannot be written: {blocker} is a file, not a folder")
    if not root.exists():
        return []
    if not root.is_dir():
        raise CohortError(f"{root}: exists and is not a folder; expected a new or empty folder for the MEDS dataset")
    entries = sorted(root.rglob("*"))
    if not entries:
        return []
    meta = _ehrlib_dataset(root)
    if meta is None:
        raise CohortError(f"{root}: a folder that is not a MEDS dataset written by ehrlib ({len(entries)} entries, "
                          f"e.g. {entries[0].relative_to(root)}); refusing to replace it: write into a new or empty "
                          "folder")
    recorded = (meta.get("ehrlib") or {}).get("files")
    wrote = set(recorded) if isinstance(recorded, list) else None
    folders = {str(Path(f).parent) for f in wrote} if wrote is not None else {"data", "metadata"}
    for entry in entries:
        rel = entry.relative_to(root).as_posix()
        if entry.is_symlink():
            raise CohortError(f"{root}: holds {rel}, a symbolic link write_meds did not make; refusing to replace "
                              "the dataset: remove the link, or write into a new folder")
        if entry.is_dir():
            if rel in folders:
                continue
            ours = False
        elif wrote is not None:
            ours = rel in wrote
        else:
            ours = re.fullmatch(_LEGACY_FILES, rel) is not None
        if not ours:
            raise CohortError(f"{root}: holds {rel}, which write_meds did not write; refusing to replace the dataset "
                              "(that would delete it): move it out, or write into a new folder")
    return [e.relative_to(root).as_posix() for e in entries if e.is_file()]


def _remove_written(folder: Path, files: list[str]) -> None:
    """Remove ``files`` (relative paths) from ``folder``, then its folders that became empty; what
    is left (a file added meanwhile) is kept, saying where."""
    for rel in files:
        (folder / rel).unlink(missing_ok=True)
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()),
                      key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        warnings.warn(f"write_meds: kept {folder}: it holds files written there while the dataset was replaced",
                      CohortWarning, stacklevel=3)


def write_meds(cohort: Cohort, root, *, icd_version: int = 9, splits: dict | None = None,
               dataset_name: str = "ehrlib cohort", generator: str | None = None, profile: str | None = None,
               seed: int | None = None, commit: str | None = None, source: str | None = None,
               real_records: bool = False, shard_size: int = 100_000, rest: str | None = None,
               allow_overlap: bool = False) -> Path:
    """Write ``cohort`` as a MEDS 0.4 dataset into ``root``, validated by the ``meds`` package's schemas.

    Conventions (also written into ``metadata/dataset.json`` under ``"ehrlib"``):

    * *times*: a Cohort keeps the order of visits, not their times. Visit ``v`` of every subject
      is at :data:`VISIT_EPOCH` plus ``v`` days, marked by a ``HOSPITAL_ADMISSION`` event, with its
      diagnoses ``DIAGNOSIS//ICD//<version>//<code>`` at the same time (the MIMIC-IV ETL's form), so
      :func:`load_meds` gives back the same visits;
    * *demographics*: ``GENDER//F`` / ``GENDER//M`` with no time (static), and ``MEDS_BIRTH`` the
      subject's age (whole years) before visit 0 (a fractional age is rounded down, with a warning);
    * *subject ids*: the cohort's ids when they are all integers (MIMIC's), else ``1..N`` in
      cohort order (synthetic ``SYNTH_...`` ids); MEDS ids are int64;
    * *splits*: ``splits`` maps ``train`` / ``holdout`` / ``reference`` to Cohorts (or id lists)
      written as ``train`` / ``held_out`` / ``tuning``; without it every subject is ``train``. With
      it, a subject in no split is refused unless ``rest`` names the split it joins, and a subject
      in two splits is refused unless ``allow_overlap`` (it keeps the first);
    * *codes*: ``metadata/codes.parquet`` describes every code written (ICD-9-CM titles).

    ``generator``, ``profile``, ``seed``, ``commit`` and ``source`` say where the cohort came from;
    ``real_records`` marks a generator's cohort that holds real patients' records (the ``holdout``
    and ``memorizer`` reference generators).
    The dataset is written into a new folder beside ``root`` and renamed into place; every file
    written is listed in ``dataset.json`` (``ehrlib.files``). An existing ``root`` is replaced only
    when empty or an earlier ``write_meds`` output holding nothing but the files it lists: a file
    or folder added there, a symbolic link, the current folder (or one above it) and a folder inside
    another written dataset are refused, naming what is in the way. The earlier dataset is moved
    aside, the new one renamed into place, and then only the earlier write's files are removed.
    Returns ``root``.

    Raises:
        CohortError: ``root`` cannot be replaced without losing something (above), a split subject
            not in the cohort, in no split or in two, or a table the ``meds`` schemas refuse.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ehrlib import __version__

    meds = _meds()
    if not isinstance(cohort, Cohort):
        raise ConfigError(f"write_meds: expected a Cohort, got {type(cohort).__name__}")
    if isinstance(icd_version, bool) or icd_version not in (9, 10):
        raise ConfigError(f"icd_version={icd_version!r}: expected 9 or 10")
    root = as_path(root, "root")
    if str(root) in ("", "."):
        root = Path.cwd()
    old_files = _replaceable(root)
    numbers, id_rule = _subject_numbers(cohort)
    ev = cohort.events
    sid = numbers.reindex(ev[SUBJECT].to_numpy()).to_numpy()
    visit_time = VISIT_EPOCH + pd.to_timedelta(ev[VISIT].to_numpy(), unit="D")
    dx = pd.DataFrame({"subject_id": sid, "time": visit_time,
                       "code": "DIAGNOSIS//ICD//" + str(icd_version) + "//" + ev[CODE].astype(str).to_numpy()})
    visits = ev[[SUBJECT, VISIT]].drop_duplicates()
    adm = pd.DataFrame({"subject_id": numbers.reindex(visits[SUBJECT].to_numpy()).to_numpy(),
                        "time": VISIT_EPOCH + pd.to_timedelta(visits[VISIT].to_numpy(), unit="D"), "code": VISIT_CODE})
    frames, extra_codes = [adm, dx], {VISIT_CODE: "A visit (admission); its time follows ehrlib's convention "
                                                  "(dataset.json 'ehrlib.time_convention'), not a real date"}
    demo = cohort.demographics
    if demo is not None:
        d = demo.assign(_n=numbers.reindex(demo[SUBJECT].to_numpy()).to_numpy())
        has_sex = d[SEX].notna().to_numpy(dtype=bool)
        frames.append(pd.DataFrame({"subject_id": d["_n"].to_numpy()[has_sex], "time": pd.NaT,
                                    "code": ("GENDER//" + d[SEX].astype(str)).to_numpy()[has_sex]}))
        extra_codes.update({"GENDER//F": "Sex: female", "GENDER//M": "Sex: male"})
        age = d[AGE].to_numpy(dtype=float)
        has_age = ~np.isnan(age)
        if (age[has_age] % 1 != 0).any():
            warnings.warn(f"write_meds: {int((age[has_age] % 1 != 0).sum())} fractional age(s) written as whole years "
                          "(MEDS_BIRTH is a date; ages are read back in whole years)", CohortWarning, stacklevel=2)
        years = np.floor(age[has_age]).astype(int)
        births = [VISIT_EPOCH - pd.DateOffset(years=int(y)) for y in years]
        frames.append(pd.DataFrame({"subject_id": d["_n"].to_numpy()[has_age], "time": pd.to_datetime(births),
                                    "code": meds.birth_code}))
        extra_codes[meds.birth_code] = "Birth: the subject's age in whole years before its first visit"
    events = pd.concat([f for f in frames if len(f)], ignore_index=True)
    events["_static"] = events["time"].notna()
    events = events.sort_values(["subject_id", "_static", "time", "code"], kind="stable").drop(columns="_static")
    events["time"] = pd.to_datetime(events["time"]).astype("datetime64[us]")

    split_of = pd.Series("train", index=numbers.to_numpy())
    if splits:
        back = {v: k for k, v in SPLIT_NAMES.items()}
        split_of[:] = ""
        for name, members in splits.items():
            if name not in back:
                raise ConfigError(f"splits: key {name!r}; expected some of {sorted(back)}")
            ids = members.subject_ids if isinstance(members, Cohort) else list(members)
            missing = [s for s in ids if s not in numbers.index]
            if missing:
                raise CohortError(f"write_meds: split {name!r} lists subject {missing[0]!r}, which the cohort lacks "
                                  f"({len(missing)} in all)")
            where = numbers.reindex(ids).to_numpy()
            taken = split_of[where]
            twice = taken[(taken != "") & (taken != back[name])]
            if len(twice) and not allow_overlap:
                first = numbers.index[numbers.to_numpy() == twice.index[0]][0]
                raise CohortError(f"write_meds: subject {first!r} is in split {name!r} and in split "
                                  f"{SPLIT_NAMES[twice.iloc[0]]!r} ({len(twice)} subject(s) in two splits); a MEDS "
                                  "subject has one split: give disjoint splits, or allow_overlap=True to keep the first")
            split_of[where[(taken == "").to_numpy()]] = back[name]
        unsplit = split_of[split_of == ""]
        if len(unsplit):
            if rest is None:
                first = numbers.index[numbers.to_numpy() == unsplit.index[0]][0]
                raise CohortError(f"write_meds: subject {first!r} is in no split ({len(unsplit)} of "
                                  f"{len(split_of)} subject(s)); give every subject a split, or rest='train' (or "
                                  "'holdout', 'reference') for the others")
            if rest not in back:
                raise ConfigError(f"write_meds: rest={rest!r}; expected one of {sorted(back)}")
            split_of[unsplit.index] = back[rest]
    splits_table = pa.table({"subject_id": pa.array(split_of.index.to_numpy(), pa.int64()),
                             "split": pa.array(split_of.to_numpy().astype(str), pa.string())})
    codes = code_descriptions(ev[CODE].astype(str).unique(), icd_version)
    codes = pd.concat([codes, pd.DataFrame({"code": list(extra_codes), "description": list(extra_codes.values()),
                                            "parent_codes": [None] * len(extra_codes)})], ignore_index=True)
    codes_table = pa.Table.from_pandas(codes, schema=meds.CodeMetadataSchema.schema(), preserve_index=False)
    dataset = {
        "dataset_name": dataset_name, "dataset_version": cohort.checksum()[:12], "etl_name": ETL_NAME,
        "etl_version": __version__, "meds_version": meds.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ehrlib": {
            "generator": generator, "profile": profile, "seed": seed, "commit": commit,
            "source": source if source is not None else cohort.source, "icd_version": icd_version,
            "synthetic": generator is not None and not real_records, "real_records": generator is None or real_records,
            "time_convention": f"Visit v of every subject is at {VISIT_EPOCH.date()} plus v days (a Cohort keeps the "
                               "order of visits, not their times; synthetic visits have none); each visit is a "
                               f"{VISIT_CODE} event with its diagnoses at the same time; MEDS_BIRTH is the age "
                               "in whole years before visit 0; GENDER codes have no time",
            "subject_id_convention": id_rule,
            "split_convention": "train -> train, holdout -> held_out, reference -> tuning",
            "patients": cohort.n_patients, "visits": cohort.n_visits, "events": cohort.n_events,
        },
    }
    meds.DatasetMetadataSchema.validate(dataset)
    meds.SubjectSplitSchema.validate(splits_table)
    meds.CodeMetadataSchema.validate(codes_table)

    import tempfile

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.new-", dir=root.parent))  # beside root: renames stay atomic
    try:
        (tmp / meds.data_subdirectory).mkdir(parents=True)
        (tmp / "metadata").mkdir()
        subjects = pd.unique(events["subject_id"])
        files = []
        for i, start in enumerate(range(0, len(subjects), shard_size)):
            part = events[events["subject_id"].isin(set(subjects[start:start + shard_size]))]
            table = meds.DataSchema.align(pa.Table.from_pandas(part, preserve_index=False))
            meds.DataSchema.validate(table)
            files.append(f"{meds.data_subdirectory}/{i}.parquet")
            pq.write_table(table, tmp / files[-1])
        pq.write_table(codes_table, tmp / meds.code_metadata_filepath)
        pq.write_table(splits_table, tmp / meds.subject_splits_filepath)
        files += [meds.code_metadata_filepath, meds.subject_splits_filepath, meds.dataset_metadata_filepath]
        dataset["ehrlib"]["files"] = sorted(files)  # what a later write may remove, and nothing else
        (tmp / meds.dataset_metadata_filepath).write_text(json.dumps(dataset, indent=2))
        os.chmod(tmp, 0o755 & ~_umask())
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.rename(root, old / "d")  # the earlier dataset moves aside, then the new one takes its name
            try:
                os.rename(tmp, root)
            except BaseException:
                os.rename(old / "d", root)
                raise
            _remove_written(old / "d", old_files)
            if not (old / "d").exists():
                old.rmdir()
        else:
            os.rename(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


__all__ = ["ADMISSION_CODES", "DIAGNOSIS_PREFIXES", "SEX_CODES", "SPLIT_NAMES", "VISIT_EPOCH", "code_descriptions",
           "load_meds", "meds_splits", "write_meds"]
