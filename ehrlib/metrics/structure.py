"""Dataset-level structure statistics (paper Table 12, Figs. 9-11).

Paper: appendix G.1. Statistics are computed on canonical cohorts (missing codes dropped,
codes de-duplicated within a visit), which is how the paper's Table 12 was produced.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ehrlib.cohort import CODE, SUBJECT, Cohort
from ehrlib.metrics.longtail import _named

SUMMARY_KEYS = ("patients", "visits", "visits_per_patient", "codes_per_visit", "codes_per_patient", "unique_codes")
#: The quantities of :func:`distributions`, in figure order (Figs. 9, 10, 11).
DISTRIBUTION_QUANTITIES = ("visits_per_patient", "codes_per_visit", "codes_per_patient")


def summary(cohort: Cohort) -> dict:
    """The Table 12 row of a cohort.

    Returns:
        dict with ``patients``, ``visits``, ``visits_per_patient``, ``codes_per_visit``
        (distinct codes per visit, averaged over visits), ``codes_per_patient`` (distinct
        codes per patient: a code recurring in several visits counts once, as in the paper's
        Table 12, where HALO has 9.71 codes/patient < 1.32 visits x 8.17 codes/visit) and
        ``unique_codes``.
    """
    patients = cohort.n_patients
    visits = cohort.n_visits
    events = cohort.n_events
    patient_codes = len(cohort.events.drop_duplicates([SUBJECT, CODE])) if events else 0
    return {
        "patients": patients,
        "visits": visits,
        "visits_per_patient": visits / patients if patients else float("nan"),
        "codes_per_visit": events / visits if visits else float("nan"),
        "codes_per_patient": patient_codes / patients if patients else float("nan"),
        "unique_codes": int(cohort.events[CODE].nunique()),
    }


def summary_table(cohorts: dict[str, Cohort]) -> pd.DataFrame:
    """Table 12: one row per named cohort."""
    rows = [{"dataset": name, **summary(c)} for name, c in cohorts.items()]
    return pd.DataFrame(rows, columns=["dataset", *SUMMARY_KEYS])


def _histogram(values) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(np.asarray(values, dtype=np.int64), return_counts=True)


def distributions(cohorts: dict[str, Cohort]) -> pd.DataFrame:
    """Distributions of visits per patient, codes per visit and codes per patient (Figs. 9-11).

    * ``visits_per_patient``: number of visits of each patient (unit: patients);
    * ``codes_per_visit``: distinct codes in each visit (unit: visits);
    * ``codes_per_patient``: distinct codes in each patient's whole record (unit: patients).
      This follows Fig. 11 ("unique codes across a patient's full record"). Code occurrences
      summed over visits (a code in two visits counted twice) would be larger for multi-visit
      records; the two coincide for single-visit (flat) cohorts.

    Paper: appendix G.3, Figs. 9-11. The paper plots only the sequential models in Fig. 9
    (flat models have one visit by construction); this function returns every cohort it is
    given and leaves the choice to the caller.

    Args:
        cohorts: ``name -> Cohort`` (include ``train``), or one Cohort (named ``train``).

    Returns:
        A histogram in long form, one row per model, quantity and observed value: ``model``,
        ``quantity`` (one of :data:`DISTRIBUTION_QUANTITIES`), ``value`` (int), ``count``
        (patients or visits with that value), ``share`` (count over the total of the model and
        quantity; sums to 1), ``mean`` and ``median`` of the quantity for the model.

    Raises:
        CohortError: a cohort without events.
    """
    frames = []
    for name, cohort in _named(cohorts, default="train").items():
        ev = cohort.events
        per_quantity = {
            "visits_per_patient": cohort.visits_per_patient().to_numpy(),
            "codes_per_visit": cohort.codes_per_visit().to_numpy(),
            "codes_per_patient": ev.drop_duplicates([SUBJECT, CODE]).groupby(SUBJECT, sort=False).size().to_numpy(),
        }
        for quantity in DISTRIBUTION_QUANTITIES:
            raw = per_quantity[quantity]
            values, counts = _histogram(raw)
            frames.append(pd.DataFrame({
                "model": name, "quantity": quantity, "value": values, "count": counts,
                "share": counts / counts.sum(), "mean": float(np.mean(raw)), "median": float(np.median(raw)),
            }))
    return pd.concat(frames, ignore_index=True)


def sweep_table(train: Cohort, cohorts: dict, key: str = "setting", seed: int = 0) -> pd.DataFrame:
    """One row per setting of a generation sweep (e.g. PromptEHR's α, Fig. 14).

    Args:
        train: the real training cohort (the truth of prevalence R² and the ``real_*`` columns).
        cohorts: setting value -> synthetic cohort generated with it.
        key: the name of the setting column.

    Returns:
        ``key``, ``prevalence_r2`` (against ``train``, on the union of codes), the Table 12
        structure of each cohort (``visits_per_patient``, ``codes_per_visit``,
        ``codes_per_patient``, ``unique_codes``) and the real values as ``real_<quantity>``,
        measured on a random subsample of ``train`` as large as the first synthetic cohort
        (seeded by ``seed``): unique codes grow with the sample size, so only equal sizes compare.
    """
    from ehrlib.metrics.prevalence import prevalence_metrics

    n = min(next(iter(cohorts.values())).n_patients, train.n_patients) if cohorts else train.n_patients
    ids = np.random.default_rng(seed).choice(np.asarray(train.subject_ids, dtype=object), size=n, replace=False)
    real = summary(train.subset(list(ids)))
    quantities = ("visits_per_patient", "codes_per_visit", "codes_per_patient", "unique_codes")
    rows = []
    for value, cohort in cohorts.items():
        s = summary(cohort)
        rows.append({key: value, "prevalence_r2": prevalence_metrics(train, cohort)["prevalence_r2"],
                     **{q: s[q] for q in quantities}, **{f"real_{q}": real[q] for q in quantities}})
    return pd.DataFrame(rows)
