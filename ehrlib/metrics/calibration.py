"""How MIMIC-like the simulated cohort is: the simulated cohort beside public references.

The references are the open MIMIC-III demo, the ICD-9 part of the open MIMIC-IV demo and the
HALO sample released with the paper (a generator trained on the paper's MIMIC-III training
split); the paper's own real row of Table 12 is the target for the structure statistics. Every
function takes the simulated cohort and ``references`` (name -> Cohort) and returns a tidy
DataFrame; :func:`calibration_checks` compares the results with the calibration targets.

Paper: Table 12 (structure), Fig. 5 (top-20 codes), Fig. 12 (chapters), section 3.1
(prevalence Pearson r) and Fig. 13 / Table 14 (top-50 co-occurrence cosine), applied here to
the simulated cohort against public references instead of a model against the training split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.cohort import Cohort
from ehrlib.metrics.chapters import chapter_prevalence
from ehrlib.metrics.cooccurrence import cooccurrence_similarity
from ehrlib.metrics.longtail import code_counts, top_codes
from ehrlib.metrics.prevalence import pearson
from ehrlib.metrics.structure import SUMMARY_KEYS, summary_table

SIMULATED = "simulated"
#: The paper's real (training split) row of Table 12.
PAPER_REAL_ROW = {"patients": 45_517, "visits": 57_683, "visits_per_patient": 1.27, "codes_per_visit": 11.04,
                  "codes_per_patient": 12.61, "unique_codes": 6_955}
#: Reference names, in the order they are loaded by :func:`load_references`.
REFERENCES = ("mimic3_demo", "mimic4_demo_icd9", "halo_sample")
#: The calibration targets at 46,520 simulated patients (issue "a simulated cohort a clinician
#: would recognise"): check -> (reference, lower bound, upper bound).
TARGETS = {
    "prevalence_pearson_shared": {"mimic3_demo": (0.85, 1.0), "halo_sample": (0.9, 1.0)},
    "top20_overlap": {"mimic3_demo": (14, 20)},
    "cooccurrence_cosine": {"halo_sample": (0.85, 1.0)},
    "chapter_max_abs_diff": {"pooled_profile": (0.0, 0.1)},
    "visits_per_patient": {"paper_real": (1.15, 1.40)},
    "codes_per_visit": {"paper_real": (9.0, 13.0)},
    "unique_codes": {"paper_real": (6_000, 8_000)},
}


def load_references(data_dir) -> dict[str, Cohort]:
    """The three public references from a data folder laid out as the registry lays it out.

    Args:
        data_dir: folder holding ``mimic-iii-demo/``, ``mimic-iv-demo/`` and
            ``paper-samples/synthetic_10k_halo.csv``.

    Returns:
        ``{"mimic3_demo", "mimic4_demo_icd9", "halo_sample"}`` -> Cohort.
    """
    from ehrlib.data import load_mimic3, load_mimic4, read_long

    root = Path(data_dir)
    return {
        "mimic3_demo": load_mimic3(root / "mimic-iii-demo"),
        "mimic4_demo_icd9": load_mimic4(root / "mimic-iv-demo", icd_version=9),
        "halo_sample": read_long(root / "paper-samples" / "synthetic_10k_halo.csv"),
    }


def _all(simulated: Cohort, references: dict[str, Cohort]) -> dict[str, Cohort]:
    if SIMULATED in references:
        raise ValueError(f"{SIMULATED!r} is reserved for the simulated cohort; rename that reference")
    return {SIMULATED: simulated, **references}


def structure_table(simulated: Cohort, references: dict[str, Cohort]) -> pd.DataFrame:
    """Table 12 statistics of the simulated cohort, the references and the paper's real row.

    Returns:
        One row per dataset (``simulated``, the references, ``paper_real``), columns
        ``dataset`` and :data:`ehrlib.metrics.structure.SUMMARY_KEYS`.
    """
    table = summary_table(_all(simulated, references))
    paper = pd.DataFrame([{"dataset": "paper_real", **PAPER_REAL_ROW}], columns=["dataset", *SUMMARY_KEYS])
    return pd.concat([table, paper], ignore_index=True)


def top_codes_table(simulated: Cohort, reference: Cohort, k: int = 20, reference_name: str = "reference") -> pd.DataFrame:
    """The ``k`` most prevalent codes of ``reference`` with their prevalence in the simulated cohort (Fig. 5).

    Returns:
        :func:`ehrlib.metrics.longtail.top_codes` rows plus ``in_simulated_top`` (the code is
        among the simulated cohort's ``k`` most prevalent codes).
    """
    out = top_codes(reference, {SIMULATED: simulated}, k=k, real_name=reference_name)
    sim_top = set(_top(code_counts(simulated), k))
    return out.assign(in_simulated_top=out["code"].isin(sim_top).to_numpy())


def _top(counts: pd.Series, k: int) -> list[str]:
    order = np.lexsort((counts.index.to_numpy(dtype=str), -counts.to_numpy()))
    return counts.index[order[:k]].tolist()


def top_code_overlap(simulated: Cohort, references: dict[str, Cohort], k: int = 20) -> pd.DataFrame:
    """How many of each reference's ``k`` most prevalent codes are among the simulated top ``k``.

    Ranks as in :func:`ehrlib.metrics.longtail.top_codes` (patients with the code, ties broken
    by code).

    Returns:
        ``reference``, ``k``, ``overlap`` (0..k), ``missing`` (the reference's top codes that the
        simulated top lacks, comma-separated, in reference rank order).
    """
    sim_top = set(_top(code_counts(simulated), k))
    rows = []
    for name, ref in references.items():
        top = _top(code_counts(ref), k)
        rows.append({"reference": name, "k": k, "overlap": sum(c in sim_top for c in top),
                     "missing": ",".join(c for c in top if c not in sim_top)})
    return pd.DataFrame(rows, columns=["reference", "k", "overlap", "missing"])


def prevalence_correlation(simulated: Cohort, references: dict[str, Cohort]) -> pd.DataFrame:
    """Pearson r of per-code patient prevalence, simulated against each reference.

    Two code axes: the codes both cohorts hold (``pearson_shared``: does the simulated cohort
    rank the reference's codes right?) and their union (``pearson_union``: absent codes count
    as prevalence 0 on that side, as in the paper's prevalence metric,
    :func:`ehrlib.metrics.prevalence.pearson`).

    Returns:
        ``reference``, ``n_shared``, ``n_union``, ``pearson_shared``, ``pearson_union``.
    """
    sim = code_counts(simulated) / simulated.n_patients
    rows = []
    for name, ref in references.items():
        p = code_counts(ref) / ref.n_patients
        union = p.index.union(sim.index)
        p_ref = p.reindex(union, fill_value=0).to_numpy(np.float64)
        p_sim = sim.reindex(union, fill_value=0).to_numpy(np.float64)
        shared = (p_ref > 0) & (p_sim > 0)
        rows.append({"reference": name, "n_shared": int(shared.sum()), "n_union": len(union),
                     "pearson_shared": pearson(p_ref[shared], p_sim[shared]) if shared.sum() > 1 else float("nan"),
                     "pearson_union": pearson(p_ref, p_sim)})
    return pd.DataFrame(rows)


def chapter_table(simulated: Cohort, references: dict[str, Cohort], pooled: pd.DataFrame | None = None) -> pd.DataFrame:
    """Share of patients with a code in each ICD-9 chapter (Fig. 12), one column per cohort.

    Args:
        pooled: optional ``chapter``/``pooled`` frame (the code profile's pooled chapter
            shares, :attr:`ehrlib.data.codeprofile.CodeProfile.chapters`), added as the column
            ``pooled_profile`` with ``diff_pooled = simulated - pooled_profile``.

    Returns:
        One row per chapter: ``chapter``, ``chapter_name``, ``simulated``, each reference's share.
    """
    long = chapter_prevalence(_all(simulated, references))
    wide = long.pivot_table(index=["chapter", "chapter_name"], columns="model", values="share", sort=False)
    wide = wide[[SIMULATED, *references]].reset_index()
    wide.columns.name = None
    if pooled is not None:
        wide["pooled_profile"] = pooled.set_index("chapter")["pooled"].reindex(wide["chapter"]).to_numpy()
        wide["diff_pooled"] = wide[SIMULATED] - wide["pooled_profile"]
    return wide


def cooccurrence_table(simulated: Cohort, references: dict[str, Cohort], k: int = 50) -> pd.DataFrame:
    """Cosine and Frobenius distance of the simulated top-``k`` co-occurrence matrix to each reference's (Table 14).

    The head codes are each reference's ``k`` most prevalent codes
    (:func:`ehrlib.metrics.cooccurrence.cooccurrence_similarity` with the reference as ``train``).

    Returns:
        ``reference``, ``cosine``, ``frobenius``, ``n_codes`` (head codes the simulated cohort emits).
    """
    rows = []
    for name, ref in references.items():
        r = cooccurrence_similarity(ref, {SIMULATED: simulated}, k=k).iloc[0]
        rows.append({"reference": name, "cosine": r["cosine"], "frobenius": r["frobenius"], "n_codes": r["n_codes"]})
    return pd.DataFrame(rows)


def calibration_checks(simulated: Cohort, references: dict[str, Cohort], pooled: pd.DataFrame | None = None,
                       targets: dict | None = None) -> pd.DataFrame:
    """Every calibration statistic beside its target range.

    Args:
        simulated: the simulated cohort (the targets are set for 46,520 patients).
        references: name -> Cohort, as from :func:`load_references`; checks whose reference
            is absent are left out.
        pooled: the code profile's chapter table (needed for the chapter check).
        targets: check -> reference -> (low, high); default :data:`TARGETS`.

    Returns:
        ``check``, ``reference``, ``value``, ``low``, ``high``, ``passed`` (low <= value <= high).
    """
    targets = TARGETS if targets is None else targets
    values: dict[tuple[str, str], float] = {}
    for r in prevalence_correlation(simulated, references).itertuples():
        values[("prevalence_pearson_shared", r.reference)] = r.pearson_shared
    for r in top_code_overlap(simulated, references, k=20).itertuples():
        values[("top20_overlap", r.reference)] = r.overlap
    for r in cooccurrence_table(simulated, references, k=50).itertuples():
        values[("cooccurrence_cosine", r.reference)] = r.cosine
    if pooled is not None:
        ch = chapter_table(simulated, {}, pooled=pooled)
        values[("chapter_max_abs_diff", "pooled_profile")] = float(ch["diff_pooled"].abs().max())
    s = structure_table(simulated, {}).iloc[0]
    for key in ("visits_per_patient", "codes_per_visit", "unique_codes"):
        values[(key, "paper_real")] = float(s[key])
    rows = []
    for check, per_ref in targets.items():
        for ref, (low, high) in per_ref.items():
            if (check, ref) in values:
                v = float(values[(check, ref)])
                rows.append({"check": check, "reference": ref, "value": v, "low": low, "high": high,
                             "passed": bool(low <= v <= high)})
    return pd.DataFrame(rows, columns=["check", "reference", "value", "low", "high", "passed"])
