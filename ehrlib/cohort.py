"""The long-format cohort every stage passes to the next.

A :class:`Cohort` is a table of diagnosis events ``(subject_id, visit_id, code)`` plus an
optional demographics table ``(subject_id, age, sex)``. It is the paper's schema
(section 2.1) and maps one-to-one onto MEDS (``subject_id``, ``time``, ``code``).

Canonical form, enforced by :meth:`Cohort.from_events` and checked by :meth:`Cohort.validate`:

* ``subject_id`` is a string; ``code`` is an upper-case dotless ICD string with leading
  zeros kept (``"0389"``, ``"V5861"``, ``"E8781"``); values that are not codes of the
  expected shape (spaces inside, SQL or formula text, paths, very long strings) are dropped
  with a :class:`CohortWarning`, or refused when they are most of the column
  (:func:`normalise_codes`);
* missing codes (``NaN``, empty, the strings ``nan``/``none``/``null``) are dropped;
* demographics hold one age (0-130 years) and one sex (``F``/``M``) per subject
  (``_check_demographics``);
* a code appears at most once in a visit; visits without codes do not exist;
* ``visit_id`` is the ordinal ``0..L-1`` of the visit within its subject, in the order of the
  visit key the cohort was built from (admission time for MIMIC);
* rows are sorted by ``(subject_id, visit_id, code)``.

Anything else would be a free signal for a discriminator.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.errors import CohortError, ConfigError
from ehrlib.io import atomic_write, blocking_file, frames_checksum

SUBJECT = "subject_id"
VISIT = "visit_id"
CODE = "code"
EVENT_COLUMNS = (SUBJECT, VISIT, CODE)
AGE = "age"
SEX = "sex"
DEMOGRAPHIC_COLUMNS = (SUBJECT, AGE, SEX)
SEXES = ("F", "M")
MISSING_CODE_STRINGS = frozenset({"", "NAN", "NONE", "NULL", "NA", "<NA>"})
SYNTHETIC_PREFIX = "SYNTH_"




class CohortWarning(UserWarning):
    """Data was changed or dropped while building a cohort (the message says what and how much)."""


#: Ages outside ``0..MAX_PLAUSIBLE_AGE`` years are impossible (after MIMIC's >89 shift rule).
MAX_PLAUSIBLE_AGE = 130
#: Codes longer than this are never codes (ICD-9-CM codes have at most 5 characters).
MAX_CODE_CHARS = 20
#: Code shapes by ICD version, on the upper-case dotless form.
CODE_SHAPES = {  # [0-9], not \d: \d would accept other scripts' digits ('４０１９')
    9: r"(?:[0-9]{3,5}|V[0-9]{2,4}|E[0-9]{3,4})",
    10: r"(?:[A-Z][0-9][0-9A-Z]{1,5})",
    None: r"(?:[A-Z0-9][A-Z0-9_\-]{0,%d})" % (MAX_CODE_CHARS - 1),
}
#: The dotted spelling of each shape (the dot after the category, e.g. ``401.9``, ``E878.1``).
DOTTED_SHAPES = {
    9: r"(?:[0-9]{3}|V[0-9]{2}|E[0-9]{3})\.[0-9]{1,2}",
    10: r"[A-Z][0-9][0-9A-Z]\.[0-9A-Z]{1,4}",
    None: r"[A-Z0-9]+\.[A-Z0-9]+",
}
#: More than this share of invalid codes means the column does not hold codes of that kind.
MAX_INVALID_SHARE = 0.5


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def short(value, limit: int = 60) -> str:
    """``repr`` of ``str(value)`` cut to ``limit`` characters, saying how long it really was."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _examples(values, n: int = 3) -> str:
    return ", ".join(short(v, 40) for v in list(values)[:n])


def _shown(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_int(value, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Return ``value`` as ``int`` if it is an integer in ``[minimum, maximum]``.

    ``bool`` and non-integral numbers (``2.5``, ``"3"``, ``None``) are refused, so a typo never
    reaches numpy as a ``TypeError``.

    Raises:
        ConfigError: naming the argument, the value and what was expected.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name}={_shown(value)} ({type(value).__name__}): expected an integer >= {minimum}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name}={value}: expected an integer >= {minimum}{upper}")
    return value


def _key_kind(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, float, np.number)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "isoformat"):
        return "date-time"
    return type(value).__name__


