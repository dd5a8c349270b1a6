"""Long-tail views of per-code prevalence (paper Fig. 3; appendix G.2: Figs. 4-8, Table 13).

Every function works on Cohorts. ``train`` is the real training cohort; ``synthetic`` is one
Cohort or a dict ``name -> Cohort`` (reference rows such as ``holdout``, ``marginals`` and
``memorizer`` are passed the same way as models). Outputs are tidy DataFrames with one row per
model (and per percentile, bucket, rank or code) and a ``model`` column, ready for
:mod:`ehrlib.plots`.

Definitions shared by the whole module:

* **frequency** of a code in a cohort: the number of patients with the code in any visit;
  **prevalence**: that number divided by the cohort's number of patients (paper 3.1);
* prevalence vectors of ``train`` and a synthetic cohort are compared over the union of their
  two code sets (codes absent from one side have prevalence 0 there); the union is taken per
  model, so a model's numbers never depend on which other models were passed;
* **R²** is ``1 - SS_res / SS_tot`` with the real prevalences as truth (it can be negative);
  Pearson r and RMSE as usual. R² is ``nan`` when the real prevalences of a subset are all
  equal (``SS_tot = 0``), Pearson r when either side is constant;
* **sampling-noise reference**: a generator that drew ``n_s`` fresh patients from the
  population that produced ``train`` would still differ from ``train``, with expected squared
  error ``p(1-p)(1/n_s + 1/n_t)`` per code (binomial variance of two independent prevalence
  estimates; ``p`` estimated by the training prevalence). ``rmse_noise`` is the square root of
  its mean over the codes of a subset and ``r2_noise = 1 - sum(var) / SS_tot`` is the R² such an
  ideal generator would get on average. These columns say how much of a bad R² in a narrow
  frequency band is sampling noise (the book's methods page: real vs real gives large negative R² in
  the rare buckets).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ehrlib.metrics import prevalence
from ehrlib.cohort import Cohort, CohortError
from ehrlib.data.encode import Vocabulary, binary_matrix
from ehrlib.metrics.context import HOLDOUT, TRAIN, as_context

#: Name of the real training cohort in outputs that include it.
REAL = "train"
#: The percentiles of the paper's Fig. 3 ablation.
PERCENTILES = (75, 90, 95, 97.5, 99)
FIT_COLUMNS = ("r2", "pearson", "rmse", "rmse_noise", "r2_noise")


# ---------------------------------------------------------------------------- helpers
def _require_events(cohort: Cohort, name: str) -> Cohort:
    if not isinstance(cohort, Cohort):
        raise TypeError(f"cohort {name!r} is a {type(cohort).__name__}; expected an ehrlib Cohort")
    if cohort.n_events == 0:
        src = f" (source {cohort.source!r})" if cohort.source else ""
        raise CohortError(
            f"cohort {name!r}{src} has no diagnosis events; metrics need at least one patient "
            "with a code (did the generator emit nothing?)"
        )
    return cohort


def _named(cohorts, default: str = "synthetic") -> dict[str, Cohort]:
    """``{name: Cohort}`` from a Cohort (named ``default``) or a mapping; checks each is non-empty."""
    if isinstance(cohorts, Cohort):
        items = {default: cohorts}
    elif isinstance(cohorts, Mapping):
        items = {str(k): v for k, v in cohorts.items()}
    else:
        raise TypeError(
            f"expected a Cohort or a dict name -> Cohort; got {type(cohorts).__name__}"
        )
    if not items:
        raise CohortError("no cohorts given; expected a Cohort or a non-empty dict name -> Cohort")
    for name, cohort in items.items():
        _require_events(cohort, name)
    return items


def code_counts(cohort: Cohort) -> pd.Series:
    """Number of patients with each code (in any visit), indexed by code in sorted order.

    Computed as the column sums of the patients x codes binary matrix
    (:func:`ehrlib.data.encode.binary_matrix`).
    """
    vocab = Vocabulary.from_cohorts(_require_events(cohort, cohort.source or "cohort"))
    x = binary_matrix(cohort, vocab, dtype=np.int32)
    counts = np.asarray(x.sum(axis=0)).ravel().astype(np.int64)
    return pd.Series(counts, index=pd.Index(vocab.codes, name="code"), name="patients")


def _ranked(counts: pd.Series) -> pd.Series:
    """Counts sorted by decreasing frequency, ties broken by code (deterministic)."""
    order = np.lexsort((counts.index.to_numpy(dtype=str), -counts.to_numpy()))
    return counts.iloc[order]


def _align(real: pd.Series, synth: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of the union (sorted) and the two count vectors over it (0 where absent)."""
    codes = real.index.union(synth.index).sort_values()
    return (
        codes.to_numpy(dtype=object),
        real.reindex(codes, fill_value=0).to_numpy(np.int64),
        synth.reindex(codes, fill_value=0).to_numpy(np.int64),
    )


def _noise_var(p_real: np.ndarray, n_real: int, n_synth: int) -> np.ndarray:
    """Expected squared prevalence error of an independent sample (module docstring)."""
    return p_real * (1.0 - p_real) * (1.0 / n_real + 1.0 / n_synth)


