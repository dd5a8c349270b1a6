"""The long-format cohort every stage passes to the next.

A :class:`Cohort` is a table of diagnosis events ``(subject_id, visit_id, code)`` plus an
optional demographics table ``(subject_id, age, sex)``. It is the paper's schema
(section 2.1) and maps one-to-one onto MEDS (``subject_id``, ``time``, ``code``).

Canonical form, enforced by :meth:`Cohort.from_events` and checked by :meth:`Cohort.validate`:

* ``subject_id`` is a string; ``code`` is an upper-case dotless ICD string with leading
  zeros kept (``"0389"``, ``"V5861"``, ``"E8781"``);
* missing codes (``NaN``, empty, the strings ``nan``/``none``/``null``) are dropped;
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

from ehrlib.errors import CohortError
from ehrlib.io import atomic_write, frames_checksum

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




def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def normalise_codes(codes: pd.Series, source: str | None = None, column: str = CODE) -> pd.Series:
    """Return ICD codes as upper-case dotless strings, missing codes as ``<NA>``.

    Dotted codes (``401.9``) become dotless (``4019``) with a warning that says how many rows
    changed, since dotted and dotless spellings of one code would otherwise count twice.
    """
    s = codes.astype("string").str.strip().str.upper()
    s = s.mask(s.isin(MISSING_CODE_STRINGS))
    dotted = s.str.contains(".", regex=False).fillna(False).to_numpy(dtype=bool)
    if dotted.any():
        example = s[dotted].iloc[0]
        warnings.warn(
            f"{_where(source)}column {column!r}: {int(dotted.sum())} code(s) written with a dot "
            f"(e.g. {example!r}) were normalised to the dotless ICD-9 form "
            f"({example.replace('.', '')!r})",
            stacklevel=3,
        )
        s = s.str.replace(".", "", regex=False)
        s = s.mask(s == "")
    return s


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


def _check_demographics(demo: pd.DataFrame, subjects: pd.Index, source: str | None) -> pd.DataFrame:
    missing_cols = [c for c in DEMOGRAPHIC_COLUMNS if c not in demo.columns]
    if missing_cols:
        raise CohortError(
            f"{_where(source)}demographics lack column(s) {missing_cols}; expected {list(DEMOGRAPHIC_COLUMNS)}"
        )
    demo = demo.loc[:, list(DEMOGRAPHIC_COLUMNS)].copy()
    demo[SUBJECT] = demo[SUBJECT].astype("string")
    demo = demo.drop_duplicates(SUBJECT, keep="first")
    age = pd.to_numeric(demo[AGE], errors="coerce")
    bad = age.isna() & demo[AGE].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise CohortError(
            f"{_where(source)}demographics column 'age', row {i}: value {demo[AGE].iloc[i]!r} is not a number"
        )
    demo[AGE] = age.astype(float)
    sex = demo[SEX].astype("string").str.strip().str.upper().replace({"FEMALE": "F", "MALE": "M"})
    bad = ~sex.isin(SEXES) & sex.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise CohortError(
            f"{_where(source)}demographics column 'sex', row {i}: value {demo[SEX].iloc[i]!r}; expected one of {SEXES}"
        )
    demo[SEX] = sex
    demo = demo.set_index(SUBJECT)
    absent = subjects.difference(demo.index)
    if len(absent):
        raise CohortError(
            f"{_where(source)}subject_id {absent[0]!r} has diagnosis events but no demographics "
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

        Raises:
            CohortError: a missing column, missing subject id, unknown sex, or an empty cohort.
        """
        needed = [SUBJECT, visit_key, CODE]
        missing = [c for c in needed if c not in events.columns]
        if missing:
            raise CohortError(
                f"{_where(source)}missing column(s) {missing}; found {list(events.columns)}, expected {needed}"
            )
        df = pd.DataFrame(
            {
                SUBJECT: events[SUBJECT].astype("string").str.strip(),
                "_key": events[visit_key],
                CODE: normalise_codes(events[CODE], source),
            }
        )
        bad_subject = df[SUBJECT].isna() | (df[SUBJECT] == "")
        if bad_subject.any():
            i = int(np.flatnonzero(bad_subject.to_numpy())[0])
            raise CohortError(f"{_where(source)}column 'subject_id', row {i}: missing subject id")
        bad_key = df["_key"].isna()
        if bad_key.any():
            i = int(np.flatnonzero(bad_key.to_numpy())[0])
            raise CohortError(f"{_where(source)}column {visit_key!r}, row {i}: missing visit key")
        df = df[df[CODE].notna()]
        df = df.sort_values([SUBJECT, "_key", CODE], kind="stable")
        df = df.drop_duplicates([SUBJECT, "_key", CODE])
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
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Cohort":
        """Read a cohort written by :meth:`save` (for other files use ``ehrlib.data.read_long``)."""
        path = Path(path)
        try:
            frame = pd.read_parquet(path)
        except FileNotFoundError:
            raise CohortError(f"{path}: file not found") from None
        except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
            raise CohortError(f"{path}: not a readable cohort parquet file ({type(exc).__name__}: {exc})") from None
        missing = [c for c in EVENT_COLUMNS if c not in frame.columns]
        if missing:
            raise CohortError(f"{path}: columns {missing} missing; expected a file written by Cohort.save")
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