#: The largest seed anything in ``ehrlib`` takes: what numpy, torch and a JSON/parquet integer all hold.
MAX_SEED = 2**63 - 1


def check_seed(seed, name: str = "seed") -> int:
    """A random seed: an integer from 0 to :data:`MAX_SEED` (numpy's ``default_rng`` refuses negative
    seeds, torch's generators larger ones); the same rule as every generator's
    (:func:`ehrlib.models.base.check_seed`)."""
    return check_int(seed, name, minimum=0, maximum=MAX_SEED)


def normalise_codes(codes: pd.Series, source: str | None = None, column: str = CODE, *,
                    icd_version: int | None = None) -> pd.Series:
    """Return codes as upper-case dotless strings; missing and invalid codes become ``<NA>``.

    Rules, applied to each distinct value after stripping spaces and upper-casing:

    * missing (``NaN``, empty, ``nan``/``none``/``null``/``na``) -> ``<NA>``, silently (callers
      that read files report the count);
    * a dotted code of the expected shape (``401.9``, ``E878.1``) becomes dotless (``4019``),
      with a :class:`CohortWarning` giving the count, since both spellings would count twice;
    * anything else that is not a code of the expected shape is invalid: ``icd_version=9``
      accepts ``DDD``-``DDDDD``, ``VDD``-``VDDDD``, ``EDDD``-``EDDDD``; ``10`` accepts a
      letter, a digit and 1-5 letters/digits; ``None`` (any code system) accepts 1-20
      letters, digits, ``_`` or ``-``. So spaces inside, SQL or formula text, paths and long
      strings are never codes. Invalid values are dropped with a :class:`CohortWarning` giving
      their count and examples (each cut to 40 characters);
    * if more than half of the non-missing values are invalid, the column does not hold such
      codes (a wrong column, or ICD-10 read as ICD-9) and :class:`CohortError` is raised;
    * with an ICD version, a column of numbers (not text) is refused: leading and trailing
      zeros are already lost.
    """
    if isinstance(icd_version, bool) or icd_version not in CODE_SHAPES:
        raise ConfigError(f"icd_version={icd_version!r}: expected 9, 10 or None")
    if icd_version is not None and (pd.api.types.is_numeric_dtype(codes) and not pd.api.types.is_bool_dtype(codes)):
        raise CohortError(
            f"{_where(source)}column {column!r} holds numbers ({codes.dtype}), not text: ICD codes stored as numbers "
            "lose their leading zeros ('0389' becomes 389) and trailing zeros ('250.00' becomes 250.0); "
            "store the code column as text"
        )
    s = codes.astype("string").str.strip().str.upper()
    s = s.mask(s.isin(MISSING_CODE_STRINGS))
    present = s.notna().to_numpy(dtype=bool)
    if not present.any():
        return s
    idx, uniques = pd.factorize(s[present])
    u = pd.Series(uniques, dtype="string")
    fits = u.str.len().le(MAX_CODE_CHARS)
    plain = (fits & u.str.fullmatch(CODE_SHAPES[icd_version])).fillna(False).to_numpy(dtype=bool)
    dotted = (~plain & fits & u.str.fullmatch(DOTTED_SHAPES[icd_version])).fillna(False).to_numpy(dtype=bool)
    invalid = ~plain & ~dotted
    what = {9: "ICD-9", 10: "ICD-10", None: "valid"}[icd_version]
    if invalid.any():
        _, first = np.unique(idx, return_index=True)
        raw = codes[present].iloc[first].astype(str).to_numpy()
        row_bad = invalid[idx]
        n_bad, n_all = int(row_bad.sum()), int(present.sum())
        rule = {9: "ICD-9 codes look like 4019, V5861, E8781",
                10: "ICD-10 codes look like I10, E119, S72001A",
                None: "codes are 1-20 letters, digits, '_' or '-'"}[icd_version]
        detail = (f"{n_bad} of {n_all} value(s) ({int(invalid.sum())} distinct) are not {what} codes "
                  f"(e.g. {_examples(raw[invalid])}); {rule}")
        if icd_version == 9:
            other = (u[invalid].str.replace(".", "", regex=False).str.fullmatch(CODE_SHAPES[10])
                     .fillna(False).to_numpy(dtype=bool))
            if other.any():
                detail += (f"; {int(other.sum())} of them have the ICD-10 shape (e.g. {_examples(u[invalid][other])}): "
                           "if the file holds ICD-10 codes, read it with icd_version=10")
        if n_bad > MAX_INVALID_SHARE * n_all:
            raise CohortError(f"{_where(source)}column {column!r}: {detail}. Is this the right column/ICD version?")
        warnings.warn(f"{_where(source)}column {column!r}: {detail}; these rows were dropped",
                      CohortWarning, stacklevel=3)
    if dotted.any():
        example = u[dotted].iloc[0]
        warnings.warn(
            f"{_where(source)}column {column!r}: {int(dotted[idx].sum())} code(s) written with a dot "
            f"(e.g. {example!r}) were normalised to the dotless form ({example.replace('.', '')!r})",
            CohortWarning, stacklevel=3,
        )
    fixed = u.str.replace(".", "", regex=False).mask(pd.Series(invalid))
    out = pd.Series(pd.NA, index=s.index, dtype="string")
    out[present] = fixed.to_numpy()[idx]
    return out