def _fit(real: np.ndarray, synth: np.ndarray, noise_var: np.ndarray) -> dict:
    """R², Pearson r, RMSE (:mod:`ehrlib.metrics.prevalence`) and the sampling-noise reference."""
    if len(real) == 0:
        return {k: float("nan") for k in FIT_COLUMNS}
    rc = real - real.mean()
    ss_tot = 0.0 if np.ptp(real) == 0 else float(rc @ rc)
    return {
        "r2": float(prevalence.r2(real, synth)),
        "pearson": float(prevalence.pearson(real, synth)),
        "rmse": float(prevalence.rmse(real, synth)),
        "rmse_noise": float(np.sqrt(noise_var.mean())),
        "r2_noise": 1.0 - float(noise_var.sum()) / ss_tot if ss_tot > 0 else float("nan"),
    }


# ---------------------------------------------------------------------------- Fig. 8
def code_buckets(train: Cohort, n_buckets: int = 10) -> pd.DataFrame:
    """Assign each training code to one of ``n_buckets`` equal-size frequency buckets.

    Codes are ranked by decreasing training patient count (ties broken by code, so the
    assignment is deterministic) and cut into ``n_buckets`` consecutive groups whose sizes
    differ by at most one (the first groups take the remainder). Bucket 1 (``Q1``) holds the
    most frequent codes. Codes tied at a boundary may fall on either side of it.

    Returns:
        One row per training code in rank order: ``code``, ``patients``, ``prevalence``,
        ``rank`` (1 = most frequent), ``bucket`` (1..n_buckets), ``label`` (``Q1``...).

    Raises:
        ValueError: ``n_buckets`` < 1 or more buckets than training codes.
    """
    _require_events(train, REAL)
    counts = _ranked(code_counts(train))
    n_codes = len(counts)
    if not isinstance(n_buckets, (int, np.integer)) or n_buckets < 1 or n_buckets > n_codes:
        raise ValueError(
            f"n_buckets={n_buckets!r}: expected an integer between 1 and the number of training "
            f"codes ({n_codes})"
        )
    sizes = [len(a) for a in np.array_split(np.arange(n_codes), n_buckets)]
    bucket = np.repeat(np.arange(1, n_buckets + 1), sizes)
    return pd.DataFrame({
        "code": counts.index.to_numpy(dtype=object),
        "patients": counts.to_numpy(),
        "prevalence": counts.to_numpy() / train.n_patients,
        "rank": np.arange(1, n_codes + 1),
        "bucket": bucket,
        "label": [f"Q{b}" for b in bucket],
    })


def frequency_buckets(train: Cohort, synthetic, n_buckets: int = 10, reference: Cohort | None = None,
                      reference_name: str = "holdout", *, n_bootstrap: int | None = None, seed: int = 0,
                      level: float = 0.95) -> pd.DataFrame:
    """Prevalence fit inside each training-frequency bucket, with a noise calibration (Fig. 8).

    Buckets come from :func:`code_buckets` and hold training codes only, so they are the
    same for every model; codes a model emits that ``train`` lacks are left out here (they
    are counted as ``novel`` by :func:`coverage_table`).

    Inside a narrow frequency band the real prevalences barely vary, so ``SS_tot`` is tiny and
    R² is dominated by sampling noise: an independent real sample (``holdout``) gets large
    negative R² in the rare buckets. Calibrations reported beside R², Pearson, RMSE:

    * ``rmse_ratio = rmse / rmse_noise``: the RMSE relative to what binomial sampling noise
      alone gives at these sample sizes (module docstring). About 1: the model is as close to
      ``train`` as a fresh sample of the population would be; above 1: excess error; well
      below 1: closer to ``train`` than an independent sample can be. Read it together with
      ``mass_ratio`` (sum of synthetic over sum of real prevalences in the bucket): with
      ``mass_ratio`` near 1 a low ``rmse_ratio`` hints at copying (a train subsample gets
      about ``sqrt((1/n_s - 1/n_t) / (1/n_s + 1/n_t))``), while ``mass_ratio`` far below 1 means
      the model drops the bucket's codes, which squared error *rewards* for rare codes (a code
      in 1 of 10,000 patients is missed by 0.0001 when omitted but by 0.0004 when emitted once
      in 2,000). The noise reference is an approximation: the buckets are selected on the
      training counts themselves, so in the rarest buckets the plug-in variance is biased
      (regression to the mean: on the simulated cohort, 10k train vs 2k holdout, the holdout
      gets ``rmse_ratio`` 0.7-0.8 and ``mass_ratio`` 0.5-0.8 in Q6-Q10);
    * with ``reference`` (e.g. the holdout cohort, ideally subsampled to the synthetic size):
      the reference gets its own rows (``model = reference_name``) and every row gains
      ``rmse_ratio_reference = rmse / rmse(reference)`` in the same bucket, an empirical
      noise floor that needs no binomial assumption.

    Intervals (``n_bootstrap``): patients of train and of each model resampled B times (the
    train resamples shared by all models, paired), buckets held fixed at those of the full
    train; ``r2``, ``pearson`` and ``rmse`` gain ``<column>_ci_low`` / ``_ci_high`` (basic
    intervals; NaN where the statistic is undefined in more than half of the resamples).

    Paper: appendix G.2, Fig. 8 (per-bucket R²). Deviations: buckets over training codes
    only; ``r2`` is ``nan`` where all real prevalences in a bucket are equal (typically the
    rarest bucket, where every code occurs once); the noise-calibrated columns are ours.

    Args:
        train: the real training cohort.
        synthetic: a Cohort or a dict ``name -> Cohort``.
        n_buckets: number of equal-size buckets (the paper uses 10).
        reference: optional real cohort not used for training.
        reference_name: the ``model`` name of the reference rows.

    Returns:
        One row per model and bucket: ``model``, ``bucket`` (1 = most frequent), ``label``
        (``Q1``...), ``n_codes``, ``min_patients``, ``max_patients`` (training counts in the
        bucket), ``r2``, ``pearson``, ``rmse``, ``rmse_noise``, ``r2_noise``, ``rmse_ratio``,
        ``mass_ratio`` and, with a reference, ``rmse_ratio_reference``. Reference rows come
        first.

    Raises:
        CohortError: a cohort without events.
        ValueError: bad ``n_buckets`` or ``reference_name`` clashing with a synthetic name.
    """
    buckets = code_buckets(train, n_buckets)
    models = _named(synthetic)
    if reference is not None:
        if reference_name in models:
            raise ValueError(
                f"reference_name={reference_name!r} is also a key of synthetic; pass the reference "
                "once, either as reference or inside synthetic"
            )
        models = {reference_name: _require_events(reference, reference_name), **models}
    n_t = train.n_patients
    codes = pd.Index(buckets["code"].to_numpy(dtype=object))
    pt = buckets["prevalence"].to_numpy()
    bucket = buckets["bucket"].to_numpy()
    summary = buckets.groupby("bucket")["patients"].agg(["size", "min", "max"])
    rows = []
    for name, cohort in models.items():
        n_s = cohort.n_patients
        ps = code_counts(cohort).reindex(codes, fill_value=0).to_numpy() / n_s
        var = _noise_var(pt, n_t, n_s)
        for b in range(1, n_buckets + 1):
            m = bucket == b
            stats = _fit(pt[m], ps[m], var[m])
            rows.append({
                "model": name, "bucket": b, "label": f"Q{b}", "n_codes": int(summary.at[b, "size"]),
                "min_patients": int(summary.at[b, "min"]), "max_patients": int(summary.at[b, "max"]),
                **stats,
                "rmse_ratio": stats["rmse"] / stats["rmse_noise"] if stats["rmse_noise"] > 0 else float("nan"),
                "mass_ratio": float(ps[m].sum() / pt[m].sum()),
            })
    out = pd.DataFrame(rows)
    if reference is not None:
        ref = out.loc[out["model"] == reference_name].set_index("bucket")["rmse"]
        denom = out["bucket"].map(ref).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            out["rmse_ratio_reference"] = np.where(denom > 0, out["rmse"].to_numpy() / denom, np.nan)
    if n_bootstrap is not None:
        out = _bucket_intervals(out, train, models, codes, bucket, n_bootstrap, seed, level)
    return out


