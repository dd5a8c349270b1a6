"""Dataset-level structure statistics (paper Table 12, Figs. 9-11).

Paper: appendix G.1. Statistics are computed on canonical cohorts (missing codes dropped,
codes de-duplicated within a visit), which is how the paper's Table 12 was produced.
"""
from __future__ import annotations

import pandas as pd

from ehrlib.cohort import CODE, Cohort

SUMMARY_KEYS = ("patients", "visits", "visits_per_patient", "codes_per_visit", "codes_per_patient", "unique_codes")


def summary(cohort: Cohort) -> dict:
    """The Table 12 row of a cohort.

    Returns:
        dict with ``patients``, ``visits``, ``visits_per_patient``, ``codes_per_visit``
        (distinct codes per visit, averaged over visits), ``codes_per_patient`` (code
        occurrences per patient, summed over visits) and ``unique_codes``.
    """
    patients = cohort.n_patients
    visits = cohort.n_visits
    events = cohort.n_events
    return {
        "patients": patients,
        "visits": visits,
        "visits_per_patient": visits / patients if patients else float("nan"),
        "codes_per_visit": events / visits if visits else float("nan"),
        "codes_per_patient": events / patients if patients else float("nan"),
        "unique_codes": int(cohort.events[CODE].nunique()),
    }


def summary_table(cohorts: dict[str, Cohort]) -> pd.DataFrame:
    """Table 12: one row per named cohort."""
    rows = [{"dataset": name, **summary(c)} for name, c in cohorts.items()]
    return pd.DataFrame(rows, columns=["dataset", *SUMMARY_KEYS])