def _ordinal_visits(subjects: np.ndarray, visit_keys: pd.Series) -> np.ndarray:
    """Visit ordinal 0..L-1 within each subject; rows must already be sorted by (subject, key)."""
    n = len(subjects)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    keys = visit_keys.to_numpy()
    new_subject = np.empty(n, dtype=bool)
    new_subject[0] = True
    new_subject[1:] = subjects[1:] != subjects[:-1]
    new_visit = new_subject.copy()
    new_visit[1:] |= keys[1:] != keys[:-1]
    visit_counter = np.cumsum(new_visit) - 1
    first_of_subject = np.maximum.accumulate(np.where(new_subject, visit_counter, 0))
    return (visit_counter - first_of_subject).astype(np.int64)


def _conflicts(demo: pd.DataFrame, column: str) -> pd.Series:
    """Per subject with more than one distinct non-missing value of ``column``: those values."""
    seen = demo.dropna(subset=[column]).drop_duplicates([SUBJECT, column])
    many = seen[SUBJECT].duplicated(keep=False)
    return seen[many].groupby(SUBJECT, sort=True)[column].agg(lambda v: sorted(map(str, v)))


def _check_demographics(demo: pd.DataFrame, subjects: pd.Index, source: str | None) -> pd.DataFrame:
    """Demographics in canonical form, one row per subject of ``subjects``.

    Rules: ``age`` is a number of years in ``0..MAX_PLAUSIBLE_AGE`` (or missing); ``sex`` is
    ``F``/``M`` (``female``/``male`` accepted, or missing); a subject listed more than once must
    have one age and one sex (repeated identical rows are fine). Anything else is a
    :class:`CohortError` naming how many subjects and which (first three).
    """
    missing_cols = [c for c in DEMOGRAPHIC_COLUMNS if c not in demo.columns]
    if missing_cols:
        raise CohortError(
            f"{_where(source)}demographics lack column(s) {missing_cols}; expected {list(DEMOGRAPHIC_COLUMNS)}"
        )
    demo = demo.loc[:, list(DEMOGRAPHIC_COLUMNS)].copy()
    demo[SUBJECT] = demo[SUBJECT].astype("string").str.strip()
    raw_age = demo[AGE].mask(demo[AGE].astype("string").str.strip().str.upper().isin(MISSING_CODE_STRINGS))
    demo[AGE] = raw_age
    age = pd.to_numeric(raw_age, errors="coerce")
    bad = (age.isna() & demo[AGE].notna()).to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CohortError(
            f"{_where(source)}demographics column 'age', row {i}: value {short(demo[AGE].iloc[i], 40)} is not a number "
            f"({int(bad.sum())} row(s) in all)"
        )
    demo[AGE] = age.astype(float)
    impossible = ((demo[AGE] < 0) | (demo[AGE] > MAX_PLAUSIBLE_AGE)).to_numpy(dtype=bool)
    if impossible.any():
        rows = demo[impossible]
        raise CohortError(
            f"{_where(source)}demographics column 'age': {rows[SUBJECT].nunique()} subject(s) with an impossible age "
            f"(expected 0 to {MAX_PLAUSIBLE_AGE} years), e.g. "
            + ", ".join(f"subject {short(r[SUBJECT], 40)}: {r[AGE]:g}" for _, r in rows.head(3).iterrows())
        )
    sex = demo[SEX].astype("string").str.strip().str.upper().replace({"FEMALE": "F", "MALE": "M"})
    sex = sex.mask(sex.isin(MISSING_CODE_STRINGS))
    bad = (~sex.isin(SEXES) & sex.notna()).to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CohortError(
            f"{_where(source)}demographics column 'sex', row {i}: value {short(demo[SEX].iloc[i], 40)}; "
            f"expected one of {SEXES} ({int(bad.sum())} row(s) in all)"
        )
    demo[SEX] = sex
    for column in (SEX, AGE):
        clash = _conflicts(demo, column)
        if len(clash):
            raise CohortError(
                f"{_where(source)}demographics column {column!r}: {len(clash)} subject(s) have more than one value, e.g. "
                + "; ".join(f"subject {short(k, 40)}: {', '.join(v[:3])}" for k, v in clash.head(3).items())
                + "; expected one value per subject"
            )
    demo = demo.groupby(SUBJECT, sort=False).first()
    absent = subjects.difference(demo.index)
    if len(absent):
        raise CohortError(
            f"{_where(source)}subject_id {short(absent[0], 40)} has diagnosis events but no demographics "
            f"({len(absent)} subject(s) in all)"
        )
    return demo.loc[subjects].reset_index()