def _bucket_intervals(table, train, models, codes, bucket, n_bootstrap, seed, level):
    """``r2``, ``pearson``, ``rmse`` intervals per model and bucket (buckets fixed from the full train)."""
    from ehrlib.metrics.bootstrap import _check_n_bootstrap, _seed_sequences, basic_interval

    _check_n_bootstrap(n_bootstrap)
    real_seq, syn_seq = _seed_sequences(seed)
    t_vocab = Vocabulary.from_cohorts(train)
    order = t_vocab.index(list(codes))
    t_rep = _count_replicates(train, t_vocab, n_bootstrap, np.random.default_rng(real_seq))[:, order] / train.n_patients
    table = table.copy()
    for (name, cohort), sq in zip(models.items(), syn_seq.spawn(len(models))):
        vocab = Vocabulary.from_cohorts(train, cohort)
        s_rep = _count_replicates(cohort, vocab, n_bootstrap, np.random.default_rng(sq))
        s_rep = s_rep[:, vocab.index(list(codes))] / cohort.n_patients
        for b in np.unique(bucket):
            m = bucket == b
            row = table.index[(table["model"] == name) & (table["bucket"] == b)][0]
            for col, fn in (("r2", prevalence.r2), ("pearson", prevalence.pearson), ("rmse", prevalence.rmse)):
                est = table.at[row, col]
                with np.errstate(all="ignore"):
                    reps = np.asarray(fn(t_rep[:, m], s_rep[:, m]), dtype=float)
                ok = np.isfinite(est) and np.isfinite(reps).mean() >= 0.5
                low, high = (basic_interval(est, reps[np.isfinite(reps)], level,
                                            prevalence.PREVALENCE_RANGES[f"prevalence_{col}"])
                             if ok else (float("nan"), float("nan")))
                table.loc[row, f"{col}_ci_low"] = low
                table.loc[row, f"{col}_ci_high"] = high
    return table


# ---------------------------------------------------------------------------- Figs. 4-7
def rank_frequency(cohorts) -> pd.DataFrame:
    """Codes of each cohort ranked by patient-level prevalence (Fig. 4; Fig. 2 for ``train``).

    Each cohort is ranked on its own (ties broken by code); only codes the cohort contains
    appear, so a curve ends where the cohort's vocabulary ends.

    Paper: appendix G.2, Fig. 4 (log-log rank-frequency); section 1, Fig. 2.

    Args:
        cohorts: a dict ``name -> Cohort`` (include ``train``) or one Cohort.

    Returns:
        ``model``, ``rank`` (1 = most frequent), ``code``, ``patients``, ``prevalence``.
    """
    frames = []
    for name, cohort in _named(cohorts, default=REAL).items():
        counts = _ranked(code_counts(cohort))
        frames.append(pd.DataFrame({
            "model": name, "rank": np.arange(1, len(counts) + 1),
            "code": counts.index.to_numpy(dtype=object), "patients": counts.to_numpy(),
            "prevalence": counts.to_numpy() / cohort.n_patients,
        }))
    return pd.concat(frames, ignore_index=True)


