"""ICD-9-CM chapter-level coverage (paper appendix G.4, Fig. 12).

Codes are grouped into the 19 chapters of :data:`ehrlib.data.icd9.CHAPTERS` (17 numeric
ranges, V codes = 18, E codes = 19) with :func:`ehrlib.data.icd9.chapters`. A code that is not
shaped like a dotless ICD-9 diagnosis code (3-5 digits, ``V`` + 2-4 digits, ``E`` + 3-4 digits)
goes to the ``unknown`` bucket, so an unmapped vocabulary shows up instead of being dropped.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ehrlib.cohort import CODE, SUBJECT
from ehrlib.data.icd9 import CHAPTER_NAMES, chapters
from ehrlib.metrics.longtail import _named

UNKNOWN = "unknown"
#: Chapter ids in figure order: "1".."19", then "unknown".
CHAPTER_ORDER = (*CHAPTER_NAMES, UNKNOWN)
_ICD9_SHAPE = r"^(?:\d{3,5}|V\d{2,4}|E\d{3,4})$"


def code_chapters(codes) -> np.ndarray:
    """Chapter id (``"1"``..``"19"`` or ``"unknown"``) of each code."""
    s = pd.Series(np.asarray(codes, dtype=object), dtype="string")
    out = chapters(s.to_numpy(dtype=object))
    shaped = s.str.fullmatch(_ICD9_SHAPE).fillna(False).to_numpy(dtype=bool)
    out = np.where(shaped & pd.notna(out), out, UNKNOWN).astype(object)
    return out


def chapter_prevalence(cohorts) -> pd.DataFrame:
    """Share of patients with at least one code in each ICD-9 chapter, per cohort (Fig. 12).

    Paper: appendix G.4, Fig. 12 ("the fraction of patients whose record contains at least
    one code in each chapter"), which is the meaning used here (not the share of code
    occurrences).

    Args:
        cohorts: ``name -> Cohort`` (include ``train``), or one Cohort (named ``train``).

    Returns:
        One row per model and chapter, chapters in :data:`CHAPTER_ORDER`: ``model``,
        ``chapter`` (``"1"``..``"19"``, ``"unknown"``), ``chapter_name``, ``patients``,
        ``share`` (patients / cohort patients; 0 where the cohort has no code in the chapter).
        The ``unknown`` rows appear only when some cohort has a code outside ICD-9.

    Raises:
        CohortError: a cohort without events.
    """
    named = _named(cohorts, default="train")
    counts = {}
    for name, cohort in named.items():
        ev = cohort.events
        codes = pd.unique(ev[CODE])
        mapping = pd.Series(code_chapters(codes), index=pd.Index(codes))
        pairs = pd.DataFrame({SUBJECT: ev[SUBJECT].to_numpy(), "chapter": mapping.reindex(ev[CODE]).to_numpy()})
        counts[name] = pairs.drop_duplicates().groupby("chapter").size()
    order = [c for c in CHAPTER_ORDER if c != UNKNOWN or any(UNKNOWN in v.index for v in counts.values())]
    names = {**CHAPTER_NAMES, UNKNOWN: "Not an ICD-9 code"}
    frames = []
    for name, cohort in named.items():
        n = counts[name].reindex(order, fill_value=0).to_numpy(np.int64)
        frames.append(pd.DataFrame({
            "model": name, "chapter": order, "chapter_name": [names[c] for c in order],
            "patients": n, "share": n / cohort.n_patients,
        }))
    return pd.concat(frames, ignore_index=True)
