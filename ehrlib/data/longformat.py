"""Any long-format file (one row per code) -> Cohort.

Accepts the column spellings of MIMIC (``SUBJECT_ID``/``HADM_ID``/``ICD9_CODE``), of the
paper's released synthetic CSVs (HALO, PromptEHR, GPT-2, CorGAN, MedGAN), of PyHealth-style
exports (``patient_id``/``visit_id``/``code``) and of ``Cohort.save``.

Rules (each a :class:`~ehrlib.errors.CohortError` or a :class:`~ehrlib.cohort.CohortWarning`):

* **Files**: ``.csv``, ``.csv.gz``, ``.txt`` or ``.parquet`` (any case); the content must match
  the name (see :mod:`ehrlib.data.tables`). Other suffixes (``.json``, ``.xlsx``) are refused.
* **Visit order**: with a time column (``time_column``, or a column named like an admission
  time: ``ADMITTIME``, ``admit_date``, ... see :data:`TIME_ALIASES`) visits are ordered by
  real time, a visit's time being its earliest row and equal times falling back to the visit
  id; so a MIMIC-style export with ``HADM_ID`` and ``ADMITTIME`` is ordered by admission, not
  by ``HADM_ID``. Without one, visits are ordered by the visit column's values when they are
  all numbers (``2`` before ``10``) or all ISO dates. Visit ids that are neither
  (``"adm_b"``, a mix of numbers and dates) are accepted only when no subject has two
  visits; otherwise the order cannot be known and the file is refused, naming how many
  subjects are affected: pass ``time_column``. Time values that are neither numbers nor ISO
  date-times are refused.
* **No visit column**: if no visit column is recognised but the file has other columns, one of
  them may be the visit column under another name, so the file is refused listing them (pass
  ``visit_column=NAME``, or ``visit_column=False`` for one visit per patient). A file with only
  subject and code (and age/sex) columns, like the paper's MedGAN sample, is read as one visit
  per patient with a warning.
* **Codes**: ICD-9 shapes by default (``icd_version``); see
  :func:`ehrlib.cohort.normalise_codes`. Read as ICD-9, codes that look like ICD-10 (``E119``)
  or like ICD-9 codes that lost their leading zeros (``389`` for ``0389``) are warned about with
  counts, examples and the fix (:func:`ehrlib.data.icd9.check_code_kinds`). Rows with a missing code and codes repeated within a
  visit are dropped with a warning giving both counts and the file.
* **Demographics** (when both ``age`` and ``sex`` columns exist): a subject's age is the age on
  its first visit; a subject with two sexes (or two ages on its first visit), a sex other than
  F/M or an age outside 0-130 is refused naming the subjects. Only one of the two columns is
  ignored with a warning.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ehrlib.errors import ConfigError
from ehrlib.cohort import AGE, CODE, SEX, SUBJECT, VISIT, Cohort, CohortError, CohortWarning, short
from ehrlib.data.icd9 import check_code_kinds
from ehrlib.data.tables import (QUOTE_CHARS, as_path, delimiter_hint, file_kind, read_csv, read_header,
                                 require_file, short_list)

ALIASES = {
    SUBJECT: ("subject_id", "patient_id", "patient", "pid", "person_id", "subject"),
    VISIT: ("visit_id", "hadm_id", "admission_id", "visit", "encounter_id", "visit_number", "time"),
    CODE: ("code", "icd9_code", "icd_code", "icd9", "diagnosis_code", "dx"),
    AGE: ("age",),
    SEX: ("sex", "gender"),
}
#: Admission-time columns used to order visits when ``time_column`` is not given (case-insensitive).
TIME_ALIASES = ("admittime", "admit_time", "admission_time", "admit_date", "admission_date", "visit_time",
                "visit_date", "visit_start", "start_time", "starttime")
#: Columns that are never a visit key (row numbers, positions, versions).
NOT_VISITS = frozenset({"row_id", "seq_num", "icd_version", "index", "unnamed: 0", ""})
SUFFIXES = (".csv", ".csv.gz", ".txt", ".parquet")
_TIME = "_time"


def _pick(columns, name: str):
    lower = {str(c).lower(): c for c in columns}
    for cand in ALIASES[name]:
        if cand in lower:
            return lower[cand]
    return None


def _named(columns, name: str, argument: str, path: Path):
    lower = {str(c).lower(): c for c in columns}
    if str(name).lower() not in lower:
        raise CohortError(f"{path}: {argument}={short(name, QUOTE_CHARS)} is not a column; found {short_list(columns)}")
    return lower[str(name).lower()]


def _columns(path: Path, kind: str) -> list[str]:
    if kind != "parquet":
        return read_header(path)
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise CohortError(f"{path}: not a readable parquet file ({type(exc).__name__}: {short(exc, QUOTE_CHARS)})") from None


def _read(path: Path, kind: str, chosen: dict[str, str]) -> pd.DataFrame:
    if kind == "parquet":
        try:
            df = pd.read_parquet(path, columns=list(chosen.values()))
        except Exception as exc:  # as above
            raise CohortError(
                f"{path}: not a readable parquet file ({type(exc).__name__}: {short(exc, QUOTE_CHARS)})"
            ) from None
        return df.rename(columns={v: k for k, v in chosen.items()})
    df = read_csv(path, required={str(v).lower(): "string" for v in chosen.values()})
    return df.rename(columns={str(v).lower(): k for k, v in chosen.items()})


def _order(values: pd.Series) -> pd.Series | None:
    """A sortable key: numbers, or ISO date-times; ``None`` when the values are neither."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    text = values.astype("string").str.strip()
    present = text.notna()
    num = pd.to_numeric(text, errors="coerce")
    if (num.notna() | ~present).all():
        return num
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            when = pd.to_datetime(text, format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):  # e.g. time zones mixed with naive times
        return None
    if (when.notna() | ~present).all():
        return when
    return None