def top_codes(train: Cohort, synthetic, k: int = 20, real_name: str = REAL) -> pd.DataFrame:
    """Prevalence of the ``k`` most prevalent training codes in train and each model (Fig. 5).

    Paper: appendix G.2, Fig. 5 (top-20 codes).

    Returns:
        ``model`` (``real_name`` for the training rows, first), ``rank`` (training rank),
        ``code``, ``title`` (CMS's short ICD-9 title, ``""`` for a code outside ICD-9-CM v32),
        ``prevalence`` (0 where a model never emits the code), ``real_prevalence``.
    """
    from ehrlib.data.icd9 import short_titles

    if k < 1:
        raise ValueError(f"k={k!r}: expected a positive integer")
    models = _named(synthetic)
    if real_name in models:
        raise ValueError(f"real_name={real_name!r} is also a key of synthetic; rename one of them")
    real = _ranked(code_counts(_require_events(train, real_name))).iloc[:k]
    top = real.index
    p_real = real.to_numpy() / train.n_patients
    codes, titles, ranks = top.to_numpy(dtype=object), short_titles(top), np.arange(1, len(top) + 1)
    frames = [pd.DataFrame({"model": real_name, "rank": ranks, "code": codes, "title": titles,
                            "prevalence": p_real, "real_prevalence": p_real})]
    for name, cohort in models.items():
        p = code_counts(cohort).reindex(top, fill_value=0).to_numpy() / cohort.n_patients
        frames.append(pd.DataFrame({"model": name, "rank": ranks, "code": codes, "title": titles, "prevalence": p,
                                    "real_prevalence": p_real}))
    return pd.concat(frames, ignore_index=True)


def per_code_prevalence(train: Cohort, synthetic) -> pd.DataFrame:
    """Real and synthetic prevalence of every code of train ∪ model (Fig. 6 scatter data).

    Paper: appendix G.2, Fig. 6 (per-code real vs synthetic prevalence, symlog).

    Returns:
        ``model``, ``code``, ``real`` (training prevalence), ``synthetic`` (the model's), one
        row per code of the per-model union vocabulary, codes in sorted order.
    """
    _require_events(train, REAL)
    real = code_counts(train)
    frames = []
    for name, cohort in _named(synthetic).items():
        codes, t, s = _align(real, code_counts(cohort))
        frames.append(pd.DataFrame({"model": name, "code": codes, "real": t / train.n_patients,
                                    "synthetic": s / cohort.n_patients}))
    return pd.concat(frames, ignore_index=True)


def cumulative_mass(cohorts) -> pd.DataFrame:
    """Share of total prevalence mass held by each cohort's ``k`` most prevalent codes (Fig. 7).

    The mass of a cohort is the sum of its per-code prevalences (= code occurrences per
    patient, counting a code once per patient). A curve that saturates at small ``k`` puts
    its mass on few head codes.

    Paper: appendix G.2, Fig. 7.

    Returns:
        ``model``, ``k`` (1..unique codes), ``code`` (the k-th code), ``cumulative_share``.
    """
    frames = []
    for name, cohort in _named(cohorts, default=REAL).items():
        ranked = _ranked(code_counts(cohort))
        counts = ranked.to_numpy()
        frames.append(pd.DataFrame({
            "model": name, "k": np.arange(1, len(counts) + 1),
            "code": ranked.index.to_numpy(dtype=object),
            "cumulative_share": np.cumsum(counts) / counts.sum(),
        }))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------- Table 13
