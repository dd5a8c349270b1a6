"""Attribute inference: sensitive diagnoses of a real patient inferred from the synthetic release.

Paper: none (the paper scores membership only; the attack follows the book's methods page,
"Attribute inference", as SynthEHRella and synthcity score it). For each sensitive attribute
(:data:`ATTRIBUTES`, one table with its sources) the attacker knows a real patient's other codes
and looks at the synthetic records nearest to them by the visit-aligned set distance (paper
3.2.1) on the known codes only; the attribute is predicted present when at least half of the
records at that smallest distance hold a code of the set (the share is the score for the AUC).

The attack runs on members (a train subsample) and on non-members (the holdout), equal sizes
``min(len(train), len(holdout))``; the advantage is the F1 on members minus the F1 on
non-members. The same attack with a disjoint real sample (``reference``) as the release, on the
non-members, says how much any good model of the population lets an attacker infer
(``f1_reference``). F1 and AUC per attribute and pooled over every (patient, attribute) pair
(``all``), with basic bootstrap intervals over query patients (members and non-members
resampled independently). The summary row :data:`ehrlib.metrics.names.ATTRIBUTE_ADVANTAGE` is
the pooled advantage; an interval above 0 flags the generator.

Deviations: the paper has no attribute-inference attack; the nearest records are all those tied
at the smallest distance (no k to tune).
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from ehrlib.data.icd9 import CodeSet
from ehrlib.metrics import names
from ehrlib.metrics.context import HOLDOUT, REFERENCE, TRAIN


#: A sensitive code set of the attack.
Attribute = CodeSet


ATTRIBUTES = (
    Attribute("hiv", "HIV disease", ("042",), "ICD-9-CM 042 (HIV disease; Elixhauser AIDS/HIV, Quan et al. 2005)"),
    Attribute("mental", "Mental disorders", tuple(str(c) for c in range(290, 320)),
              "ICD-9-CM chapter 5, mental disorders 290-319"),
    Attribute("substance", "Substance use", ("303", "304", "305"),
              "ICD-9-CM 303-305 (alcohol dependence, drug dependence, non-dependent abuse; Elixhauser "
              "alcohol and drug abuse, Quan et al. 2005)"),
)
"""The sensitive attributes, each with the source of its code set."""

POOLED = names.ATTRIBUTE_POOLED
CHUNK = 256
"""Query rows per distance block."""


def attribute_table() -> pd.DataFrame:
    """:data:`ATTRIBUTES` as a table (``attribute``, ``title``, ``codes``, ``source``), for the book."""
    return pd.DataFrame([{"attribute": a.name, "title": a.title,
                          "codes": f"{a.prefixes[0]}*" if len(a.prefixes) == 1 else f"{a.prefixes[0]}-{a.prefixes[-1]}*",
                          "source": a.source} for a in ATTRIBUTES])


def _columns(codes, attribute: Attribute) -> np.ndarray:
    return attribute.columns(codes)


def _scores(query, release, known_cols, y_release) -> np.ndarray:
    """Per query row: the share of the release records at the smallest known-code distance that hold the attribute."""
    q = query.matrix[:, known_cols].tocsr()
    r = release.matrix[:, known_cols].tocsr()
    tq = np.asarray(q.sum(axis=1)).ravel()
    tr = np.asarray(r.sum(axis=1)).ravel()
    rt = r.T.tocsc()
    out = np.empty(q.shape[0])
    for start in range(0, q.shape[0], CHUNK):
        block = q[start:start + CHUNK]
        d = tq[start:start + CHUNK, None] + tr[None, :] - 2.0 * (block @ rt).toarray()
        nearest = d <= d.min(axis=1, keepdims=True) + 0.5  # integer distances: ties exactly
        out[start:start + CHUNK] = (nearest @ y_release) / nearest.sum(axis=1)
    return out


def _f1_counts(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (pred & y).astype(float), (pred & ~y).astype(float), (~pred & y).astype(float)


def _f1(tp, fp, fn):
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1.0), np.nan)


def _queries(context, seed: int):
    """Members (a train subsample) and non-members (the holdout sample), equal sizes, once per context."""
    def build():
        n = min(context.train.n_patients, context.holdout.n_patients)
        rng = np.random.default_rng([int(seed), zlib.crc32(b"attribute_inference")])
        members = np.sort(rng.choice(context.train.n_patients, n, replace=False))
        nonmembers = np.sort(rng.choice(context.holdout.n_patients, n, replace=False))
        return {TRAIN: members, HOLDOUT: nonmembers}
    return context.memo(("attribute_queries", seed), build)


def _attack(context, release: str, seed: int, groups=(TRAIN, HOLDOUT)) -> dict:
    """``{group: (scores (A, n), labels (A, n))}`` of the attack on ``release`` for each query group."""
    rows = _queries(context, seed)
    v = len(context.vocab)
    rel = context.encoded(release)
    x_rel = context.binary(release)
    out = {}
    for g in groups:
        enc = context.encoded(g)
        sub = type(enc).from_matrix(enc.matrix[rows[g]], v)
        x_q = context.binary(g)[rows[g]]
        scores, labels = [], []
        for a in ATTRIBUTES:
            cols = _columns(context.vocab.codes, a)
            y_q = np.asarray(x_q[:, cols].sum(axis=1)).ravel() > 0 if len(cols) else np.zeros(len(rows[g]), bool)
            y_r = np.asarray(x_rel[:, cols].sum(axis=1)).ravel() > 0 if len(cols) else np.zeros(x_rel.shape[0], bool)
            known_codes = np.ones(v, bool)
            known_codes[cols] = False
            known = np.flatnonzero(np.tile(known_codes, sub.matrix.shape[1] // v))
            scores.append(_scores(sub, rel, known, y_r.astype(float)))
            labels.append(y_q)
        out[g] = (np.asarray(scores), np.asarray(labels))
    return out


def attribute_from_context(context, name: str, *, n_bootstrap: int = 1000, seed: int = 0,
                           level: float = 0.95) -> pd.DataFrame:
    """The attribute-inference family of one synthetic cohort of an :class:`ehrlib.metrics.context.EvaluationContext`.

    Paper: none (module docstring).

    Returns:
        Rows ``metric``, ``estimate``, ``ci_low``, ``ci_high``, ``spread`` (NaN), ``note``: per
        attribute and pooled (``all``), :func:`ehrlib.metrics.names.task_metric` rows
        ``attribute_<stat>`` for each of :data:`ehrlib.metrics.names.ATTRIBUTE_STATS`, then the
        summary ``attribute_advantage``. A statistic without both classes among the queries is
        NaN with the reason.
    """
    from sklearn.metrics import roc_auc_score

    from ehrlib.metrics.bootstrap import basic_interval, resample_weights
    from ehrlib.metrics.discriminator import REAL, SYNTHETIC, _weighted_auc

    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 2:
        raise ValueError(f"n_bootstrap={n_bootstrap!r}: expected an integer >= 2")
    attack = _attack(context, name, seed)
    n = attack[TRAIN][1].shape[1]
    if context.reference is not None:
        baseline = context.memo(("attribute_reference", seed), lambda: _attack(context, REFERENCE, seed, (HOLDOUT,)))
    else:
        baseline = None
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 24]))
    weights = {g: resample_weights(n, n_bootstrap, rng) for g in (TRAIN, HOLDOUT)}
    task_names = [a.name for a in ATTRIBUTES] + [POOLED]
    rows = []
    size = f"{n} members (train) and {n} non-members (holdout)"
    ci = f"basic bootstrap interval over query patients, B={n_bootstrap}"

    def row(stat, task, est, low=np.nan, high=np.nan, note=""):
        rows.append({"metric": names.attribute_metric(stat, task), "estimate": float(est),
                     "ci_low": float(low), "ci_high": float(high), "spread": np.nan, "note": note})

    def f1_of(scores, labels, w, idx):
        s, y = (scores[idx], labels[idx]) if idx is not None else (scores, labels)
        tp, fp, fn = _f1_counts(s >= 0.5, y)
        if s.ndim == 2:  # pooled: per-patient sums over attributes
            tp, fp, fn = tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0)
        est = float(_f1(tp.sum(), fp.sum(), fn.sum()))
        return est, _f1(w @ tp, w @ fp, w @ fn), int(y.sum())

    def auc_of(scores, labels, w, idx):
        s, y = (scores[idx], labels[idx]) if idx is not None else (scores.ravel(), labels.ravel())
        ww = w if idx is not None else np.tile(w, (1, scores.shape[0]))
        if y.all() or not y.any():
            return np.nan, None
        return float(roc_auc_score(y, s)), _weighted_auc(np.where(y, REAL, SYNTHETIC), s, ww)

    def interval(est, reps):
        """The basic interval, replicates without a positive (or a negative) left out quietly: the
        note of a rare attribute already gives its count."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return basic_interval(est, reps, level, (0.0, 1.0))

    for i, task in enumerate(task_names):
        idx = i if task != POOLED else None
        f1 = {}
        for g, label in ((TRAIN, "members"), (HOLDOUT, "nonmembers")):
            scores, labels = attack[g]
            est, reps, positives = f1_of(scores, labels, weights[g], idx)
            f1[g] = (est, reps)
            note = f"{positives} positive of {n} {label}; {ci}"
            if not positives:
                row(f"f1_{label}", task, np.nan, note=f"no {label[:-1]} holds the attribute: F1 undefined")
            else:
                row(f"f1_{label}", task, est, *interval(est, reps), note)
            a_est, a_reps = auc_of(scores, labels, weights[g], idx)
            if a_reps is None:
                row(f"auc_{label}", task, np.nan, note=f"the {label} queries hold one class only: AUC undefined")
            else:
                row(f"auc_{label}", task, a_est, *interval(a_est, a_reps), note)
        if baseline is None:
            row("f1_reference", task, np.nan, note="no reference cohort (a real sample disjoint from train and "
                                                   "holdout) in this evaluation: no baseline")
        else:
            scores, labels = baseline[HOLDOUT]
            est, reps, positives = f1_of(scores, labels, weights[HOLDOUT], idx)
            row("f1_reference", task, est, *interval(est, reps) if positives else
                (np.nan, np.nan), f"the same attack on the non-members with the reference cohort "
                                  f"({context.reference.n_patients} real patients) as the release; {ci}")
        if task == POOLED:
            adv = f1[TRAIN][0] - f1[HOLDOUT][0]
            reps = f1[TRAIN][1] - f1[HOLDOUT][1]
            low, high = basic_interval(adv, reps, level, (-1.0, 1.0)) if np.isfinite(adv) else (np.nan, np.nan)
            verdict = "flagged: the interval is above 0" if low > 0 else "not flagged: the interval reaches 0"
            rows.append({"metric": names.ATTRIBUTE_ADVANTAGE, "estimate": float(adv), "ci_low": low, "ci_high": high,
                         "spread": np.nan,
                         "note": f"{verdict}; pooled F1 on members minus on non-members over "
                                 f"{', '.join(a.name for a in ATTRIBUTES)}; {size}; nearest records by the set "
                                 f"distance on the known codes; {ci}"})
    return pd.DataFrame(rows, columns=["metric", "estimate", "ci_low", "ci_high", "spread", "note"])


def attribute_inference(train, holdout, synthetic, reference=None, *, n_bootstrap: int = 1000, seed: int = 0,
                        allow_overlap: bool = False) -> pd.DataFrame:
    """:func:`attribute_from_context` of Cohorts (a thin wrapper that builds the context).

    Args:
        train, holdout: the real cohorts; synthetic: a Cohort or ``name -> Cohort``;
        reference: a real cohort disjoint from both (the baseline release), optional.
    """
    from ehrlib.metrics.context import EvaluationContext

    context = EvaluationContext.build(train, holdout, synthetic, reference, allow_overlap=allow_overlap)
    return pd.concat([attribute_from_context(context, n, n_bootstrap=n_bootstrap, seed=seed).assign(model=n)
                      for n in context.synthetic], ignore_index=True)