def _unordered_examples(values: pd.Series) -> str:
    text = values.dropna().astype(str)
    num = pd.to_numeric(text, errors="coerce")
    return ", ".join(short(v, 40) for v in pd.unique(text[num.isna()])[:3])


def _visit_keys(df: pd.DataFrame, path: Path, visit_name: str | None, time_name: str | None,
                auto_time: bool = False) -> pd.Series:
    """Visit keys ordered as the module docstring says."""
    if time_name is not None:
        when = _order(df[_TIME])
        if when is None:
            how = (" (recognised by its name; pass time_column=False to ignore it)" if auto_time else "")
            raise CohortError(
                f"{path}: time column {time_name!r}{how} holds values that are neither numbers nor ISO date-times "
                f"(e.g. {_unordered_examples(df[_TIME])}); expected e.g. 2101-03-04 12:00:00"
            )
        if when.isna().any():
            i = int(np.flatnonzero(when.isna().to_numpy())[0])
            raise CohortError(f"{path}: time column {time_name!r}, row {i + 1}: missing time")
        if VISIT not in df.columns:
            return when
        # a visit is its id; its time is its earliest row; equal times fall back to the id
        start = when.groupby([df[SUBJECT], df[VISIT]], sort=False).transform("min")
        ident = _order(df[VISIT])
        ident = df[VISIT].astype("string") if ident is None else ident
        table = pd.DataFrame({"s": df[SUBJECT], "t": start, "v": ident, "raw": df[VISIT].astype("string")})
        firsts = table.drop_duplicates(["s", "raw"]).sort_values(["s", "t", "v"], kind="stable")
        rank = pd.Series(np.arange(len(firsts)), index=pd.MultiIndex.from_frame(firsts[["s", "raw"]]))
        return pd.Series(rank.reindex(pd.MultiIndex.from_frame(table[["s", "raw"]])).to_numpy(), index=df.index)
    if VISIT not in df.columns:
        return pd.Series(0, index=df.index)
    missing = df[VISIT].isna().to_numpy(dtype=bool)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise CohortError(f"{path}: visit column {visit_name!r}, line {i + 2}: missing visit id ({int(missing.sum())} "
                          "row(s) in all); expected a visit id on every row")
    key = _order(df[VISIT])
    if key is not None:
        return key
    ids = df[VISIT].astype("string")
    per_subject = ids.groupby(df[SUBJECT]).nunique()
    several = per_subject[per_subject > 1]
    if len(several):
        raise CohortError(
            f"{path}: visit column {visit_name!r} holds ids that are neither numbers nor ISO dates "
            f"(e.g. {_unordered_examples(df[VISIT])}), so the visit order of {len(several)} subject(s) with "
            f"several visits cannot be known (e.g. subject {short(several.index[0], 40)}); pass "
            "time_column='NAME' with admission times, or use numeric visit ids"
        )
    return ids