def _kl(p: np.ndarray, q: np.ndarray) -> float:
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def _kl_unsmoothed(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) over the support of p; ``inf`` where p > 0 and q = 0."""
    m = p > 0
    if (q[m] == 0).any():
        return float("inf")
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def coverage_table(train: Cohort, synthetic, top: Sequence[int] = (10, 50), skew: float = 0.99, *,
                   n_bootstrap: int | None = None, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Vocabulary coverage and divergence of code-frequency distributions (Table 13).

    With ``A`` the set of training codes and ``B`` the model's:

    * ``unique_codes`` = |B|; ``coverage_pct`` = 100·|A ∩ B| / |A|; ``novel`` = |B \\ A|;
      ``jaccard`` = |A ∩ B| / |A ∪ B|;
    * ``kl`` and ``js``: divergences between the code-frequency distributions ``P`` (train)
      and ``Q`` (model), each the patient counts of the union vocabulary normalised to sum 1,
      in nats (natural log). KL(P‖Q) is infinite as soon as the model misses one training
      code, so ``Q`` is smoothed towards ``P``: ``kl = KL(P ‖ skew·Q + (1-skew)·P)``, the
      skew divergence (Lee 1999), finite (at most ``-log(1-skew)`` = 4.6 nats for 0.99) and 0
      exactly when ``P = Q``. JS = ½KL(P‖M) + ½KL(Q‖M), ``M = (P+Q)/2``, needs no smoothing and
      lies in [0, ln 2];
    * ``kl_syn_real`` = KL(Q ‖ P), unsmoothed, the direction the paper's Table 13 implies (its
      finite values go with Novel = 0). Support rule: the sum runs over the codes the model
      emits (Q > 0); it is finite exactly when every such code is a training code (P > 0), and
      ``inf`` as soon as the model emits one novel code (``novel`` > 0). Codes the model misses
      do not enter it, so it does not penalise low coverage;
    * ``top{k}``: how many of the ``k`` most prevalent training codes are among the ``k`` most
      prevalent model codes (ties broken by code).

    Paper: appendix G.2, Table 13. Deviations: the paper does not say how it handled zero
    synthetic mass in KL; we use the skew divergence above (the value depends on ``skew``).
    Coverage is a percentage as in the paper.

    Intervals (``n_bootstrap``): patients of train and of each model are resampled with
    replacement B times (the train resamples shared by every model, so models are compared on
    paired replicates), every column is recomputed from the resampled patient counts, and each
    numeric column gains ``<column>_ci_low`` / ``<column>_ci_high``, the basic bootstrap
    interval (the book's methods page). Counts such as ``unique_codes`` shrink under resampling (a
    resample misses rare codes), so their basic intervals are shifted upwards; read them as the
    sampling uncertainty of a support-dependent statistic, not as a range of plausible counts.
    ``kl_syn_real`` has no interval (NaN) when it is infinite in some resample (a train resample
    misses a code that the model's resample holds), which is the usual case.

    Args:
        train, synthetic: as in the other functions of this module.
        top: the head sizes of the ``top{k}`` columns.
        skew: the skew of the smoothed KL.
        n_bootstrap: B, or ``None`` for point estimates only.
        seed: seeds the resamples.
        level: confidence level.

    Returns:
        One row per model: ``model``, ``unique_codes``, ``coverage_pct``, ``novel``,
        ``jaccard``, ``kl``, ``kl_syn_real``, ``js``, ``top10``, ``top50`` (one ``top{k}`` per
        entry of ``top``), and with ``n_bootstrap`` the interval columns.
    """
    if not 0 < skew <= 1:
        raise ValueError(f"skew={skew!r}: expected a value in (0, 1]")
    _require_events(train, REAL)
    real = code_counts(train)
    real_set = set(real.index)
    real_top = {k: set(_ranked(real).index[:k]) for k in top}
    rows = []
    for name, cohort in _named(synthetic).items():
        synth = code_counts(cohort)
        synth_set = set(synth.index)
        both = len(real_set & synth_set)
        _, t, s = _align(real, synth)
        p, q = t / t.sum(), s / s.sum()
        mix = 0.5 * (p + q)
        ranked = _ranked(synth).index
        rows.append({
            "model": name,
            "unique_codes": len(synth_set),
            "coverage_pct": 100.0 * both / len(real_set),
            "novel": len(synth_set - real_set),
            "jaccard": both / len(real_set | synth_set),
            "kl": _kl(p, skew * q + (1.0 - skew) * p),
            "kl_syn_real": _kl_unsmoothed(q, p),
            "js": 0.5 * _kl(p, mix) + 0.5 * _kl(q, mix),
            **{f"top{k}": len(real_top[k] & set(ranked[:k])) for k in top},
        })
    out = pd.DataFrame(rows)
    if n_bootstrap is None:
        return out
    return _coverage_intervals(out, train, _named(synthetic), top, skew, n_bootstrap, seed, level)


def _count_replicates(cohort: Cohort, vocab: Vocabulary, n_bootstrap: int, rng) -> np.ndarray:
    """(B, V) patient counts of each code in B patient resamples of ``cohort``."""
    from ehrlib.metrics.bootstrap import _draw_replicates

    return _draw_replicates(binary_matrix(cohort, vocab), n_bootstrap, rng) * cohort.n_patients


