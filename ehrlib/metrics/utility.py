"""Downstream utility: train on synthetic, test on real (TSTR against TRTR).

Paper: none (the paper's evaluation notebook holds a train-on-synthetic function, commented
out; this family follows the book's methods page, "Downstream utility"). Labels come from codes,
so every generator is scored the same way:

* **phenotype tasks** (:data:`PHENOTYPES`, one table with its sources): the label is "has any
  code of the phenotype's set in any visit"; the features are the patient's other codes (a 0/1
  vector over the shared vocabulary with the phenotype's own codes removed). A logistic
  regression (scikit-learn) is trained on the real train cohort (TRTR) and on each synthetic
  cohort (TSTR) and tested on the holdout. Reported: AUROC of each, with basic bootstrap
  intervals over holdout patients (the same resamples for TRTR and every TSTR, so the ratio is
  paired), and the ratio TSTR/TRTR. A task with fewer than :data:`MIN_POSITIVES` positive or
  negative holdout patients is skipped, with the reason in ``note``; a synthetic cohort with no
  positive (or no negative) patient trains a constant classifier: AUROC 0.5, said in ``note``.
* **next-visit prediction** (sequential generators only: some patient has two visits or more):
  the last visit's codes among the :data:`NEXT_VISIT_CODES` most frequent last-visit codes of
  train, from the codes of the earlier visits; recall@k (k = :data:`RECALL_K`) with a basic
  bootstrap interval and micro AUPRC. Flat generators (one visit per patient) get the phenotype
  tasks only: their next-visit rows are NaN with a note saying so. Two reference rows trained on
  nothing show what the task rewards (:func:`baseline_recalls`): *repeat the last visit* and *the
  most frequent codes*; the task's headroom is TRTR minus repeat-last, and each generator's TSTR
  is also given minus repeat-last (paired resamples). A cohort whose visits are an encoding
  artifact (:func:`ehrlib.metrics.temporal.encoding_artifact`: MedGAN's count mode, whose every
  "next visit" repeats the one before) has its TSTR rows left out (NaN), the reason and the
  measured value in the note.

The summary row :data:`ehrlib.metrics.names.UTILITY_RATIO` is the mean of the phenotype tasks'
TSTR/TRTR ratios (with an interval from the same paired resamples).

Deviations: labels are defined from the same codes a generator emits (no outcome table exists
in the paper's data); the classifier is fixed (no tuning), the same for TRTR and TSTR.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import scipy.sparse as sp

from ehrlib.data.icd9 import CodeSet
from ehrlib.metrics import names
from ehrlib.metrics.context import HOLDOUT, TRAIN
from ehrlib.metrics.temporal import encoding_artifact, is_sequential  # noqa: F401 - is_sequential: part of this module's API


#: One phenotype task: the codes whose presence is the label.
Phenotype = CodeSet


PHENOTYPES = (
    Phenotype("diabetes", "Diabetes mellitus", ("250",),
              "Elixhauser comorbidity, ICD-9-CM coding of Quan et al. 2005 (Med Care 43:1130): 250.x"),
    Phenotype("heart_failure", "Heart failure", ("428",),
              "Quan et al. 2005, congestive heart failure: 428.x (the core code set)"),
    Phenotype("ckd", "Chronic kidney disease", ("585",),
              "ICD-9-CM 585.x (CKD stages 1-5, end-stage renal disease), as in Quan et al. 2005 renal failure"),
    Phenotype("sepsis", "Sepsis", ("038", "99591", "99592"),
              "Martin et al. 2003 (NEJM 348:1546) and Angus et al. 2001: septicemia 038.x, sepsis 995.91, "
              "severe sepsis 995.92"),
    Phenotype("aki", "Acute kidney injury", ("584",),
              "Waikar et al. 2006 (JASN 17:1688), acute renal failure 584.x"),
    Phenotype("hypertension", "Hypertension", ("401", "402", "403", "404", "405"),
              "Elixhauser comorbidity (Quan et al. 2005): hypertension 401-405"),
)
"""The phenotype tasks, each with the source of its code set."""

MIN_POSITIVES = 20
"""A phenotype task needs at least this many positive and negative holdout patients."""
NEXT_VISIT_CODES = 20
"""Next-visit targets: this many most frequent last-visit codes of train."""
RECALL_K = 5
"""k of the next-visit recall@k."""
MIN_SEQUENTIAL = 20
"""Next-visit prediction needs at least this many patients with two visits or more per cohort."""
C = 1.0
"""Inverse L2 regularisation strength of every logistic regression (scikit-learn's default)."""


def phenotype_columns(codes, phenotype: Phenotype) -> np.ndarray:
    """Indices of the ``codes`` (a sorted code list) that belong to ``phenotype`` (prefix match)."""
    return phenotype.columns(codes)


def phenotype_table() -> pd.DataFrame:
    """:data:`PHENOTYPES` as a table (``task``, ``title``, ``codes``, ``source``), for the book."""
    return pd.DataFrame([{"task": p.name, "title": p.title, "codes": ", ".join(f"{c}*" for c in p.prefixes),
                          "source": p.source} for p in PHENOTYPES])


# ---------------------------------------------------------------------------- shared pieces
def _fit_predict(x_train, y_train, x_test, seed: int) -> tuple[np.ndarray, str]:
    """P(label) on ``x_test`` of a logistic regression fitted on ``(x_train, y_train)``; a
    constant prediction (and why) when the training labels have one class."""
    from sklearn.linear_model import LogisticRegression

    positives = int(y_train.sum())
    if positives == 0 or positives == len(y_train):
        which = "no positive" if positives == 0 else "no negative"
        return np.full(x_test.shape[0], 0.5), f"{which} patient to train on: a constant classifier (AUROC 0.5)"
    model = LogisticRegression(C=C, solver="liblinear", max_iter=200, random_state=seed)
    model.fit(x_train, y_train)
    return model.predict_proba(x_test)[:, 1], ""


def _weights(context, n_bootstrap: int, seed: int) -> np.ndarray:
    """Bootstrap weights over holdout patients, drawn once per context, B and seed (paired)."""
    from ehrlib.metrics.bootstrap import resample_weights

    return context.memo(("utility_weights", n_bootstrap, seed), lambda: resample_weights(
        context.holdout.n_patients, n_bootstrap, np.random.default_rng(np.random.SeedSequence([int(seed), 22]))))


def _auc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    from sklearn.metrics import roc_auc_score

    from ehrlib.metrics.discriminator import REAL, SYNTHETIC, _weighted_auc

    labels = np.where(y, REAL, SYNTHETIC)
    return float(roc_auc_score(y, p)), _weighted_auc(labels, p, weights)


def _row(metric, est, low=np.nan, high=np.nan, note=""):
    return {"metric": metric, "estimate": float(est), "ci_low": float(low), "ci_high": float(high),
            "spread": np.nan, "note": note}


# ---------------------------------------------------------------------------- phenotype tasks
def _tasks(context):
    """Per phenotype: holdout labels, feature columns, the reason it is skipped (or '')."""
    def build():
        x_holdout = context.binary(HOLDOUT)
        out = []
        for ph in PHENOTYPES:
            cols = phenotype_columns(context.vocab.codes, ph)
            features = np.setdiff1d(np.arange(len(context.vocab)), cols)
            y = np.asarray(x_holdout[:, cols].sum(axis=1)).ravel() > 0 if len(cols) else \
                np.zeros(x_holdout.shape[0], bool)
            pos, neg = int(y.sum()), int((~y).sum())
            skip = "" if min(pos, neg) >= MIN_POSITIVES else (
                f"skipped: {pos} positive and {neg} negative holdout patients, fewer than {MIN_POSITIVES}")
            out.append((ph, cols, features, y, skip))
        return out
    return context.memo("utility_tasks", build)


def _labels_features(context, role: str, cols, features):
    x = context.binary(role)
    y = np.asarray(x[:, cols].sum(axis=1)).ravel() > 0 if len(cols) else np.zeros(x.shape[0], bool)
    return x[:, features], y


def _trtr(context, seed: int, n_bootstrap: int):
    """TRTR predictions and AUROC (estimate, replicates) per phenotype, once per context."""
    def build():
        w = _weights(context, n_bootstrap, seed)
        out = {}
        for ph, cols, features, y, skip in _tasks(context):
            if skip:
                continue
            x_tr, y_tr = _labels_features(context, TRAIN, cols, features)
            p, why = _fit_predict(x_tr, y_tr, context.binary(HOLDOUT)[:, features], seed)
            out[ph.name] = (*_auc(y, p, w), why)
        return out
    return context.memo(("utility_trtr", n_bootstrap, seed), build)


def phenotype_rows(context, name: str, *, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """The phenotype rows of one synthetic cohort of ``context`` and the summary row."""
    from ehrlib.metrics.bootstrap import basic_interval

    w = _weights(context, n_bootstrap, seed)
    trtr = _trtr(context, seed, n_bootstrap)
    rows, ratios, ratio_reps = [], [], []
    for ph, cols, features, y, skip in _tasks(context):
        if skip:
            for stat in names.UTILITY_PHENOTYPE_STATS:
                rows.append(_row(names.task_metric(stat, ph.name), np.nan, note=skip))
            continue
        x_s, y_s = _labels_features(context, name, cols, features)
        p, why = _fit_predict(x_s, y_s, context.binary(HOLDOUT)[:, features], seed)
        tstr, tstr_b = _auc(y, p, w)
        trtr_est, trtr_b, trtr_why = trtr[ph.name]
        ratio, ratio_b = tstr / trtr_est, tstr_b / trtr_b
        ratios.append(ratio)
        ratio_reps.append(ratio_b)
        base = (f"logistic regression (C={C:g}), tested on {len(y)} holdout patients ({int(y.sum())} positive); "
                f"basic bootstrap interval over holdout patients, B={n_bootstrap}")
        rows.append(_row(names.task_metric(names.TRTR_AUROC, ph.name), trtr_est,
                         *basic_interval(trtr_est, trtr_b, level, (0.0, 1.0)), f"trained on train; {base}"
                         + (f"; {trtr_why}" if trtr_why else "")))
        rows.append(_row(names.task_metric(names.TSTR_AUROC, ph.name), tstr,
                         *basic_interval(tstr, tstr_b, level, (0.0, 1.0)),
                         f"trained on {name} ({int(y_s.sum())} of {len(y_s)} positive); {base}"
                         + (f"; {why}" if why else "")))
        rows.append(_row(names.task_metric(names.TSTR_TRTR_RATIO, ph.name), ratio,
                         *basic_interval(ratio, ratio_b, level, (0.0, np.inf)), f"TSTR / TRTR AUROC, paired resamples"))
    done = [ph.name for ph, *_, skip in _tasks(context) if not skip]
    if ratios:
        est = float(np.mean(ratios))
        low, high = basic_interval(est, np.mean(ratio_reps, axis=0), level, (0.0, np.inf))
        rows.append(_row(names.UTILITY_RATIO, est, low, high,
                         f"mean TSTR/TRTR AUROC over {len(done)} phenotype task(s): {', '.join(done)}; "
                         f"basic bootstrap interval over holdout patients, B={n_bootstrap}"))
    else:
        rows.append(_row(names.UTILITY_RATIO, np.nan, note="no phenotype task has enough holdout patients "
                                                           f"(at least {MIN_POSITIVES} positive and negative)"))
    return rows


# ---------------------------------------------------------------------------- next visit
def _history_last(cohort, vocab) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Patients with two visits or more: 0/1 codes of the earlier visits, and of the last visit."""
    ev = cohort.events
    last = ev.groupby("subject_id", sort=False)["visit_id"].transform("max")
    multi = last >= 1
    ev, last = ev[multi], last[multi]
    subjects, row = np.unique(ev["subject_id"].to_numpy(), return_inverse=True)
    col = vocab.index(ev["code"].to_numpy())
    is_last = (ev["visit_id"] == last).to_numpy()
    shape = (len(subjects), len(vocab))

    def mat(mask):
        m = sp.csr_matrix((np.ones(int(mask.sum()), np.float32), (row[mask], col[mask])), shape=shape)
        m.data[:] = 1.0
        return m
    return mat(~is_last), mat(is_last)


def next_visit_rows(context, name: str, *, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Next-visit rows of one synthetic cohort (NaN with the reason for flat generators)."""
    from sklearn.metrics import average_precision_score

    from ehrlib.metrics.bootstrap import basic_interval, resample_weights

    stats = names.NEXT_VISIT_STATS

    def nan_rows(note):
        return [_row(names.task_metric(s, names.NEXT_VISIT), np.nan, note=note)
                for s in (*stats, *names.NEXT_VISIT_BASELINE_STATS)]

    if not is_sequential(context.synthetic[name]):
        return nan_rows("not applicable: flat generator (one visit per patient); phenotype tasks only")

    def real_side():
        h_tr, l_tr = _history_last(context.train, context.vocab)
        h_te, l_te = _history_last(context.holdout, context.vocab)
        if min(h_tr.shape[0], h_te.shape[0]) < MIN_SEQUENTIAL:
            return None
        targets = np.argsort(-np.asarray(l_tr.sum(axis=0)).ravel(), kind="stable")[:NEXT_VISIT_CODES]
        y_te = l_te[:, targets].toarray() > 0
        keep = y_te.any(axis=1)  # recall@k needs a target code in the last visit
        if keep.sum() < MIN_SEQUENTIAL:
            return None
        return h_tr, l_tr[:, targets].toarray() > 0, h_te[keep], y_te[keep], targets

    real = context.memo("next_visit_real", real_side)
    if real is None:
        return nan_rows(f"skipped: fewer than {MIN_SEQUENTIAL} train or holdout patients with two visits or more "
                        f"(holdout: with one of train's {NEXT_VISIT_CODES} most frequent last-visit codes)")
    h_tr, y_tr, h_te, y_te, targets = real
    h_s, l_s = _history_last(context.synthetic[name], context.vocab)
    if h_s.shape[0] < MIN_SEQUENTIAL:
        return nan_rows(f"skipped: {name} has {h_s.shape[0]} patients with two visits or more, "
                        f"fewer than {MIN_SEQUENTIAL}")
    y_s = l_s[:, targets].toarray() > 0
    rng_w = resample_weights(h_te.shape[0], n_bootstrap, np.random.default_rng(np.random.SeedSequence([int(seed), 23])))

    def score(h, y):
        p = np.column_stack([_fit_predict(h, y[:, j], h_te, seed)[0] for j in range(y.shape[1])])
        top = np.argsort(-p, axis=1, kind="stable")[:, :RECALL_K]
        hits = np.take_along_axis(y_te, top, axis=1).sum(axis=1)
        recall = hits / np.minimum(RECALL_K, y_te.sum(axis=1))
        return float(recall.mean()), rng_w @ recall / rng_w.sum(axis=1), float(average_precision_score(
            y_te.ravel(), p.ravel()))

    def once_trtr():
        return score(h_tr, y_tr)

    r_est, r_b, r_ap = context.memo(("next_visit_trtr", n_bootstrap, seed), once_trtr)
    s_est, s_b, s_ap = score(h_s, y_s)
    note = (f"last visit's codes among the {len(targets)} most frequent last-visit codes of train, from the "
            f"earlier visits; logistic regression per code; {h_te.shape[0]} holdout patients")
    ci = f"; basic bootstrap interval over holdout patients, B={n_bootstrap}"
    (rep_est, rep_b), (freq_est, freq_b) = context.memo(
        ("next_visit_baselines", n_bootstrap, seed), lambda: baseline_recalls(context.holdout, context.vocab, targets,
                                                                              rng_w))
    artifact = encoding_artifact(context.synthetic[name])
    s_note = f"recall@{RECALL_K}, trained on {name} ({h_s.shape[0]} patients); {note}{ci}"
    gain, gain_b = s_est - rep_est, s_b - rep_b
    gain_note = f"{name}'s TSTR recall@{RECALL_K} minus repeat-last's, paired resamples{ci}"
    if artifact:  # measured, then left out of the comparison with the reason (and the number) in the note
        s_note = f"left out: {artifact} (its recall@{RECALL_K} measures {s_est:.3f}); {s_note}"
        gain_note = f"left out: {artifact}"
        s_est = s_ap = gain = np.nan
    base = f"trained on nothing, scored on the same {h_te.shape[0]} holdout patients and targets"
    head, head_b = r_est - rep_est, r_b - rep_b
    b = names.NEXT_VISIT_BASELINE_STATS
    return [
        _row(names.task_metric(stats[0], names.NEXT_VISIT), r_est, *basic_interval(r_est, r_b, level, (0.0, 1.0)),
             f"recall@{RECALL_K}, trained on train ({h_tr.shape[0]} patients); {note}{ci}"),
        _row(names.task_metric(stats[1], names.NEXT_VISIT), s_est, *basic_interval(s_est, s_b, level, (0.0, 1.0)),
             s_note),
        _row(names.task_metric(stats[2], names.NEXT_VISIT), r_ap, note=f"micro AUPRC, trained on train; {note}; "
                                                                        "no interval"),
        _row(names.task_metric(stats[3], names.NEXT_VISIT), s_ap, note=f"micro AUPRC, trained on {name}; {note}; "
                                                                        "no interval" + (f"; left out: {artifact}"
                                                                                         if artifact else "")),
        _row(names.task_metric(b[0], names.NEXT_VISIT), rep_est, *basic_interval(rep_est, rep_b, level, (0.0, 1.0)),
             f"recall@{RECALL_K} of repeating the visit before the last (its target codes first, then train's most "
             f"frequent last-visit codes); {base}{ci}"),
        _row(names.task_metric(b[1], names.NEXT_VISIT), freq_est, *basic_interval(freq_est, freq_b, level, (0.0, 1.0)),
             f"recall@{RECALL_K} of train's {RECALL_K} most frequent last-visit codes for everyone; {base}{ci}"),
        _row(names.task_metric(b[2], names.NEXT_VISIT), head, *basic_interval(head, head_b, level, (-1.0, 1.0)),
             f"the task's headroom: TRTR recall@{RECALL_K} minus repeat-last's, paired resamples{ci}"),
        _row(names.task_metric(b[3], names.NEXT_VISIT), gain, *(basic_interval(gain, gain_b, level, (-1.0, 1.0))
                                                                if np.isfinite(gain) else (np.nan, np.nan)), gain_note),
    ]


def baseline_recalls(holdout, vocab, targets, weights) -> tuple[tuple[float, np.ndarray], tuple[float, np.ndarray]]:
    """Recall@k on the holdout's next-visit task of the two reference rows trained on nothing:
    *repeat the last visit* (the target codes of the visit before the last, ranked first, then
    the rest by train's last-visit frequency, the order of ``targets``) and *the most frequent
    codes* (``targets``' first k for everyone). Patients are those of the task (two visits or
    more, a target code in the last visit), in its order; ``weights`` its bootstrap weights.

    Returns ``((estimate, replicates), (estimate, replicates))``: repeat-last, then most-frequent.
    """
    _, last = _history_last(holdout, vocab)
    prev = _previous_visit(holdout, vocab)
    y = last[:, targets].toarray() > 0
    keep = y.any(axis=1)
    y, prev = y[keep], prev[keep][:, targets].toarray() > 0
    rank = np.arange(len(targets)) / len(targets)  # < 1: breaks ties by train frequency
    out = []
    for score in (2.0 * prev - rank, np.broadcast_to(-rank, y.shape)):
        top = np.argsort(-score, axis=1, kind="stable")[:, :RECALL_K]
        recall = np.take_along_axis(y, top, axis=1).sum(axis=1) / np.minimum(RECALL_K, y.sum(axis=1))
        out.append((float(recall.mean()), weights @ recall / weights.sum(axis=1)))
    return out[0], out[1]


def _previous_visit(cohort, vocab) -> sp.csr_matrix:
    """Patients with two visits or more (the rows of :func:`_history_last`): 0/1 codes of the visit before the last."""
    ev = cohort.events
    last = ev.groupby("subject_id", sort=False)["visit_id"].transform("max")
    multi = (last >= 1).to_numpy()
    subjects, row = np.unique(ev["subject_id"].to_numpy()[multi], return_inverse=True)
    pick = (ev["visit_id"] == last - 1).to_numpy()[multi]
    col = vocab.index(ev["code"].to_numpy()[multi][pick])
    m = sp.csr_matrix((np.ones(int(pick.sum()), np.float32), (row[pick], col)), shape=(len(subjects), len(vocab)))
    m.data[:] = 1.0
    return m


# ---------------------------------------------------------------------------- the family
def utility_from_context(context, name: str, *, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The utility family of one synthetic cohort of an :class:`ehrlib.metrics.context.EvaluationContext`.

    Paper: none (module docstring). TRTR fits are made once per context and shared by every
    generator; the bootstrap resamples of holdout patients too (paired comparisons).

    Returns:
        Rows ``metric``, ``estimate``, ``ci_low``, ``ci_high``, ``spread`` (NaN), ``note``:
        :func:`ehrlib.metrics.names.task_metric` rows per phenotype (``trtr_auroc``,
        ``tstr_auroc``, ``tstr_trtr_ratio``), the summary ``utility_ratio`` and the next-visit rows.
    """
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 2:
        raise ValueError(f"n_bootstrap={n_bootstrap!r}: expected an integer >= 2")
    rows = phenotype_rows(context, name, n_bootstrap=n_bootstrap, seed=seed)
    rows += next_visit_rows(context, name, n_bootstrap=n_bootstrap, seed=seed)
    return pd.DataFrame(rows, columns=["metric", "estimate", "ci_low", "ci_high", "spread", "note"])


def utility(train, holdout, synthetic, *, n_bootstrap: int = 1000, seed: int = 0,
            allow_overlap: bool = False) -> pd.DataFrame:
    """:func:`utility_from_context` of Cohorts (a thin wrapper that builds the context).

    Args:
        train, holdout: the real cohorts; synthetic: a Cohort or ``name -> Cohort``.
    """
    from ehrlib.metrics.context import EvaluationContext

    context = EvaluationContext.build(train, holdout, synthetic, allow_overlap=allow_overlap)
    return pd.concat([utility_from_context(context, n, n_bootstrap=n_bootstrap, seed=seed).assign(model=n)
                      for n in context.synthetic], ignore_index=True)