def read_long(path, code_map: Mapping | Sequence | None = None, *, visit_column=None,
              time_column: str | None = None, icd_version: int | None = 9) -> Cohort:
    """Read a long-format CSV (optionally gzipped) or parquet file into a Cohort.

    Args:
        path: the file (``.csv``, ``.csv.gz``, ``.txt``, ``.parquet``; any case).
        code_map: for files whose codes are vocabulary indices (HALO's index-coded export),
            a mapping or sequence from index to ICD code.
        visit_column: the column holding visit ids (default: recognised by name, e.g.
            ``HADM_ID``, ``visit_id``); ``False`` when the file has no visits (one visit per
            patient, no warning).
        time_column: a column of admission times (ISO date-times or numbers) that orders
            visits; without a visit column each distinct time of a subject is one visit.
            Default: a column named like an admission time (:data:`TIME_ALIASES`) if there
            is one; ``False`` ignores such a column.
        icd_version: the code shape to enforce: 9 (default), 10, or ``None`` for any short
            code (your own vocabulary).

    Raises:
        CohortError: every rule of the module docstring: a missing, unreadable, mislabelled or
            unsupported file; missing subject or code column; an unknown visit order; a code
            column that is mostly not codes; bad demographics; an index with no entry in
            ``code_map``; or no codes at all.

    Warns:
        CohortWarning: rows dropped (missing codes, repeats within a visit, invalid codes),
            dotted codes normalised, or a file read as one visit per patient.
    """
    path = as_path(path)
    if isinstance(icd_version, bool) or icd_version not in (9, 10, None):
        raise ConfigError(f"icd_version={icd_version!r}: expected 9, 10 or None")
    if code_map is not None and (isinstance(code_map, str) or not isinstance(code_map, (Mapping, Sequence))):
        raise ConfigError(f"code_map: expected a mapping or sequence from index to ICD code, got {type(code_map).__name__}")
    require_file(path)
    if not path.name.lower().endswith(SUFFIXES):
        raise CohortError(
            f"{path}: unsupported file type {short(''.join(path.suffixes[-2:]) or '(no suffix)', 20)}; "
            f"expected one of {list(SUFFIXES)}"
        )
    kind = file_kind(path)
    found = _columns(path, kind)
    chosen = {name: _pick(found, name) for name in (SUBJECT, CODE, AGE, SEX)}
    for name in (SUBJECT, CODE):
        if chosen[name] is None:
            raise CohortError(
                f"{path}: missing column {name!r} (accepted names: {list(ALIASES[name])}); found {short_list(found)}"
                + (delimiter_hint(found) if kind != "parquet" else "")
            )
    if visit_column is False:
        chosen[VISIT] = None
    elif visit_column is not None:
        chosen[VISIT] = _named(found, visit_column, "visit_column", path)
    else:
        chosen[VISIT] = _pick(found, VISIT)
    auto_time = False
    if time_column is None and visit_column is not False:
        lower = {str(c).lower(): c for c in found}
        time_name = next((lower[a] for a in TIME_ALIASES if a in lower), None)
        auto_time = time_name is not None
    elif time_column is None or time_column is False:
        time_name = None
    else:
        time_name = _named(found, time_column, "time_column", path)
    if chosen[VISIT] is not None and chosen[VISIT] == time_name:
        chosen[VISIT] = None
    if time_name is not None:
        chosen[_TIME] = time_name
    if chosen[VISIT] is None and time_name is None and visit_column is not False:
        used = {str(c).lower() for c in chosen.values() if c is not None}
        others = [c for c in found if str(c).lower() not in used and str(c).lower() not in NOT_VISITS]
        if others:
            raise CohortError(
                f"{path}: no visit column recognised (accepted names: {list(ALIASES[VISIT])}); the file also has "
                f"column(s) {short_list(others)}. Pass visit_column='NAME' or time_column='NAME' to use one, "
                "or visit_column=False to read one visit per patient"
            )
        warnings.warn(
            f"{path}: no visit column (found {short_list(found)}); each patient is read as one visit",
            CohortWarning, stacklevel=2,
        )
    chosen = {k: v for k, v in chosen.items() if v is not None}
    df = _read(path, kind, chosen)
    df[SUBJECT] = df[SUBJECT].astype("string").str.strip()
    if code_map is not None:
        lookup = pd.Series(dict(code_map) if isinstance(code_map, Mapping) else dict(enumerate(code_map)))
        lookup.index = lookup.index.astype(str)
        raw = df[CODE].astype("string").str.strip()
        mapped = raw.map(lookup)
        bad = mapped.isna() & raw.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CohortError(
                f"{path}: column 'code', line {i + 2}: index {short(raw.iloc[i], QUOTE_CHARS)} has no entry in code_map"
            )
        df[CODE] = mapped
    if icd_version == 9:
        check_code_kinds(df[CODE], str(path), chosen[CODE])
    df["_visit"] = _visit_keys(df, path, chosen.get(VISIT), time_name, auto_time)
    demo = None
    if AGE in df.columns and SEX in df.columns:
        demo = df[[SUBJECT, AGE, SEX]].copy()
        if df[SUBJECT].notna().all():
            try:
                first = (df["_visit"] == df.groupby(SUBJECT)["_visit"].transform("min")).to_numpy(dtype=bool)
            except TypeError:  # unorderable keys: from_events names the problem
                first = np.ones(len(df), dtype=bool)
            demo[AGE] = demo[AGE].where(first)
    elif AGE in df.columns or SEX in df.columns:
        has = AGE if AGE in df.columns else SEX
        warnings.warn(
            f"{path}: column {chosen[has]!r} found without {'sex' if has == AGE else 'age'}; demographics need "
            "both and are not read", CohortWarning, stacklevel=2,
        )
    return Cohort.from_events(df, demo, visit_key="_visit", source=str(path), icd_version=icd_version,
                              report_dropped=True)
