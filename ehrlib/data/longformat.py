"""Any long-format file (one row per code) -> Cohort.

Accepts the column spellings of MIMIC (``SUBJECT_ID``/``HADM_ID``/``ICD9_CODE``), of the
paper's released synthetic CSVs (HALO, PromptEHR, GPT-2, CorGAN, MedGAN; see
``../shared/notes/REFERENCES.md``), of PyHealth-style exports (``patient_id``/``visit_id``/
``code``) and of ``Cohort.save``. A file without a visit column has one visit per patient.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ehrlib.cohort import AGE, CODE, SEX, SUBJECT, VISIT, Cohort, CohortError
from ehrlib.data.tables import read_csv

ALIASES = {
    SUBJECT: ("subject_id", "patient_id", "patient", "pid", "person_id", "subject"),
    VISIT: ("visit_id", "hadm_id", "admission_id", "visit", "encounter_id", "visit_number", "time"),
    CODE: ("code", "icd9_code", "icd_code", "icd9", "diagnosis_code", "dx"),
    AGE: ("age",),
    SEX: ("sex", "gender"),
}


def _pick(columns, name: str):
    lower = {str(c).lower(): c for c in columns}
    for cand in ALIASES[name]:
        if cand in lower:
            return lower[cand]
    return None


def _visit_key(values: pd.Series) -> pd.Series:
    """Numeric order when every visit value is a number (so '10' sorts after '2')."""
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all():
        return num
    as_time = pd.to_datetime(values, format="ISO8601", errors="coerce")
    if as_time.notna().all():
        return as_time
    return values.astype("string")


def read_long(path, code_map: Mapping | Sequence | None = None) -> Cohort:
    """Read a long-format CSV (optionally gzipped) or parquet file into a Cohort.

    Args:
        path: the file.
        code_map: for files whose codes are vocabulary indices (HALO's index-coded export),
            a mapping or sequence from index to ICD code.

    Raises:
        CohortError: missing subject or code column, non-UTF-8 text, an index with no entry in
            ``code_map``, or no codes at all.
    """
    path = Path(path)
    if not path.is_file():
        raise CohortError(f"{path}: no such file")
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
        cols = {name: _pick(df.columns, name) for name in ALIASES}
        for name in (SUBJECT, CODE):
            if cols[name] is None:
                raise CohortError(
                    f"{path}: missing column {name!r} (accepted names: {list(ALIASES[name])}); found {list(df.columns)}"
                )
        df = df.rename(columns={v: k for k, v in cols.items() if v is not None})
        df = df[[k for k, v in cols.items() if v is not None]]
    else:
        df = read_csv(
            path,
            required={SUBJECT: "string", CODE: "string"},
            optional={VISIT: "string", AGE: "string", SEX: "string"},
            aliases={k: v[1:] for k, v in ALIASES.items()},
        )
    if code_map is not None:
        lookup = pd.Series(dict(code_map) if isinstance(code_map, Mapping) else dict(enumerate(code_map)))
        lookup.index = lookup.index.astype(str)
        raw = df[CODE].astype("string").str.strip()
        mapped = raw.map(lookup)
        bad = mapped.isna() & raw.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CohortError(f"{path}: column 'code', line {i + 2}: index {raw.iloc[i]!r} has no entry in code_map")
        df[CODE] = mapped
    if VISIT in df.columns:
        df["_visit"] = _visit_key(df[VISIT])
    else:
        df["_visit"] = 0
    demo = None
    if AGE in df.columns and SEX in df.columns:
        demo = df[[SUBJECT, AGE, SEX]].drop_duplicates(SUBJECT)
        demo = demo.assign(**{SUBJECT: demo[SUBJECT].astype("string").str.strip()})
    return Cohort.from_events(df, demo, visit_key="_visit", source=str(path))
