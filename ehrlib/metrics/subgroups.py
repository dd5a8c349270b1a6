"""Subgroup fidelity: per-code prevalence within sex and age bands, where a generator emits demographics.

Paper: none (section 3.1 compares prevalence over whole cohorts). A generator that conditions
on demographics (PromptEHR generates from age and sex) can be asked whether its women's
records look like real women's. For each subgroup (:data:`SUBGROUPS`: sex, then age bands) with
at least :data:`MIN_PATIENTS` patients in train, in the holdout split and in the synthetic
cohort, this family (the book's page of stage 46) reports the prevalence R² and Pearson r of
the synthetic subgroup against train's same subgroup, and the same two for the real holdout
split's subgroup: the ceiling, what real patients no generator saw reach at that size. Each has
the prevalence family's basic bootstrap interval (patients of both sides resampled, B as the
profile says, the train subgroup's resamples shared by the holdout and every generator).

A cohort without a demographics table (the flat GANs, HALO, GPT and the reference generators,
whose records are copied or sampled without the table) cannot be judged this way: its one row
:data:`ehrlib.metrics.names.SUBGROUP_JUDGED` is 0 and says so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ehrlib.cohort import SUBJECT
from ehrlib.metrics import names

AGE_BANDS = ((0, 18, "0-17"), (18, 45, "18-44"), (45, 65, "45-64"), (65, np.inf, "65+"))
"""Age bands ``[low, high)`` in years, with their labels."""
SUBGROUPS = (("sex", "F"), ("sex", "M"), *(("age", label) for *_, label in AGE_BANDS))
MIN_PATIENTS = 50
"""A subgroup is judged when train, holdout and the synthetic cohort each have this many patients in it."""


def subgroup_ids(cohort, column: str, value: str) -> np.ndarray | None:
    """Subject ids of ``cohort``'s patients in the subgroup (None without demographics)."""
    demo = cohort.demographics
    if demo is None or column not in demo or demo[column].isna().all():
        return None
    if column == "sex":
        keep = demo["sex"] == value
    else:
        low, high = next((lo, hi) for lo, hi, label in AGE_BANDS if label == value)
        age = pd.to_numeric(demo["age"], errors="coerce")
        keep = (age >= low) & (age < high)
    return demo.loc[keep.fillna(False).to_numpy(), SUBJECT].to_numpy()


def _label(column, value) -> str:
    return f"{column}={value}"


def subgroups_from_context(context, name: str, *, n_bootstrap: int = 1000, seed: int = 0,
                           level: float = 0.95) -> pd.DataFrame:
    """The subgroup family of one synthetic cohort of an :class:`ehrlib.metrics.context.EvaluationContext`.

    Rows :func:`ehrlib.metrics.names.task_metric` ``(stat, "sex=F")`` ... per
    :data:`ehrlib.metrics.names.SUBGROUP_STATS` and the summary ``subgroups_judged``.
    """
    from ehrlib.data.encode import Vocabulary
    from ehrlib.metrics.bootstrap import RealResamples, interval_table, prevalence_replicates
    from ehrlib.metrics.prevalence import pearson, r2

    cohort = context.synthetic[name]

    def row(metric, est, low=np.nan, high=np.nan, note=""):
        return {"metric": metric, "estimate": float(est), "ci_low": float(low), "ci_high": float(high),
                "spread": np.nan, "note": note}

    if subgroup_ids(cohort, "sex", "F") is None and subgroup_ids(cohort, "age", AGE_BANDS[0][2]) is None:
        return pd.DataFrame([row(names.SUBGROUP_JUDGED, 0, note=(
            f"not judged: {name} emits no demographics (no sex or age per record), so its records cannot be "
            "grouped; only generators that generate demographics (PromptEHR) are"))])
    rows, judged = [], []
    ci = f"basic bootstrap interval, B={n_bootstrap}, patients of both sides resampled independently"
    for column, value in SUBGROUPS:
        label = _label(column, value)
        ids = {"train": subgroup_ids(context.train, column, value), "holdout": subgroup_ids(context.holdout, column, value),
               name: subgroup_ids(cohort, column, value)}
        sizes = {k: (0 if v is None else len(v)) for k, v in ids.items()}
        if min(sizes.values()) < MIN_PATIENTS:
            why = (f"skipped: {', '.join(f'{k} {v}' for k, v in sizes.items())} patients in {label}, fewer than "
                   f"{MIN_PATIENTS} somewhere")
            rows += [row(names.task_metric(s, label), np.nan, note=why) for s in names.SUBGROUP_STATS]
            continue

        def real_part(column=column, value=value, ids=ids):
            part = context.train.subset(ids["train"])
            return part, RealResamples.draw(part, n_bootstrap, seed), context.holdout.subset(ids["holdout"])
        train_g, resamples, holdout_g = context.memo(("subgroup_real", label, n_bootstrap, seed), real_part)
        syn_g = cohort.subset(ids[name])
        metrics = {names.PREVALENCE_R2: r2, names.PREVALENCE_PEARSON: pearson}

        def scored(other, vocab):
            est, reps = prevalence_replicates(train_g, other, None, seed, resamples, vocab, metrics)
            return interval_table(est, reps, level).set_index("metric")
        ceiling = context.memo(("subgroup_ceiling", label, n_bootstrap, seed), lambda: scored(
            holdout_g, Vocabulary.from_cohorts(train_g, holdout_g)))
        ours = scored(syn_g, Vocabulary.from_cohorts(train_g, syn_g))
        base = f"{label}: {sizes['train']} train, {sizes[name]} {name} patients"
        for stat, table, metric, who in ((names.SUBGROUP_STATS[0], ours, names.PREVALENCE_R2, name),
                                         (names.SUBGROUP_STATS[1], ours, names.PREVALENCE_PEARSON, name),
                                         (names.SUBGROUP_STATS[2], ceiling, names.PREVALENCE_R2, "holdout"),
                                         (names.SUBGROUP_STATS[3], ceiling, names.PREVALENCE_PEARSON, "holdout")):
            r = table.loc[metric]
            extra = f" (the ceiling: {sizes['holdout']} holdout patients)" if who == "holdout" else ""
            rows.append(row(names.task_metric(stat, label), r.estimate, r.ci_low, r.ci_high,
                            f"prevalence {metric.split('_')[1]} of {who} against train within {base}{extra}; {ci}"))
        judged.append(label)
    rows.append(row(names.SUBGROUP_JUDGED, len(judged), note=(
        f"subgroups with at least {MIN_PATIENTS} patients on every side: {', '.join(judged) or 'none'}")))
    return pd.DataFrame(rows)
