"""The ``prevalence_rank`` family: Spearman's rank correlation of per-code prevalence beside R² and
Pearson r, overall and within train-prevalence buckets (the book's page of stage 46).

Paper: section 3.1 reports R² and Pearson r only; rank correlation (rare codes dominate Pearson)
and the buckets are this project's. Kept apart from :mod:`ehrlib.metrics.prevalence` because it
draws the bootstrap's replicates (:mod:`ehrlib.metrics.bootstrap`), which is built on that module.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ehrlib.metrics.prevalence import _ranks, pearson, prevalence_from_matrix, r2, spearman

BUCKETS = (("common", 0.01, np.inf), ("middle", 0.001, 0.01), ("rare", 0.0, 0.001))
"""Train-prevalence buckets of the ``prevalence_rank`` family, ``(label, low, high)``: a train
code is in the bucket whose ``[low, high)`` holds its share of train patients."""

RANK_RANGES = {"prevalence_r2": (-np.inf, 1.0), "prevalence_pearson": (-1.0, 1.0), "prevalence_spearman": (-1.0, 1.0)}


def prevalence_rank_from_context(context, name: str, *, n_bootstrap: int = 1000, seed: int = 0,
                                 level: float = 0.95):
    """The ``prevalence_rank`` family of one synthetic cohort: Spearman r over the union of train's
    and the cohort's codes (the axis of the prevalence family's R² and Pearson r: a code train
    lacks ties at rank 0 there), and R², Pearson r and Spearman r within each train-prevalence
    bucket (:data:`BUCKETS`, train's codes only), each with the prevalence family's basic bootstrap
    interval (the context's train-side resamples, shared by every generator).

    Paper: section 3.1 reports R² and Pearson r only; the rank correlation and the buckets are
    this project's (the book's page of stage 46).
    """
    from ehrlib.metrics import names
    from ehrlib.metrics.bootstrap import (_blocks, _seed_sequences, interval_table, replicate_prevalences,
                                          resample_weights)

    train_key = context.real_key("train")
    vocab = context.union(train_key, name)
    real = context.real_resamples(n_bootstrap, seed)
    n_real, n_synthetic = context.train.n_patients, context.synthetic[name].n_patients

    def real_buckets():  # train's side per bucket, ranked once for every generator
        out = {}
        for label, low, high in BUCKETS:
            keep = np.flatnonzero((real.estimate >= low) & (real.estimate < high))
            codes = np.asarray(real.vocab.codes, dtype=object)[keep]
            est, reps = real.estimate[keep], real.replicates[:, keep]
            out[label] = (codes, low, high, est, _ranks(est, n_real), reps, _ranks(reps, n_real))
        return out
    buckets = context.memo(("prevalence_rank_real", n_bootstrap, seed), real_buckets)
    used = {label: b for label, b in buckets.items() if len(b[0]) >= 2}
    cols = {label: vocab.index(b[0]) for label, b in used.items()}
    rcols = real.columns(vocab)
    matrix = context.binary(name, vocab)

    def scores(real_union, synthetic, real_part):
        """Every metric of one (real, synthetic) pair of prevalence arrays, (B, V) or (V,)."""
        out = {names.PREVALENCE_SPEARMAN: spearman(real_union, synthetic, n_real, n_synthetic)}
        for label, (r_est, r_rank) in real_part.items():
            syn = synthetic[..., cols[label]]
            out[names.task_metric(names.PREVALENCE_R2, label)] = r2(r_est, syn)
            out[names.task_metric(names.PREVALENCE_PEARSON, label)] = pearson(r_est, syn)
            out[names.task_metric(names.PREVALENCE_SPEARMAN, label)] = pearson(*np.broadcast_arrays(
                r_rank, _ranks(syn, n_synthetic)))
        return out

    real_union = np.zeros(len(vocab))
    real_union[rcols] = real.estimate
    estimates = scores(real_union, prevalence_from_matrix(matrix), {k: (b[3], b[4]) for k, b in used.items()})
    replicates = {k: np.empty(n_bootstrap) for k in estimates}
    rng = np.random.default_rng(_seed_sequences(seed)[1])  # the prevalence family's synthetic draws (paired)
    for sl in _blocks(n_bootstrap):
        b = sl.stop - sl.start
        block = np.zeros((b, len(vocab)))
        block[:, rcols] = real.replicates[sl]
        synthetic = replicate_prevalences(matrix, resample_weights(matrix.shape[0], b, rng))
        for k, v in scores(block, synthetic, {k: (u[5][sl], u[6][sl]) for k, u in used.items()}).items():
            replicates[k][sl] = v
    ranges = {k: RANK_RANGES[names.split_task_metric(k)[0]] for k in estimates}
    sizes = {label: (len(b[0]), b[1], b[2]) for label, b in buckets.items()}
    df = interval_table(estimates, replicates, level, ranges)
    base = f"basic bootstrap interval, B={n_bootstrap}, patients of train and synthetic resampled independently"
    notes = []
    for metric in df["metric"]:
        stat, bucket = names.split_task_metric(metric)
        if bucket is None:
            notes.append(f"over train and {name} codes ({len(vocab)}); {base}")
        else:
            n, low, high = sizes[bucket]
            notes.append(f"train codes with a train prevalence in [{low:g}, {high:g}) ({n} codes); {base}")
    df["note"] = notes
    df["spread"] = np.nan
    small = [label for label, (n, *_) in sizes.items() if n < 2]
    if small:
        df = pd.concat([df, pd.DataFrame([{"metric": names.task_metric(stat, label), "estimate": np.nan,
                                           "note": f"skipped: {sizes[label][0]} train codes in the {label} bucket"}
                                          for label in small for stat in names.PREVALENCE_BUCKET_STATS])],
                       ignore_index=True)
    return df[["metric", "estimate", "ci_low", "ci_high", "spread", "note", "bias"]]