def _coverage_stats(t: np.ndarray, s: np.ndarray, top: Sequence[int], skew: float) -> dict:
    """Table 13 columns for rows of count vectors ``t`` (train) and ``s`` (model), shape (B, V)."""
    a, b = t > 0, s > 0
    both = (a & b).sum(1)
    p = t / t.sum(1, keepdims=True)
    q = s / np.maximum(s.sum(1, keepdims=True), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        def kl(x, y):
            return np.where(x > 0, x * np.log(np.where(x > 0, x, 1) / np.where(y > 0, y, 1e-300)), 0).sum(1)
        mix = 0.5 * (p + q)
        out = {
            "unique_codes": b.sum(1).astype(float),
            "coverage_pct": 100.0 * both / a.sum(1),
            "novel": (b & ~a).sum(1).astype(float),
            "jaccard": both / (a | b).sum(1),
            "kl": kl(p, skew * q + (1 - skew) * p),
            "kl_syn_real": np.where((b & ~a).any(1), np.inf, kl(q, p)),
            "js": 0.5 * kl(p, mix) + 0.5 * kl(q, mix),
        }
    rank_t = np.argsort(-t, axis=1, kind="stable")  # ties: lower index = smaller code first
    rank_s = np.argsort(-s, axis=1, kind="stable")
    for k in top:
        hit = np.zeros_like(a)
        np.put_along_axis(hit, rank_t[:, :k], True, axis=1)
        out[f"top{k}"] = np.take_along_axis(hit, rank_s[:, :k], axis=1).sum(1).astype(float)
    return out


def _coverage_intervals(table: pd.DataFrame, train: Cohort, models: dict, top, skew, n_bootstrap, seed, level):
    from ehrlib.metrics.bootstrap import _check_n_bootstrap, _seed_sequences, basic_interval

    _check_n_bootstrap(n_bootstrap)
    real_seq, syn_seq = _seed_sequences(seed)
    t_vocab = Vocabulary.from_cohorts(train)
    t_rep = _count_replicates(train, t_vocab, n_bootstrap, np.random.default_rng(real_seq))
    syn_seqs = syn_seq.spawn(len(models))
    table = table.copy()
    bounds = {"coverage_pct": (0, 100), "jaccard": (0, 1), "js": (0, np.log(2)), "kl": (0, np.inf),
              "kl_syn_real": (0, np.inf), "unique_codes": (0, np.inf), "novel": (0, np.inf)}
    for row, ((name, cohort), sq) in enumerate(zip(models.items(), syn_seqs)):
        vocab = Vocabulary.from_cohorts(train, cohort)
        s_rep = _count_replicates(cohort, vocab, n_bootstrap, np.random.default_rng(sq))
        t_full = np.zeros_like(s_rep)
        t_full[:, vocab.index(t_vocab.codes)] = t_rep
        stats = _coverage_stats(t_full, s_rep, top, skew)
        for col, reps in stats.items():
            est = float(table.at[row, col])
            if not np.isfinite(est) or not np.isfinite(reps).all():  # KL(syn || real) infinite in a resample
                low = high = float("nan")
            else:
                low, high = basic_interval(est, reps, level, bounds.get(col, (0, max(top))))
            table.loc[row, f"{col}_ci_low"] = low
            table.loc[row, f"{col}_ci_high"] = high
    return table


# ---------------------------------------------------------------------------- Fig. 3, all panels
def occurrence_counts(cohort: Cohort) -> pd.Series:
    """Number of code occurrences (visits with the code, i.e. rows of the long table) per code.

    The paper's long-tail ablation takes its percentiles over these (``value_counts`` of rows).
    """
    counts = _require_events(cohort, cohort.source or "cohort").events["code"].value_counts()
    counts.index = counts.index.astype(object)
    return counts.sort_index().rename("occurrences").astype(np.int64)


def _check_percentiles(percentiles) -> np.ndarray:
    pcts = np.asarray(list(percentiles), dtype=float)
    if pcts.size == 0 or not np.isfinite(pcts).all() or ((pcts <= 0) | (pcts > 100)).any():
        raise ValueError(f"percentiles={list(percentiles)!r}: expected one or more values in (0, 100]")
    return pcts


def tail_codes(train: Cohort, percentile: float, protocol: str = "corrected") -> dict:
    """The codes at or below the ``percentile``-th percentile of training frequency.

    ``corrected``: frequency = patients with the code (:func:`code_counts`); ``paper``: code
    occurrences (:func:`occurrence_counts`), as the paper's notebook. The percentile is taken
    over the codes present in ``train`` (linear interpolation).

    Returns:
        dict with ``codes`` (the kept training codes, a set), ``threshold`` (the frequency at the
        percentile), ``n_codes`` and ``tail_share`` (share of all training code occurrences that
        the kept codes hold; the paper prints it).

    Raises:
        ValueError: a percentile outside (0, 100].
        ConfigError: an unknown protocol.
    """
    from ehrlib.metrics import names

    names.check_protocol(protocol)
    (p,) = _check_percentiles([percentile])
    occ = occurrence_counts(train)
    return _tail(occ if protocol == names.PAPER else code_counts(train), occ, p)


def _train_counts(context) -> pd.Series:
    """:func:`code_counts` of the context's train, from its binary matrix (the same counts)."""
    vocab = context.union(TRAIN)
    x = context.binary(TRAIN, vocab)
    counts = np.asarray(x.sum(axis=0)).ravel().astype(np.int64)
    return pd.Series(counts, index=pd.Index(vocab.codes, name="code"), name="patients")


def _tail(freq: pd.Series, occ: pd.Series, p: float) -> dict:
    """:func:`tail_codes` from the training frequencies ``freq`` and occurrence counts ``occ``."""
    threshold = float(np.percentile(freq.to_numpy(), p))
    kept = freq.index[freq.to_numpy() <= threshold]
    return {"codes": set(kept), "threshold": threshold, "n_codes": len(kept),
            "tail_share": float(occ.reindex(kept).sum() / occ.sum())}


def _restrict(cohort: Cohort, keep) -> Cohort | None:
    """``cohort.restrict_codes(keep)``, or None when the cohort has none of the codes."""
    if not set(keep) & set(pd.unique(cohort.events["code"]).tolist()):
        return None
    return cohort.restrict_codes(keep)


def _shared_replicates(context, role: str, vocab: Vocabulary, n_bootstrap: int, seed: int, side: int) -> np.ndarray:
    """The (B, V) bootstrap prevalence replicates of cohort ``role`` of ``context`` over ``vocab``,
    drawn with stream ``side`` of ``seed`` (0: real, 1: synthetic; as :func:`_prevalence_rows`).

    Drawn once per context over its whole vocabulary, then the columns of ``vocab`` taken: the
    resample weights depend on the number of patients alone and each column's replicate on its own
    entries, so the values are those of a draw over ``vocab`` itself, for every percentile and
    model that asks."""
    from ehrlib.metrics.bootstrap import _draw_replicates, _seed_sequences

    full = context.memo(("longtail_replicates", role, int(n_bootstrap), int(seed), int(side)),
                        lambda: _draw_replicates(context.binary(role), n_bootstrap,
                                                 np.random.default_rng(_seed_sequences(seed)[side])))
    return full[:, context.vocab.index(vocab.codes)]


def _prevalence_rows(x_real, x_syn, n_bootstrap: int, seed: int, r_real=None, r_syn=None) -> dict:
    """Prevalence R², Pearson r, RMSE with basic bootstrap intervals from two 0/1 matrices
    (``r_real``, ``r_syn``: their replicates when drawn already, :func:`_shared_replicates`)."""
    from ehrlib.metrics.bootstrap import _draw_replicates, _seed_sequences, basic_interval

    real_rng, syn_rng = (np.random.default_rng(s) for s in _seed_sequences(seed))
    p_real = np.asarray(x_real.mean(axis=0)).ravel()
    p_syn = np.asarray(x_syn.mean(axis=0)).ravel()
    r_real = _draw_replicates(x_real, n_bootstrap, real_rng) if r_real is None else r_real
    r_syn = _draw_replicates(x_syn, n_bootstrap, syn_rng) if r_syn is None else r_syn
    out = {}
    for name, fn in prevalence.PREVALENCE_METRICS.items():
        est = fn(p_real, p_syn)
        with np.errstate(all="ignore"):
            low, high = basic_interval(est, fn(r_real, r_syn), bounds=prevalence.PREVALENCE_RANGES[name]) \
                if np.isfinite(est) else (float("nan"), float("nan"))
        out[name] = (float(est), low, high)
    return out


def longtail_ablation(train: Cohort, holdout: Cohort, synthetic, percentiles: Sequence[float] = PERCENTILES, *,
                      protocol: str = "corrected", discriminator: str | None = "rf", n_bootstrap: int = 1000,
                      repeats: int = 10, seed: int = 0, real: str = "train", panels=None,
                      context=None, allow_overlap: bool = False, **discriminator_options) -> pd.DataFrame:
    """Fig. 3 complete: six metrics per percentile on records restricted to the tail codes.

    For each percentile ``p``, train, holdout and synthetic records are restricted to the codes
    at or below the ``p``-th percentile of training frequency (:func:`tail_codes`,
    :meth:`ehrlib.cohort.Cohort.restrict_codes`: other codes, then empty visits and patients,
    dropped), and every panel of the paper's Fig. 3 is recomputed
    (:data:`ehrlib.metrics.names.FIG3_METRICS`): NNAAR, MIA F1, MIA accuracy (spread over
    ``repeats`` subsamples), prevalence R² and RMSE (basic bootstrap intervals, B =
    ``n_bootstrap``) and the discriminator's privacy score ``1 - 2|acc - 0.5|`` (basic
    bootstrap interval over held-out predictions).

    Protocols:

    * ``corrected``: percentiles over per-code patient counts; a code absent from ``train``
      counts 0 and stays in every subset (a model's novel codes are tail errors); prevalence is
      divided by each cohort's full number of patients (a patient without tail codes has
      prevalence 0 for them).
    * ``paper``: percentiles over code occurrences; only training codes are kept; prevalence is
      divided by the patients left after filtering; privacy and discriminator by the paper's
      rules (:func:`ehrlib.metrics.privacy.privacy_metrics`,
      :func:`ehrlib.metrics.discriminator.discriminator_family`); an LSTM discriminator has the
      long-tail loop's hidden size 16
      (:data:`ehrlib.metrics.discriminator.PAPER_LONGTAIL_LSTM`) unless ``lstm`` is given.

    Paper: section 4 ablation, Fig. 3. The one Figure 3 implementation: the pipeline draws it and
    :func:`ehrlib.metrics.protocols.protocol_effects` reads its prevalence panels.

    Args:
        train, holdout: the real cohorts.
        synthetic: a Cohort or a dict ``name -> Cohort``.
        percentiles: values in (0, 100].
        protocol: ``"corrected"`` or ``"paper"``.
        discriminator: ``"rf"``, ``"lstm"`` or ``None`` (no discriminator panel).
        n_bootstrap, repeats, seed: as in :func:`ehrlib.metrics.evaluate`.
        real: the discriminator's real class (``"train"`` or ``"holdout"``).
        panels: the families of panels to compute, a subset of ``("prevalence", "privacy",
            "discriminator")`` (default all three; ``discriminator=None`` drops the last).
        context: an :class:`ehrlib.metrics.context.EvaluationContext` of these cohorts to reuse
            (its encodings and overlap check); built here otherwise. Each percentile's restricted
            cohorts form one restricted context shared by every model.
        allow_overlap: as in :func:`ehrlib.metrics.evaluate`.
        **discriminator_options: ``rf``, ``lstm``, ``device``, ``test_size``.

    Returns:
        Tidy table, one row per model, percentile and metric: ``model``, ``percentile``,
        ``threshold``, ``tail_share``, ``n_codes``, ``synthetic_patients`` (left after
        restriction), ``metric``, ``estimate``, ``ci_low``, ``ci_high``, ``spread``, ``note``. A
        metric that cannot be computed (e.g. no synthetic record holds a tail code) is NaN with
        the reason in ``note``, with a warning.

    Raises:
        ValueError: a percentile outside (0, 100].
        ConfigError: an unknown protocol or discriminator.
        CohortError: an empty cohort.
    """
    import warnings

    from ehrlib.metrics import names
    from ehrlib.metrics import discriminator as disc
    from ehrlib.metrics.privacy import privacy_from_context

    names.check_protocol(protocol)
    if discriminator is not None:
        names.check_kind(discriminator)
    if protocol == names.PAPER and discriminator == names.LSTM:
        discriminator_options.setdefault("lstm", disc.PAPER_LONGTAIL_LSTM)
    panels = set((names.PREVALENCE, names.PRIVACY, names.DISCRIMINATOR) if panels is None else panels)
    if discriminator is None:
        panels.discard(names.DISCRIMINATOR)
    pcts = _check_percentiles(percentiles)
    _require_events(train, REAL)
    _require_events(holdout, "holdout")
    models = _named(synthetic)
    context = as_context(train, holdout, models, allow_overlap=allow_overlap, context=context)
    paper = protocol == names.PAPER
    train_codes = context.codes[TRAIN]
    novel = frozenset().union(*(context.codes[k] for k in (HOLDOUT, *models))) - train_codes
    rows = []

    def add(base, metric, est, low=np.nan, high=np.nan, spread=np.nan, note=""):
        rows.append({**base, "metric": metric, "estimate": est, "ci_low": low, "ci_high": high,
                     "spread": spread, "note": note})

    occ = occurrence_counts(train)
    freq = occ if paper else _train_counts(context)  # once for every percentile
    for p in pcts:
        tail = _tail(freq, occ, p)
        # codes absent from train have training frequency 0: always in the corrected tail. The
        # restricted cohorts are the same whichever model's novel codes are kept (a cohort has
        # none of another's), so one restricted context serves every model.
        try:
            restricted = context.restrict(tail["codes"] if paper else tail["codes"] | novel)
        except CohortError:
            restricted = None
        for name, cohort in models.items():
            keep = set(tail["codes"])
            if not paper:
                keep |= (context.codes[name] | context.codes[HOLDOUT]) - train_codes
            s_r = restricted.synthetic.get(name) if restricted is not None else None
            if s_r is None and _restrict(cohort, keep) is not None:  # a cohort the restriction left out
                s_r = cohort.restrict_codes(keep)
            base = {"model": name, "percentile": float(p), "threshold": tail["threshold"],
                    "tail_share": tail["tail_share"], "n_codes": tail["n_codes"],
                    "synthetic_patients": 0 if s_r is None else s_r.n_patients}
            # prevalence R² and RMSE
            if names.PREVALENCE in panels:
                vocab = Vocabulary(keep)
                if paper:
                    if s_r is None or restricted is None:
                        add(base, names.PREVALENCE_R2, np.nan, note="no synthetic record holds a tail code")
                        add(base, names.PREVALENCE_RMSE, np.nan, note="no synthetic record holds a tail code")
                        prev = None
                    else:
                        t_r = restricted.train
                        prev = _prevalence_rows(restricted.binary(TRAIN, vocab), restricted.binary(name, vocab),
                                                n_bootstrap, seed,
                                                r_real=_shared_replicates(restricted, TRAIN, vocab, n_bootstrap, seed, 0))
                        note = (f"prevalence over the patients left after filtering ({t_r.n_patients} train, "
                                f"{s_r.n_patients} synthetic); basic bootstrap, B={n_bootstrap}")
                else:
                    prev = _prevalence_rows(context.binary(TRAIN, vocab), context.binary(name, vocab), n_bootstrap,
                                            seed, _shared_replicates(context, TRAIN, vocab, n_bootstrap, seed, 0),
                                            _shared_replicates(context, name, vocab, n_bootstrap, seed, 1))
                    note = (f"prevalence over all patients ({train.n_patients} train, {cohort.n_patients} synthetic); "
                            f"basic bootstrap, B={n_bootstrap}")
                if prev is not None:
                    for metric in (names.PREVALENCE_R2, names.PREVALENCE_RMSE):
                        add(base, metric, *prev[metric], note=note)
            # privacy: NNAAR, MIA F1, MIA accuracy
            if names.PRIVACY in panels:
                privacy_ok = restricted is not None and name in restricted.synthetic and all(
                    c.n_patients >= 2 for c in (restricted.train, restricted.holdout, s_r))
                if privacy_ok:
                    priv = privacy_from_context(restricted, name, seed=seed, repeats=repeats,
                                                protocol=protocol).set_index("metric")
                    for metric in (names.NNAAR, names.MIA_F1, names.MIA_ACCURACY):
                        r = priv.loc[metric]
                        add(base, metric, r.estimate, spread=r.spread, note=r.note)
                else:
                    for metric in (names.NNAAR, names.MIA_F1, names.MIA_ACCURACY):
                        add(base, metric, np.nan,
                            note="fewer than two train, holdout or synthetic records hold a tail code")
            # discriminator privacy score
            if names.DISCRIMINATOR in panels:
                try:
                    if restricted is None or name not in restricted.synthetic:
                        raise CohortError("no real or no synthetic record holds a tail code")
                    table = disc.discriminator_from_context(restricted, name, (discriminator,), protocol=protocol,
                                                            real=real, n_bootstrap=n_bootstrap, seed=seed,
                                                            **discriminator_options)
                    r = table.set_index("metric").loc[names.disc_metric(discriminator, "score")]
                    add(base, "disc_score", r.estimate, r.ci_low, r.ci_high, note=f"{discriminator}: {r.note}")
                except CohortError as err:
                    add(base, "disc_score", np.nan, note=f"{discriminator}: not computed: {err}")
    out = pd.DataFrame(rows, columns=["model", "percentile", "threshold", "tail_share", "n_codes",
                                      "synthetic_patients", "metric", "estimate", "ci_low", "ci_high", "spread",
                                      "note"])
    missing = out[out["estimate"].isna()]
    if len(missing):
        first = missing.iloc[0]
        warnings.warn(f"longtail_ablation: {len(missing)} metric value(s) could not be computed, e.g. "
                      f"{first.metric} of {first.model!r} at p{first.percentile:g}: {first.note}", stacklevel=2)
    return out