@dataclass(frozen=True, eq=False)
class Cohort:
    """Diagnosis events in canonical long format plus optional demographics.

    Build one with :meth:`from_events` (which canonicalises) rather than the constructor.
    """

    events: pd.DataFrame
    demographics: pd.DataFrame | None = None
    source: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        demographics: pd.DataFrame | None = None,
        *,
        visit_key: str = VISIT,
        source: str = "",
        allow_empty: bool = False,
        icd_version: int | None = None,
        report_dropped: bool = False,
    ) -> "Cohort":
        """Canonicalise a long table of events into a Cohort.

        Args:
            events: columns ``subject_id``, ``code`` and the column named by ``visit_key``
                (any sortable value: an integer, a timestamp, a string); visits are numbered
                0..L-1 within each subject in ascending key order.
            demographics: optional ``subject_id``, ``age``, ``sex`` (``F``/``M``) table; it must
                cover every subject with events (extra subjects are dropped).
            visit_key: the column that orders visits.
            source: where the data came from, used in error messages.
            allow_empty: accept a cohort without events (only for generators that emit none).
            icd_version: the code shape to enforce (9, 10, or ``None`` for any short token);
                see :func:`normalise_codes` for what is dropped and what is refused.
            report_dropped: warn (:class:`CohortWarning`, with counts and ``source``) about
                rows dropped for a missing code and codes repeated within a visit. Loaders of
                files set it; generators, whose output is rebuilt from nested lists, do not.

        Raises:
            CohortError: a missing column, missing subject id or visit key, a code column that
                is mostly not codes, impossible or conflicting demographics (see
                ``_check_demographics``), or an empty cohort.
        """
        if not isinstance(events, pd.DataFrame):
            raise CohortError(f"{_where(source)}events must be a pandas DataFrame, got {type(events).__name__}")
        if demographics is not None and not isinstance(demographics, pd.DataFrame):
            raise CohortError(f"{_where(source)}demographics must be a pandas DataFrame or None, "
                              f"got {type(demographics).__name__}")
        needed = [SUBJECT, visit_key, CODE]
        twice = [c for c in needed if list(events.columns).count(c) > 1]
        if twice:
            raise CohortError(f"{_where(source)}column(s) {twice} appear more than once; expected each once")
        missing = [c for c in needed if c not in events.columns]
        if missing:
            raise CohortError(
                f"{_where(source)}missing column(s) {missing}; found {list(events.columns)}, expected {needed}"
            )
        df = pd.DataFrame(
            {
                SUBJECT: events[SUBJECT].astype("string").str.strip(),
                "_key": events[visit_key],
                CODE: normalise_codes(events[CODE], source, icd_version=icd_version),
            }
        )
        bad_subject = df[SUBJECT].isna() | (df[SUBJECT] == "")
        if bad_subject.any():
            i = int(np.flatnonzero(bad_subject.to_numpy())[0])
            raise CohortError(f"{_where(source)}column 'subject_id', row {i}: missing subject id")
        if df["_key"].dtype == object:
            kinds = sorted({_key_kind(v) for v in pd.unique(df["_key"]) if not pd.isna(v)})
            if len(kinds) > 1:
                raise CohortError(
                    f"{_where(source)}column {visit_key!r}: visit keys of mixed types ({', '.join(kinds)}) cannot be "
                    "ordered; expected all numbers, all date-times or all strings"
                )
        bad_key = df["_key"].isna()
        if bad_key.any():
            i = int(np.flatnonzero(bad_key.to_numpy())[0])
            raise CohortError(f"{_where(source)}column {visit_key!r}, row {i}: missing visit key")
        n_missing = int(events[CODE].isna().sum()) + int(
            events[CODE].astype("string").str.strip().str.upper().isin(MISSING_CODE_STRINGS).sum())
        df = df[df[CODE].notna()]
        try:
            df = df.sort_values([SUBJECT, "_key", CODE], kind="stable")
        except TypeError:
            kinds = sorted({type(v).__name__ for v in df["_key"]})
            raise CohortError(
                f"{_where(source)}column {visit_key!r}: visit keys of mixed types {kinds} cannot be ordered; "
                "expected all numbers, all date-times or all strings"
            ) from None
        n_rows = len(df)
        df = df.drop_duplicates([SUBJECT, "_key", CODE])
        if report_dropped and (n_missing or n_rows > len(df)):
            parts = [f"{n_missing} row(s) with a missing code (empty, NaN, 'nan', 'null')"] if n_missing else []
            if n_rows > len(df):
                parts.append(f"{n_rows - len(df)} repeat(s) of a code within one visit")
            warnings.warn(f"{_where(source)}dropped {' and '.join(parts)}", CohortWarning, stacklevel=2)
        if df.empty and not allow_empty:
            raise CohortError(f"{_where(source)}empty cohort: no diagnosis events with a code")
        subjects = df[SUBJECT].to_numpy()
        out = pd.DataFrame(
            {
                SUBJECT: df[SUBJECT].to_numpy(),
                VISIT: _ordinal_visits(subjects, df["_key"]),
                CODE: df[CODE].to_numpy(),
            }
        )
        out[SUBJECT] = out[SUBJECT].astype("string")
        out[CODE] = out[CODE].astype("string")
        demo = None
        if demographics is not None:
            demo = _check_demographics(demographics, pd.Index(pd.unique(out[SUBJECT])), source)
        return cls(out, demo, source)

    @classmethod
    def from_visits(cls, records, subject_ids=None, demographics=None, source: str = "") -> "Cohort":
        """Build a cohort from nested lists: ``records[p][v]`` is the codes of visit v of patient p.

        Patients are named ``SYNTH_000001``... unless ``subject_ids`` is given.
        """
        if subject_ids is None:
            subject_ids = synthetic_ids(len(records))
        subj, vis, code = [], [], []
        for sid, visits in zip(subject_ids, records):
            for v, codes in enumerate(visits):
                for c in codes:
                    subj.append(sid)
                    vis.append(v)
                    code.append(c)
        df = pd.DataFrame({SUBJECT: subj, VISIT: vis, CODE: code})
        return cls.from_events(df, demographics, source=source, allow_empty=True)

    # ------------------------------------------------------------------ views
    @property
    def subject_ids(self) -> np.ndarray:
        """Subject ids in cohort order (each once)."""
        if "subjects" not in self._cache:
            self._cache["subjects"] = pd.unique(self.events[SUBJECT]).astype(object)
        return self._cache["subjects"]

    @property
    def n_patients(self) -> int:
        return len(self.subject_ids)

    @property
    def n_visits(self) -> int:
        if self.events.empty:
            return 0
        return int((self.events.groupby(SUBJECT, sort=False)[VISIT].max() + 1).sum())

    @property
    def n_events(self) -> int:
        return len(self.events)

    def __len__(self) -> int:
        return self.n_patients

    def codes(self) -> list[str]:
        """Distinct codes, sorted."""
        return sorted(pd.unique(self.events[CODE]).tolist())

    def visits_per_patient(self) -> pd.Series:
        return self.events.groupby(SUBJECT, sort=False)[VISIT].max() + 1

    def codes_per_visit(self) -> pd.Series:
        return self.events.groupby([SUBJECT, VISIT], sort=False).size()

    def codes_per_patient(self) -> pd.Series:
        return self.events.groupby(SUBJECT, sort=False).size()

    def records(self) -> list[list[list[str]]]:
        """Nested lists ``[patient][visit] -> codes`` (for small cohorts and tests)."""
        out: list[list[list[str]]] = []
        for _, g in self.events.groupby(SUBJECT, sort=False):
            out.append([list(v[CODE]) for _, v in g.groupby(VISIT, sort=True)])
        return out

    def subset(self, subject_ids) -> "Cohort":
        """The cohort restricted to ``subject_ids`` (kept in cohort order)."""
        keep = pd.Index(pd.Series(list(subject_ids), dtype="string"))
        ev = self.events[self.events[SUBJECT].isin(keep)].reset_index(drop=True)
        demo = None
        if self.demographics is not None:
            demo = self.demographics[self.demographics[SUBJECT].isin(keep)].reset_index(drop=True)
        return Cohort(ev, demo, self.source)

    def restrict_codes(self, codes, *, report: bool = False):
        """The cohort with only ``codes`` kept: other codes, then empty visits and patients, dropped.

        Visits left are renumbered ``0..L-1`` within each patient (their order kept);
        demographics of dropped patients are dropped. Used by the long-tail ablation (paper
        Fig. 3), which restricts train, holdout and synthetic records to the tail codes.

        Args:
            codes: the codes to keep (ICD strings, normalised like the cohort's codes).
            report: also return what was dropped.

        Returns:
            The restricted Cohort, or ``(cohort, counts)`` with ``report=True``, where ``counts``
            is a dict of ``codes_kept``, ``events_dropped``, ``visits_dropped``, ``patients_dropped``.

        Raises:
            CohortError: ``codes`` is empty or matches no code of the cohort (the result would be
                an empty cohort presented as data).
        """
        wanted = normalise_codes(pd.Series(list(codes), dtype="object"), self.source, "codes").dropna()
        if wanted.empty:
            raise CohortError(f"{_where(self.source)}restrict_codes: no codes given; expected at least one code")
        keep = self.events[CODE].isin(set(wanted))
        if not keep.any():
            raise CohortError(
                f"{_where(self.source)}restrict_codes: none of the {len(set(wanted))} code(s) given "
                f"(e.g. {wanted.iloc[0]!r}) occurs in this cohort of {len(self.codes())} codes"
            )
        ev = self.events[keep.to_numpy()]
        subjects = ev[SUBJECT].to_numpy()
        # renumber the surviving visits 0..L-1 per subject (rows stay sorted by subject, visit, code)
        new_visits = _ordinal_visits(subjects, ev[VISIT])
        out = pd.DataFrame({SUBJECT: ev[SUBJECT].to_numpy(), VISIT: new_visits, CODE: ev[CODE].to_numpy()})
        out[SUBJECT] = out[SUBJECT].astype("string")
        out[CODE] = out[CODE].astype("string")
        demo = None
        if self.demographics is not None:
            demo = self.demographics[self.demographics[SUBJECT].isin(set(pd.unique(subjects)))].reset_index(drop=True)
        restricted = Cohort(out, demo, self.source)
        if not report:
            return restricted
        counts = {
            "codes_kept": len(restricted.codes()),
            "events_dropped": self.n_events - restricted.n_events,
            "visits_dropped": self.n_visits - restricted.n_visits,
            "patients_dropped": self.n_patients - restricted.n_patients,
        }
        return restricted, counts

    def renamed(self, prefix: str = SYNTHETIC_PREFIX) -> "Cohort":
        """A copy whose subjects are renamed ``<prefix>000001``... in cohort order.

        Generators return renamed cohorts, so no real subject id ever leaves a model.
        """
        mapping = pd.Series(synthetic_ids(self.n_patients, prefix), index=self.subject_ids)
        ev = self.events.copy()
        ev[SUBJECT] = ev[SUBJECT].map(mapping).astype("string")
        demo = None
        if self.demographics is not None:
            demo = self.demographics.copy()
            demo[SUBJECT] = demo[SUBJECT].map(mapping).astype("string")
        return Cohort(ev, demo, self.source)

    # ------------------------------------------------------------------ checks
    def validate(self) -> "Cohort":
        """Check the canonical-form invariants; raise :class:`CohortError` naming the first breach."""
        ev = self.events
        where = _where(self.source)
        if list(ev.columns) != list(EVENT_COLUMNS):
            raise CohortError(f"{where}columns {list(ev.columns)}; expected {list(EVENT_COLUMNS)}")
        if ev[CODE].isna().any() or ev[CODE].isin(MISSING_CODE_STRINGS).any():
            i = int(np.flatnonzero((ev[CODE].isna() | ev[CODE].isin(MISSING_CODE_STRINGS)).to_numpy())[0])
            raise CohortError(f"{where}column 'code', row {i}: missing code")
        dup = ev.duplicated(list(EVENT_COLUMNS)).to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise CohortError(f"{where}row {i}: code {ev[CODE].iloc[i]!r} repeated within one visit")
        if not ev.empty:
            visits = ev.groupby(SUBJECT, sort=False)[VISIT].agg(["min", "max", "nunique"])
            bad = (visits["min"] != 0) | (visits["nunique"] != visits["max"] + 1)
            if bad.any():
                raise CohortError(
                    f"{where}subject_id {bad[bad].index[0]!r}: visit_id values are not 0..L-1"
                )
        return self

    # ------------------------------------------------------------------ I/O
    def to_frame(self) -> pd.DataFrame:
        """Events joined with demographics (one row per event) for saving or sharing."""
        if self.demographics is None:
            return self.events.copy()
        return self.events.merge(self.demographics, on=SUBJECT, how="left")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the cohort as one parquet file (demographics repeated per row), atomically."""
        path = Path(path)
        frame = self.to_frame()
        blocked = blocking_file(path)
        if blocked is not None:
            raise CohortError(f"{path}: cannot be written: {blocked} is a file, not a folder; expected a path in a "
                              "folder (or where a folder can be made)")
        if path.is_dir():
            raise CohortError(f"{path}: cannot be written: it is a folder; expected a file path (e.g. cohort.parquet)")
        try:
            atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
        except PermissionError:
            raise CohortError(f"{path}: cannot be written: permission denied") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Cohort":
        """Read a cohort written by :meth:`save` (for other files use ``ehrlib.data.read_long``).

        Raises:
            CohortError: no such file, a file that is not a readable parquet file (truncated,
                another format), missing columns, or content that breaks the canonical form.
        """
        if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"path={short(path, 40)} ({type(path).__name__}): expected a file path")
        path = Path(path)
        try:
            found, folder = path.is_file(), path.is_dir()
        except PermissionError:
            raise CohortError(f"{path}: cannot be read: permission denied (on the file or a folder above it)") from None
        if folder:
            raise CohortError(f"{path}: is a folder, not a file; expected a cohort file written by Cohort.save")
        if not found:
            raise CohortError(f"{path}: file not found")
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
            raise CohortError(
                f"{path}: not a readable cohort parquet file ({type(exc).__name__}: {short(exc, 120)})"
            ) from None
        missing = [c for c in EVENT_COLUMNS if c not in frame.columns]
        if missing:
            raise CohortError(f"{path}: columns {missing} missing (found {[short(c, 40) for c in frame.columns[:8]]}); "
                              "expected a file written by Cohort.save")
        demo = None
        if AGE in frame.columns or SEX in frame.columns:
            demo = frame.loc[:, [c for c in DEMOGRAPHIC_COLUMNS if c in frame.columns]].drop_duplicates(SUBJECT)
        return cls.from_events(frame.loc[:, list(EVENT_COLUMNS)], demo, visit_key=VISIT, source=str(path), allow_empty=True)

    def checksum(self) -> str:
        """sha256 of the canonical events (and demographics): identical data, identical checksum."""
        return frames_checksum(self.events, self.demographics)

    def __repr__(self) -> str:
        demo = "with" if self.demographics is not None else "without"
        return (
            f"Cohort({self.n_patients} patients, {self.n_visits} visits, {self.n_events} events, "
            f"{len(self.codes())} codes, {demo} demographics)"
        )


def synthetic_ids(n: int, prefix: str = SYNTHETIC_PREFIX) -> list[str]:
    """``SYNTH_000001``-style ids for ``n`` generated patients."""
    width = max(6, len(str(n)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]
