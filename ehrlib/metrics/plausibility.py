"""Implausible records: generated records beyond anything the real data shows.

Paper: none (appendix G.1 shows record-length histograms, in which one generator's single visit
of hundreds of codes is one bar among many). This family (the book's page of stage 46) counts,
per generator, the share of records that go beyond train on any of:

* ``visits``: more visits than any train patient has;
* ``codes_per_visit``: a visit with more distinct codes than any train visit;
* ``code_repeats``: a code in more visits of one record than any code in any train record;
* ``sex_specific_code``: a code of one sex (:data:`SEX_SPECIFIC`) in a record of the other
  sex, where the cohort has demographics (NaN with the reason where it has none). The train
  share of such records is in the note: codes and sex are what the data says, so real data can
  hold a few.

The summary row :data:`ehrlib.metrics.names.IMPLAUSIBLE_SHARE` is the share of records with any
of them. A share of records is a binomial proportion: each row has a Wilson score interval
(``scipy.stats.binomtest``). The holdout reference row is the level real data reaches (a fresh
sample has a few records beyond train's maxima by chance).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ehrlib.cohort import CODE, SUBJECT, VISIT
from ehrlib.data.icd9 import CodeSet
from ehrlib.metrics import names

_CHAPTER = "ICD-9-CM tabular list (CMS/NCHS, FY2014)"
SEX_SPECIFIC = {
    "F": CodeSet("female", "Codes of female patients only",
                 ("174", "179", "180", "181", "182", "183", "184", *map(str, range(614, 680)), "V22", "V23", "V24",
                  "V27"),
                 f"{_CHAPTER}: 174 female breast, 179-184 uterus, cervix, placenta, ovary and other female genital "
                 "neoplasms, 614-629 diseases of female genital organs, 630-679 pregnancy, childbirth and the "
                 "puerperium, V22-V24 and V27 pregnancy and delivery"),
    "M": CodeSet("male", "Codes of male patients only", ("185", "186", "187", *map(str, range(600, 609))),
                 f"{_CHAPTER}: 185 prostate, 186 testis, 187 penis and other male genital neoplasms, 600-608 diseases "
                 "of male genital organs"),
}
"""The codes of one sex: patients of the other sex with such a code (key: the sex they belong to)."""


def _per_record(cohort) -> pd.DataFrame:
    """Per patient: visits, largest visit, most visits any one code appears in."""
    ev = cohort.events
    visits = ev.groupby(SUBJECT, sort=False)[VISIT].max() + 1
    largest = ev.groupby([SUBJECT, VISIT], sort=False).size().groupby(level=0, sort=False).max()
    repeats = ev.groupby([SUBJECT, CODE], sort=False).size().groupby(level=0, sort=False).max()
    return pd.DataFrame({"visits": visits, "codes_per_visit": largest, "code_repeats": repeats})


def sex_mismatch(cohort) -> pd.Series | None:
    """Per patient with a known sex: whether the record holds a code of the other sex (None without demographics)."""
    demo = cohort.demographics
    if demo is None or "sex" not in demo or demo["sex"].isna().all():
        return None
    sex = demo.set_index(SUBJECT)["sex"]
    ev = cohort.events[[SUBJECT, CODE]].drop_duplicates()
    codes = ev[CODE].astype(str)
    belongs = pd.Series(pd.NA, index=ev.index, dtype="object")
    for s, cs in SEX_SPECIFIC.items():
        belongs[codes.str.startswith(cs.prefixes).to_numpy()] = s
    own = ev[SUBJECT].map(sex)
    bad = belongs.notna() & own.notna() & (belongs != own)
    out = bad.groupby(ev[SUBJECT], sort=False).any()
    return out[out.index.isin(sex.dropna().index)]


def _wilson(k: int, n: int, level: float) -> tuple[float, float]:
    from scipy.stats import binomtest

    if n == 0:
        return np.nan, np.nan
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def plausibility_from_context(context, name: str, *, level: float = 0.95) -> pd.DataFrame:
    """The plausibility family of one synthetic cohort of an :class:`ehrlib.metrics.context.EvaluationContext`.

    Rows: ``implausible_share:<kind>`` per :data:`ehrlib.metrics.names.IMPLAUSIBLE_KINDS` and the
    summary :data:`ehrlib.metrics.names.IMPLAUSIBLE_SHARE`, each with a Wilson interval.
    """
    def real_side():
        rec = _per_record(context.train)
        mism = sex_mismatch(context.train)
        return rec.max(), (None if mism is None else (int(mism.sum()), len(mism)))
    limits, real_sex = context.memo("plausibility_real", real_side)
    cohort = context.synthetic[name]
    rec = _per_record(cohort)
    beyond = rec > limits
    rows = []
    n = len(rec)
    ci = f"Wilson {level:.0%} interval over {n} records"
    what = {"visits": "more visits", "codes_per_visit": "a visit with more distinct codes",
            "code_repeats": "a code in more visits"}
    for kind in names.IMPLAUSIBLE_KINDS[:3]:
        k = int(beyond[kind].sum())
        rows.append({"metric": names.task_metric(names.IMPLAUSIBLE_SHARE, kind), "estimate": k / n,
                     "ci_low": _wilson(k, n, level)[0], "ci_high": _wilson(k, n, level)[1], "spread": np.nan,
                     "note": f"records with {what[kind]} than any train record (train maximum {int(limits[kind])}); "
                             f"{ci}"})
    any_bad = beyond.any(axis=1)
    mism = sex_mismatch(cohort)
    kind = names.IMPLAUSIBLE_KINDS[3]
    if mism is None:
        rows.append({"metric": names.task_metric(names.IMPLAUSIBLE_SHARE, kind), "estimate": np.nan, "ci_low": np.nan,
                     "ci_high": np.nan, "spread": np.nan,
                     "note": f"not judged: {name} has no demographics (no sex to check codes against)"})
    else:
        k, m = int(mism.sum()), len(mism)
        train_part = ("train has no demographics" if real_sex is None else
                      f"train: {real_sex[0]} of {real_sex[1]} records ({real_sex[0] / max(real_sex[1], 1):.2%})")
        rows.append({"metric": names.task_metric(names.IMPLAUSIBLE_SHARE, kind), "estimate": k / m if m else np.nan,
                     "ci_low": _wilson(k, m, level)[0], "ci_high": _wilson(k, m, level)[1], "spread": np.nan,
                     "note": f"records with a code of the other sex ({m} with a known sex; code sets from the "
                             f"ICD-9-CM chapters); {train_part}; Wilson {level:.0%} interval"})
        any_bad = any_bad | mism.reindex(any_bad.index, fill_value=False).astype(bool)
    k = int(any_bad.sum())
    rows.append({"metric": names.IMPLAUSIBLE_SHARE, "estimate": k / n, "ci_low": _wilson(k, n, level)[0],
                 "ci_high": _wilson(k, n, level)[1], "spread": np.nan,
                 "note": f"records with any implausibility above ({', '.join(names.IMPLAUSIBLE_KINDS[:3])}"
                         f"{', ' + kind if mism is not None else ''}); {ci}"})
    return pd.DataFrame(rows)
