"""MIMIC-III 1.4 loader: PATIENTS, ADMISSIONS, DIAGNOSES_ICD -> Cohort.

Paper: section 2.1 (46,520 patients; diagnosis codes at full ICD-9 granularity).

Deviations from the paper's notebook (see ``book/deviations.md``): visits are ordered by
``ADMITTIME`` (ties broken by ``HADM_ID``), not by ``HADM_ID`` alone; missing codes are dropped
before codes become strings, so no ``'nan'`` code appears; codes absent from the CMS v32 list
(older MIMIC codes) are kept as they are.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.cohort import AGE, CODE, MAX_PLAUSIBLE_AGE, SEX, SUBJECT, Cohort, CohortError
from ehrlib.data.icd9 import check_code_kinds
from ehrlib.data.tables import (age_in_years, as_path, find_table, parse_datetimes, read_csv, require_folder,
                                 require_known, require_present)

log = logging.getLogger(__name__)

#: MIMIC shifts ages above 89 to about 300 years; we map them to this value.
MAX_AGE = 90
#: Raw ages (years from birth to first admission) read as MIMIC's >89 shift: mapped to MAX_AGE.
SHIFTED_AGES = (280, 330)


def load_mimic3(root) -> Cohort:
    """Load MIMIC-III diagnoses as a Cohort with age (at first admission) and sex.

    Args:
        root: folder with ``PATIENTS``, ``ADMISSIONS`` and ``DIAGNOSES_ICD`` as ``.csv`` or
            ``.csv.gz`` (upper- or lower-case file and column names).

    Rules: see :func:`assemble` for ages, sexes and codes (ICD-9 shapes: an invalid code is
    dropped with a warning, a column mostly of non-codes is refused).

    Raises:
        CohortError: a missing file or column, a non-UTF-8 file, an unparsable date, a diagnosis
            whose admission or subject is unknown, impossible or conflicting demographics, or no
            diagnosis codes at all.
    """
    root = require_folder(as_path(root, "root"), "MIMIC-III folder")
    p_path = find_table(root, "PATIENTS")
    a_path = find_table(root, "ADMISSIONS")
    d_path = find_table(root, "DIAGNOSES_ICD")
    patients = read_csv(p_path, {"subject_id": "Int64", "gender": "string", "dob": "string"})
    admissions = read_csv(a_path, {"subject_id": "Int64", "hadm_id": "Int64", "admittime": "string"})
    diagnoses = read_csv(d_path, {"subject_id": "Int64", "hadm_id": "Int64", "icd9_code": "string"})
    patients["dob"] = parse_datetimes(patients["dob"], p_path, "dob")
    admissions["admittime"] = parse_datetimes(admissions["admittime"], a_path, "admittime")
    return assemble(
        patients.rename(columns={"gender": SEX}),
        admissions,
        diagnoses.rename(columns={"icd9_code": CODE}),
        paths=(p_path, a_path, d_path),
        birth="dob",
        source=str(root),
    )


def assemble(patients: pd.DataFrame, admissions: pd.DataFrame, diagnoses: pd.DataFrame, *,
             paths=("patients", "admissions", "diagnoses"), birth: str | None = "dob",
             anchor: tuple[str, str] | None = None, source: str = "", icd_version: int = 9) -> Cohort:
    """Join patients, admissions and diagnoses into a Cohort (shared by MIMIC-III and -IV).

    ``patients`` has ``subject_id``, ``sex`` and either a birth timestamp column ``birth`` or
    the MIMIC-IV anchor columns ``anchor`` = (age column, year column). ``admissions`` has
    ``subject_id``, ``hadm_id``, ``admittime`` (parsed); ``diagnoses`` has ``subject_id``,
    ``hadm_id``, ``code``. Admissions without diagnosis codes are not visits and are dropped.

    Rules:

    * a subject listed twice in ``patients`` with different values (sex, birth date, anchor
      age or year) is a :class:`CohortError` naming the subjects; identical repeats are merged;
    * age is taken at the first admission. A birth date after it (negative age) is refused
      naming the subjects. Ages 90-130 become :data:`MAX_AGE`; raw ages in
      :data:`SHIFTED_AGES` are MIMIC's shift of ages above 89 and also become
      :data:`MAX_AGE`; any other age above 130 is refused naming the subjects;
    * codes must have the ``icd_version`` shape (:func:`ehrlib.cohort.normalise_codes`); missing
      codes and codes repeated within an admission are dropped with a warning giving counts;
      ICD-9 codes that look like ICD-10 or lost their leading zeros are warned about
      (:func:`ehrlib.data.icd9.check_code_kinds`).
    """
    p_path, a_path, d_path = paths
    for col in ("subject_id",):
        require_present(patients[col], p_path, col)
    for col in ("subject_id", "hadm_id"):
        require_present(admissions[col], a_path, col)
        require_present(diagnoses[col], d_path, col)
    key_cols = [c for c in patients.columns if c != "row_id"]
    distinct = patients.drop_duplicates(key_cols)
    clash = distinct["subject_id"].duplicated(keep=False).to_numpy(dtype=bool)
    if clash.any():
        ids = pd.unique(distinct["subject_id"][clash])
        shown = distinct[clash].head(4)
        cols = [c for c in key_cols if c != "subject_id"]
        rows = "; ".join(f"subject {r['subject_id']}: " + ", ".join(f"{c}={str(r[c])[:40]}" for c in cols)
                         for _, r in shown.iterrows())
        raise CohortError(
            f"{p_path}: {len(ids)} subject(s) listed more than once with different values ({rows}); "
            "expected one sex and one birth date per subject"
        )
    dup = admissions["hadm_id"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise CohortError(f"{a_path}: column 'hadm_id', line {i + 2}: admission {admissions['hadm_id'].iloc[i]} listed twice")
    require_known(diagnoses["hadm_id"], admissions["hadm_id"], d_path, "hadm_id",
                  f"has no admission in {Path(str(a_path)).name}")
    require_known(diagnoses["subject_id"], patients["subject_id"], d_path, "subject_id",
                  f"has no patient in {Path(str(p_path)).name}")
    adm_subject = admissions.set_index("hadm_id")["subject_id"]
    mismatch = diagnoses["hadm_id"].map(adm_subject) != diagnoses["subject_id"]
    if mismatch.any():
        i = int(np.flatnonzero(mismatch.to_numpy())[0])
        raise CohortError(
            f"{d_path}: line {i + 2}: admission {diagnoses['hadm_id'].iloc[i]} belongs to subject "
            f"{adm_subject[diagnoses['hadm_id'].iloc[i]]} in {Path(str(a_path)).name}, not {diagnoses['subject_id'].iloc[i]}"
        )

    # visit order: admission time, then hadm_id for identical times
    adm = admissions.sort_values(["subject_id", "admittime", "hadm_id"], kind="stable")
    order = pd.Series(np.arange(len(adm), dtype=np.int64), index=adm["hadm_id"].to_numpy())
    events = pd.DataFrame(
        {
            SUBJECT: diagnoses["subject_id"].to_numpy(),
            "_visit": order.reindex(diagnoses["hadm_id"].to_numpy()).to_numpy(),
            CODE: diagnoses[CODE],
        }
    )
    first = adm.groupby("subject_id", sort=False).agg(first_admit=("admittime", "first"))
    demo = patients.drop_duplicates("subject_id").set_index("subject_id").join(first, how="inner")
    if anchor is None:
        age = age_in_years(demo[birth], demo["first_admit"])
    else:
        age_col, year_col = anchor
        age = demo[age_col].to_numpy(dtype=float) + (demo["first_admit"].dt.year.to_numpy() - demo[year_col].to_numpy(dtype=float))
    age = np.asarray(age, dtype=float)
    _check_ages(demo, age, p_path, birth)
    age = np.where((age >= SHIFTED_AGES[0]) & (age <= SHIFTED_AGES[1]), MAX_AGE, age)
    demographics = pd.DataFrame(
        {SUBJECT: demo.index.astype(str), AGE: np.clip(age, 0, MAX_AGE).astype(float), SEX: demo[SEX].to_numpy()}
    )
    n_adm = len(admissions)
    if icd_version == 9:
        check_code_kinds(diagnoses[CODE], str(d_path), CODE)
    cohort = Cohort.from_events(events, demographics, visit_key="_visit", source=source,
                                icd_version=icd_version, report_dropped=True)
    dropped = n_adm - cohort.n_visits
    if dropped:
        log.info("%s: %d admission(s) without diagnosis codes are not visits", source, dropped)
    return cohort


def _check_ages(demo: pd.DataFrame, age: np.ndarray, p_path, birth: str | None) -> None:
    """Refuse negative ages (birth after admission) and ages above 130 outside MIMIC's shift."""
    shifted = (age >= SHIFTED_AGES[0]) & (age <= SHIFTED_AGES[1])
    problems = {
        "a birth date after their first admission" if birth else "a negative age at their first admission": age < 0,
        f"an impossible age above {MAX_PLAUSIBLE_AGE} years (MIMIC's >89 shift gives "
        f"{SHIFTED_AGES[0]}-{SHIFTED_AGES[1]})": (age > MAX_PLAUSIBLE_AGE) & ~shifted,
    }
    for what, bad in problems.items():
        bad = np.nan_to_num(bad, nan=0).astype(bool)
        if not bad.any():
            continue
        rows = demo[bad].head(3)
        ages = age[bad][:3]
        if birth:
            examples = "; ".join(f"subject {i}: born {r[birth]}, admitted {r['first_admit']} (age {a:g})"
                                 for (i, r), a in zip(rows.iterrows(), ages))
        else:
            examples = "; ".join(f"subject {i}: age {a:g}" for i, a in zip(rows.index, ages))
        raise CohortError(f"{p_path}: {int(bad.sum())} subject(s) with {what}, e.g. {examples[:300]}")
