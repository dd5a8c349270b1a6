"""Temporal fidelity: what follows what from one visit to the next, and the record-length distributions.

Paper: appendix G.1 compares visits per patient, codes per visit and codes per patient by their
means (Table 12) and histograms (Figs. 9-11); nothing in the paper compares the order of visits.
This family (the book's page of stage 45) adds:

* **transitions** of the :data:`TOP_CODES` most prevalent train codes: ``T[i, j]`` = P(code j in
  visit t+1 | code i in visit t), pooled over every pair of consecutive visits of a cohort. Rows
  whose code opens fewer than :data:`MIN_PAIRS` train visit pairs are left out. Reported against
  train: RMSE over the compared cells (a row the synthetic cohort never opens counts as 0) and
  Pearson r; the holdout reference row is the ceiling (real data that no generator saw);
* **persistence**: the diagonal ``T[i, i]`` (RMSE against train) and the pooled share of a
  visit's codes (any code) that recur in the next visit (the rate, and its gap to train's);
* **distributions** of visits per patient, distinct codes per visit and distinct codes per
  patient: the 1-Wasserstein distance to train's (``scipy.stats.wasserstein_distance``), not
  only the means.

Every row has a basic bootstrap interval: patients of train and of the synthetic cohort
resampled independently (a patient's visits stay together), B as the profile says, the train
side drawn once per context and shared by every generator (paired).

Transitions and persistence need a sequential cohort: a flat generator (one visit per patient)
gets NaN rows saying so. A cohort whose visits are an **encoding artifact**, each visit
contained in the one before for nearly every multi-visit patient (:func:`nested_visit_share`
at least :data:`ARTIFACT_SHARE`: MedGAN's count mode writes a code counted k times into visits
0..k-1), is left out of every sequential comparison, with the measured share in the note.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ehrlib.cohort import CODE, SUBJECT, VISIT
from ehrlib.metrics import names

TOP_CODES = 20
"""Transitions are compared among this many most prevalent train codes."""
MIN_PAIRS = 20
"""A transition row is compared when its code opens at least this many train visit pairs."""
ARTIFACT_SHARE = 0.9
"""A cohort is an encoding artifact when at least this share of its multi-visit patients have nested visits."""
MIN_SEQUENTIAL = 20
"""Nested-visit shares and transitions need at least this many patients with two visits or more."""
QUANTITIES = ("visits_per_patient", "codes_per_visit", "codes_per_patient")
"""The distributions compared by Wasserstein distance (Table 12's quantities, Figs. 9-11)."""


# ---------------------------------------------------------------------------- per-cohort pieces
def is_sequential(cohort) -> bool:
    """True when some patient of ``cohort`` has two visits or more (flat generators emit one)."""
    return bool(cohort.n_events and int(cohort.events["visit_id"].max()) >= 1)


def _patients(cohort):
    """``(events, patient of each event, visit of each event, visits per patient)``, kept with the cohort."""
    ev = cohort.events
    if "temporal_patients" not in cohort._cache:
        pat, subjects = pd.factorize(ev[SUBJECT], sort=False)
        vis = ev[VISIT].to_numpy(np.int64)
        nv = np.zeros(len(subjects), np.int64)
        np.maximum.at(nv, pat, vis + 1)
        cohort._cache["temporal_patients"] = (pat, vis, nv)
    return (ev, *cohort._cache["temporal_patients"])


def _event_keys(cohort):
    """One int64 per event, (patient, visit, code), and the key of the same code one visit later."""
    ev, pat, vis, nv = _patients(cohort)
    code, uniques = pd.factorize(ev[CODE], sort=False)
    width = np.int64(max(len(uniques), 1))
    depth = np.int64(int(nv.max()) + 2 if len(nv) else 2)
    key = (pat.astype(np.int64) * depth + vis) * width + code
    return ev, pat, vis, nv, key, width


def nested_visit_share(cohort) -> tuple[float, int]:
    """``(share, m)``: of the ``m`` patients with two visits or more, the share whose every visit
    after the first is contained in the visit before it (NaN when ``m`` is 0). Kept with the cohort."""
    if "nested_visit_share" not in cohort._cache:
        ev, pat, vis, nv, key, width = _event_keys(cohort)
        later = vis >= 1
        found = np.isin(key[later] - width, key)  # the same code, one visit earlier
        missing = np.zeros(len(nv), bool)
        missing[pat[later][~found]] = True
        multi = nv >= 2
        m = int(multi.sum())
        cohort._cache["nested_visit_share"] = ((float((~missing[multi]).mean()) if m else float("nan")), m)
    return cohort._cache["nested_visit_share"]


def encoding_artifact(cohort) -> str:
    """Why ``cohort``'s visits are an encoding artifact (:func:`nested_visit_share` at least
    :data:`ARTIFACT_SHARE` over at least :data:`MIN_SEQUENTIAL` multi-visit patients), or ''."""
    share, m = nested_visit_share(cohort)
    if m >= MIN_SEQUENTIAL and share >= ARTIFACT_SHARE:
        return (f"encoding artifact: {share:.1%} of its {m} multi-visit patients have every visit contained in the "
                f"one before (at least {ARTIFACT_SHARE:.0%} marks it; a count-mode decoder writes a code counted k "
                "times into visits 0..k-1), so its visits carry no order; left out of the sequential comparison")
    return ""


def _transition_counts(cohort, top_codes) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: ``J`` (n x K*K) counts of (code i in visit t, code j in visit t+1) and ``C``
    (n x K) counts of visits t with code i that have a next visit (top codes only)."""
    ev, pat, vis, nv = _patients(cohort)
    k = len(top_codes)
    col = pd.Index(top_codes).get_indexer(ev[CODE].to_numpy())
    offsets = np.cumsum(nv) - nv
    row = offsets[pat] + vis
    keep = col >= 0
    m = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (row[keep], col[keep])), shape=(int(nv.sum()), k))
    m.data[:] = 1.0
    visit_patient = np.repeat(np.arange(len(nv)), nv)
    visit_index = np.arange(int(nv.sum())) - np.repeat(offsets, nv)
    has_next = np.flatnonzero(visit_index < np.repeat(nv - 1, nv))
    prev, nxt = m[has_next].toarray(), m[has_next + 1].toarray()
    joint = np.einsum("pi,pj->pij", prev, nxt).reshape(len(has_next), k * k)
    agg = sp.csr_matrix((np.ones(len(has_next), np.float32), (visit_patient[has_next], np.arange(len(has_next)))),
                        shape=(len(nv), len(has_next)))
    return np.asarray(agg @ joint, np.float64), np.asarray(agg @ prev, np.float64)


def _persistence_counts(cohort) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: codes of visits with a next visit that recur in it, and all codes of those visits."""
    ev, pat, vis, nv, key, width = _event_keys(cohort)
    opens = vis < nv[pat] - 1
    recur = np.isin(key[opens] + width, key)
    num = np.bincount(pat[opens], weights=recur.astype(float), minlength=len(nv))
    den = np.bincount(pat[opens], minlength=len(nv)).astype(float)
    return num, den


def _histograms(cohort) -> dict[str, tuple[sp.csr_matrix, np.ndarray]]:
    """Per quantity: per-patient counts of each value (n x max+1) and the raw values."""
    ev, pat, vis, nv = _patients(cohort)
    n = len(nv)
    per_visit = pd.DataFrame({"p": pat, "v": vis}).value_counts(sort=False)
    cpv_pat = per_visit.index.get_level_values("p").to_numpy()
    cpv = per_visit.to_numpy()
    cpp = pd.DataFrame({"p": pat, "c": ev[CODE].to_numpy()}).drop_duplicates().groupby("p").size()
    cpp = cpp.reindex(np.arange(n), fill_value=0).to_numpy()
    out = {}
    for q, (owner, values) in {"visits_per_patient": (np.arange(n), nv), "codes_per_visit": (cpv_pat, cpv),
                               "codes_per_patient": (np.arange(n), cpp)}.items():
        h = sp.csr_matrix((np.ones(len(values)), (owner, values)), shape=(n, int(values.max()) + 1))
        out[q] = (h, np.asarray(values, np.float64))
    return out


def _w1_from_histograms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1-Wasserstein distance between integer-valued distributions given as (..., M) counts."""
    m = max(a.shape[-1], b.shape[-1])
    a = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, m - a.shape[-1])])
    b = np.pad(b, [(0, 0)] * (b.ndim - 1) + [(0, m - b.shape[-1])])
    ca = np.cumsum(a, axis=-1) / a.sum(axis=-1, keepdims=True)
    cb = np.cumsum(b, axis=-1) / b.sum(axis=-1, keepdims=True)
    return np.abs(ca - cb).sum(axis=-1)


# ---------------------------------------------------------------------------- cohort summaries + replicates
def _summary(cohort, top_codes, weights):
    """Point statistics and their bootstrap replicates (``weights``: B x n patient weights)."""
    joint, opens = _transition_counts(cohort, top_codes)
    num, den = _persistence_counts(cohort)
    hist = _histograms(cohort)
    out = {"joint": joint.sum(0), "opens": opens.sum(0), "num": num.sum(), "den": den.sum(),
           "joint_b": weights @ joint, "opens_b": weights @ opens, "num_b": weights @ num, "den_b": weights @ den,
           "values": {q: v for q, (h, v) in hist.items()},
           "hist": {q: np.asarray(h.sum(axis=0)).ravel() for q, (h, v) in hist.items()},
           "hist_b": {q: np.asarray(h.T @ weights.T).T for q, (h, v) in hist.items()}}
    return out


def _weights(n: int, n_bootstrap: int, seed: int, stream: int) -> np.ndarray:
    from ehrlib.metrics.bootstrap import resample_weights

    return resample_weights(n, n_bootstrap, np.random.default_rng(np.random.SeedSequence([int(seed), 45, stream])))


def _transitions(joint, opens, k):
    """T (..., K, K) with rows of unopened codes 0."""
    j = joint.reshape(*joint.shape[:-1], k, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(opens[..., :, None] > 0, j / np.where(opens > 0, opens, 1)[..., :, None], 0.0)


def _stats(real_t, syn_t, rows):
    """transition RMSE and Pearson r, persistence RMSE over the compared ``rows`` (last two axes K x K)."""
    from ehrlib.metrics.prevalence import pearson

    a, b = real_t[..., rows, :], syn_t[..., rows, :]
    a2, b2 = a.reshape(*a.shape[:-2], -1), b.reshape(*b.shape[:-2], -1)
    rmse = np.sqrt(np.mean((a2 - b2) ** 2, axis=-1))
    r = pearson(*np.broadcast_arrays(a2, b2))
    da = np.diagonal(real_t, axis1=-2, axis2=-1)[..., rows]
    db = np.diagonal(syn_t, axis1=-2, axis2=-1)[..., rows]
    return rmse, r, np.sqrt(np.mean((da - db) ** 2, axis=-1))


def _row(metric, est, low=np.nan, high=np.nan, note=""):
    return {"metric": metric, "estimate": float(est), "ci_low": float(low), "ci_high": float(high),
            "spread": np.nan, "note": note}


def temporal_from_context(context, name: str, *, n_bootstrap: int = 1000, seed: int = 0,
                          level: float = 0.95) -> pd.DataFrame:
    """The temporal family of one synthetic cohort of an :class:`ehrlib.metrics.context.EvaluationContext`.

    Rows: :data:`ehrlib.metrics.names.TEMPORAL_STATS` (NaN, with the reason, for flat cohorts
    and encoding artifacts), :data:`ehrlib.metrics.names.NESTED_VISIT_SHARE` and one
    ``wasserstein:<quantity>`` row per :data:`QUANTITIES`.
    """
    from ehrlib.metrics.bootstrap import basic_interval
    from ehrlib.metrics.prevalence import prevalence_from_matrix

    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 2:
        raise ValueError(f"n_bootstrap={n_bootstrap!r}: expected an integer >= 2")

    def real_side():
        train = context.train
        vocab = context.union(context.real_key("train"))
        prev = prevalence_from_matrix(context.binary(context.real_key("train"), vocab))
        top = np.asarray(vocab.codes, dtype=object)[np.argsort(-prev, kind="stable")[:TOP_CODES]]
        w = _weights(train.n_patients, n_bootstrap, seed, 0)
        return top, _summary(train, top, w), nested_visit_share(train)

    top, real, (real_nested, real_m) = context.memo(("temporal_real", n_bootstrap, seed), real_side)
    k = len(top)
    cohort = context.synthetic[name]
    syn = _summary(cohort, top, _weights(cohort.n_patients, n_bootstrap, seed, 1))
    ci = f"basic bootstrap interval, B={n_bootstrap}, patients of train and {name} resampled independently"
    rows = []
    nested, m = nested_visit_share(cohort)
    rows.append(_row(names.NESTED_VISIT_SHARE, nested, note=(
        f"{m} multi-visit patients; train: {real_nested:.3f} of {real_m}; at least {ARTIFACT_SHARE:g} marks an "
        "encoding artifact; no interval")))
    artifact = encoding_artifact(cohort)
    if not is_sequential(cohort):
        why = "not applicable: flat generator (one visit per patient)"
    elif artifact:
        why = artifact
    elif m < MIN_SEQUENTIAL:
        why = f"skipped: {m} patients with two visits or more, fewer than {MIN_SEQUENTIAL}"
    else:
        why = ""
    compared = np.flatnonzero(real["opens"] >= MIN_PAIRS)
    if not why and len(compared) < 2:
        why = f"skipped: fewer than 2 of train's top {k} codes open {MIN_PAIRS} visit pairs"
    if why:
        rows += [_row(s, np.nan, note=why) for s in names.TEMPORAL_STATS]
    else:
        t_r, t_s = _transitions(real["joint"], real["opens"], k), _transitions(syn["joint"], syn["opens"], k)
        tb_r = _transitions(real["joint_b"], real["opens_b"], k)
        tb_s = _transitions(syn["joint_b"], syn["opens_b"], k)
        est = _stats(t_r, t_s, compared)
        reps = _stats(tb_r, tb_s, compared)
        what = (f"P(code j in visit t+1 | code i in visit t) for train's {k} most prevalent codes, {len(compared)} "
                f"rows compared (codes opening at least {MIN_PAIRS} train visit pairs)")
        for stat, e, r, bounds in zip(names.TEMPORAL_STATS[:3], est, reps, [(0, 1), (-1, 1), (0, 1)]):
            rows.append(_row(stat, e, *basic_interval(e, r, level, bounds),
                             f"{'diagonal of ' if stat == names.PERSISTENCE_RMSE else ''}{what}; {ci}"))
        with np.errstate(invalid="ignore", divide="ignore"):
            rate, rate_b = syn["num"] / syn["den"], syn["num_b"] / syn["den_b"]
            real_rate, real_rate_b = real["num"] / real["den"], real["num_b"] / real["den_b"]
        rows.append(_row(names.PERSISTENCE_RATE, rate, *basic_interval(rate, rate_b, level, (0, 1)),
                         f"share of a visit's codes that recur in the next visit (all codes); train: {real_rate:.3f}; "
                         f"{ci}"))
        gap = rate - real_rate
        rows.append(_row(names.PERSISTENCE_GAP, gap, *basic_interval(gap, rate_b - real_rate_b, level, (-1, 1)),
                         f"{name}'s persistence rate minus train's; {ci}"))
    for q in QUANTITIES:
        from scipy.stats import wasserstein_distance

        est = float(wasserstein_distance(syn["values"][q], real["values"][q]))
        reps = _w1_from_histograms(syn["hist_b"][q], real["hist_b"][q])
        unit = "visits" if q == "codes_per_visit" else "patients"
        rows.append(_row(names.task_metric(names.WASSERSTEIN, q), est, *basic_interval(est, reps, level, (0, np.inf)),
                         f"1-Wasserstein distance of {q.replace('_', ' ')} ({unit}; distinct codes) to train's; "
                         f"means {syn['values'][q].mean():.2f} against train's {real['values'][q].mean():.2f}; {ci}"))
    return pd.DataFrame(rows, columns=["metric", "estimate", "ci_low", "ci_high", "spread", "note"])
