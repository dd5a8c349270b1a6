"""Patient bootstrap for prevalence-based metrics, with basic (reflected) intervals.

Paper: abstract and section 4.1 ("report bootstrapped confidence intervals across all
metrics"); the protocol is described on the book's Methods and Deviations pages.

How it works. Resampling N patients with replacement is the same as giving patient i a weight
``w_i`` ~ Multinomial(N, 1/N). With all B replicates stacked into a weight matrix W (B x N), the
replicate prevalence vectors are one product ``W @ X / N`` with the sparse patients x codes
binary matrix X, so B = 1000 replicates of every prevalence-based metric cost seconds instead
of B passes over the events table. The product runs over blocks of replicates so memory stays
at a few hundred MB at the paper's scale (45,520 x 7k codes).

Two samples: real and synthetic patients are resampled independently (each is a sample from
its own population). The real side is drawn once per real cohort and seed as a
:class:`RealResamples` and passed for every generator, so all generators are scored against
the same real replicates (paired): replicate b of generator A and replicate b of generator B
share their real resample, and differences between generators can be bootstrapped too.

Intervals: :func:`basic_interval` reports ``[2θ̂ - q(1-α/2), 2θ̂ - q(α/2)]``. R² and RMSE are
quadratic in prevalences and depend on which codes a sample happens to contain, so θ̂ is
biased and the replicates are biased again by about as much in the same direction. The basic
interval reflects that bias back; the percentile interval ``[q(α/2), q(1-α/2)]`` doubles it and
can miss the truth almost every time (``tests/test_bootstrap.py`` simulates both: for a good
generator over a Zipf vocabulary basic intervals cover ~0.9, percentile intervals ~0.02).
Intervals are clipped to each metric's range (R² <= 1, |r| <= 1, 0 <= RMSE <= 1).

Deviations:
    The paper does not say how its intervals were formed; its notebook reported the mean and
    standard deviation of 100 resamples of the discriminator's test predictions only. Here
    B = 1000 two-sample patient resamples and basic intervals, for every prevalence metric.
    Because the basic interval corrects the bias of θ̂, it need not contain θ̂: for two samples
    of one population (the ``holdout`` row) the RMSE interval lies below θ̂ and above the true 0.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ehrlib.cohort import Cohort
from ehrlib.data.encode import Vocabulary, binary_matrix
from ehrlib.metrics.prevalence import (
    PREVALENCE_METRICS,
    PREVALENCE_RANGES,
    PrevalenceMetric,
    _check_nonempty,
    prevalence_from_matrix,
    prevalence_scores,
)

N_BOOTSTRAP = 1000
"""Replicates per metric (the book's methods page, "Uncertainty")."""

LEVEL = 0.95
"""Default two-sided confidence level."""

BLOCK = 100
"""Replicates per weights block (memory: BLOCK x N weights plus BLOCK x V prevalences)."""

INTERVAL_COLUMNS = ("metric", "estimate", "ci_low", "ci_high", "bias")
"""``bias``: the bootstrap estimate of the plug-in estimate's bias, mean(θ*) - θ̂ (see :func:`bias_corrected`)."""


# ---------------------------------------------------------------------------- resampling core
def resample_weights(n_patients: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """How often each patient is drawn in each of ``n_bootstrap`` resamples of size ``n_patients``.

    Args:
        n_patients: N, the number of patients (and the size of each resample).
        n_bootstrap: B, the number of resamples.
        rng: the random generator; draws ``B * N`` integers from it, row by row, so drawing
            the rows in blocks gives the same weights as drawing them at once.

    Returns:
        float32 array (B, N) of non-negative integers, each row summing to N
        (a Multinomial(N, 1/N) draw).
    """
    if n_patients < 1 or n_bootstrap < 1:
        raise ValueError(f"need n_patients >= 1 and n_bootstrap >= 1; got {n_patients}, {n_bootstrap}")
    draws = rng.integers(0, n_patients, size=(n_bootstrap, n_patients))
    draws += (np.arange(n_bootstrap, dtype=draws.dtype) * n_patients)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_bootstrap * n_patients)
    return counts.reshape(n_bootstrap, n_patients).astype(np.float32)


def replicate_prevalences(matrix, weights: np.ndarray) -> np.ndarray:
    """Prevalence vectors of weighted resamples: ``weights @ matrix / N``.

    Args:
        matrix: patients x codes 0/1 matrix (scipy sparse or dense), N rows.
        weights: (B, N) resample counts from :func:`resample_weights` (rows sum to N).

    Returns:
        float64 array (B, V): entry (b, j) is the share of resample b's patients with code j.
    """
    n = matrix.shape[0]
    if weights.shape[-1] != n:
        raise ValueError(f"weights have {weights.shape[-1]} columns; the matrix has {n} patients")
    if sp.issparse(matrix):
        # (V x N sparse) @ (N x B dense): one pass over the non-zeros per replicate column.
        counts = sp.csr_matrix(matrix.T) @ np.ascontiguousarray(weights.T)
        return np.asarray(counts, dtype=np.float64).T / n
    return np.asarray(weights @ np.asarray(matrix), dtype=np.float64) / n


def _blocks(n_bootstrap: int, block: int = BLOCK):
    for start in range(0, n_bootstrap, block):
        yield slice(start, min(start + block, n_bootstrap))


def _seed_sequences(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """Independent streams for the real side (0) and the synthetic side (1) of one seed."""
    real, synthetic = np.random.SeedSequence(seed).spawn(2)
    return real, synthetic


def _draw_replicates(matrix, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n_bootstrap, matrix.shape[1]), dtype=np.float64)
    for sl in _blocks(n_bootstrap):
        out[sl] = replicate_prevalences(matrix, resample_weights(matrix.shape[0], sl.stop - sl.start, rng))
    return out


# ---------------------------------------------------------------------------- the real side
@dataclass(frozen=True, eq=False)
class RealResamples:
    """The real cohort's bootstrap prevalence replicates, drawn once and shared by all generators.

    Build with :meth:`draw`. Prevalences are stored over the real cohort's own codes; codes
    that only a synthetic cohort has are 0 in every real replicate, so :func:`bootstrap_prevalence`
    widens them to each generator's union vocabulary exactly.

    Attributes:
        vocab: the real cohort's codes.
        estimate: (V_real,) prevalence of the full real cohort.
        replicates: (B, V_real) prevalence of each resample.
        seed: the seed they were drawn with.
        n_patients, n_events: size of the real cohort, checked against the cohort they are
            used with.
    """

    vocab: Vocabulary
    estimate: np.ndarray
    replicates: np.ndarray
    seed: int
    n_patients: int
    n_events: int

    @classmethod
    def draw(cls, real: Cohort, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0, *, matrix=None,
             vocab: Vocabulary | None = None) -> "RealResamples":
        """Resample the real cohort's patients ``n_bootstrap`` times with replacement.

        ``matrix`` and ``vocab``: the cohort's patients x codes 0/1 matrix over its own codes,
        when the caller has it (the evaluation context); built here otherwise.

        Raises:
            CohortError: the real cohort is empty.
            ValueError: ``n_bootstrap`` < 2.
        """
        _check_nonempty(real, "real")
        _check_n_bootstrap(n_bootstrap)
        if matrix is None or vocab is None:
            vocab = Vocabulary.from_cohorts(real)
            matrix = binary_matrix(real, vocab)
        rng = np.random.default_rng(_seed_sequences(seed)[0])
        return cls(vocab, prevalence_from_matrix(matrix), _draw_replicates(matrix, n_bootstrap, rng), seed,
                   real.n_patients, real.n_events)

    @property
    def n_bootstrap(self) -> int:
        return self.replicates.shape[0]

    def check(self, real: Cohort) -> None:
        """Raise ``ValueError`` unless ``real`` looks like the cohort these were drawn from
        (same number of patients and events, same codes)."""
        if (real.n_patients, real.n_events) != (self.n_patients, self.n_events) or (
            Vocabulary.from_cohorts(real) != self.vocab
        ):
            raise ValueError(
                f"real_resamples were drawn from a cohort with {self.n_patients} patients, "
                f"{self.n_events} events and {len(self.vocab)} codes; the real cohort given has "
                f"{real.n_patients} patients, {real.n_events} events and {len(real.codes())} codes"
            )

    def columns(self, vocab: Vocabulary) -> np.ndarray:
        """Positions of the real codes in ``vocab`` (which must contain them all)."""
        return vocab.index(self.vocab.codes)


def _check_n_bootstrap(n_bootstrap: int) -> None:
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 2:
        raise ValueError(f"n_bootstrap={n_bootstrap!r}: expected an integer >= 2")


# ---------------------------------------------------------------------------- both sides
def prevalence_replicates(
    real: Cohort,
    synthetic: Cohort,
    n_bootstrap: int | None = None,
    seed: int = 0,
    real_resamples: RealResamples | None = None,
    vocab: Vocabulary | None = None,
    metrics: Mapping[str, PrevalenceMetric] | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Point estimates and B two-sample bootstrap replicates of prevalence-based metrics.

    Args:
        real: the real cohort.
        synthetic: the synthetic cohort.
        n_bootstrap: B; default ``real_resamples.n_bootstrap`` if given, else 1000. Must match
            ``real_resamples`` when both are given.
        seed: seeds the synthetic resamples and, without ``real_resamples``, the real ones
            (``RealResamples.draw(real, n_bootstrap, seed)`` gives the same real side).
        real_resamples: the real side drawn once (:meth:`RealResamples.draw`) and shared
            across generators; replicate b then pairs the same real resample with every
            generator.
        vocab: the code axis; default the union of both cohorts' codes. It must contain them.
        metrics: name -> function of ``(real, synthetic)`` prevalence arrays ``(..., V)``;
            default :data:`ehrlib.metrics.prevalence.PREVALENCE_METRICS`.

    Returns:
        ``(estimates, replicates)``: ``{name: float}`` on the full cohorts and
        ``{name: (B,) array}``.

    Raises:
        CohortError: an empty cohort, or ``vocab`` lacks one of their codes.
        ValueError: ``real_resamples`` do not match ``real`` or ``n_bootstrap``.
    """
    _check_nonempty(real, "real")
    _check_nonempty(synthetic, "synthetic")
    if real_resamples is None:
        real_resamples = RealResamples.draw(real, N_BOOTSTRAP if n_bootstrap is None else n_bootstrap, seed)
    else:
        real_resamples.check(real)
        if n_bootstrap is not None and n_bootstrap != real_resamples.n_bootstrap:
            raise ValueError(
                f"n_bootstrap={n_bootstrap} but real_resamples hold {real_resamples.n_bootstrap} "
                "replicates; pass n_bootstrap=None to use theirs"
            )
    if vocab is None:
        vocab = Vocabulary.from_cohorts(real, synthetic)
    return _replicates(real_resamples, binary_matrix(synthetic, vocab), vocab, seed, metrics)


def _replicates(real_resamples: RealResamples, matrix, vocab: Vocabulary, seed: int,
                metrics: Mapping[str, PrevalenceMetric] | None = None):
    """:func:`prevalence_replicates` from the real side's resamples and the synthetic 0/1 matrix over ``vocab``."""
    n_bootstrap = real_resamples.n_bootstrap
    metrics = PREVALENCE_METRICS if metrics is None else metrics
    cols = real_resamples.columns(vocab)
    real_estimate = np.zeros(len(vocab))
    real_estimate[cols] = real_resamples.estimate
    estimates = prevalence_scores(real_estimate, prevalence_from_matrix(matrix), metrics)

    rng = np.random.default_rng(_seed_sequences(seed)[1])
    replicates = {name: np.empty(n_bootstrap) for name in metrics}
    for sl in _blocks(n_bootstrap):
        b = sl.stop - sl.start
        real_block = np.zeros((b, len(vocab)))
        real_block[:, cols] = real_resamples.replicates[sl]
        synthetic_block = replicate_prevalences(matrix, resample_weights(matrix.shape[0], b, rng))
        for name, values in prevalence_scores(real_block, synthetic_block, metrics).items():
            replicates[name][sl] = values
    return estimates, replicates


# ---------------------------------------------------------------------------- intervals
NONFINITE = "non-finite bootstrap replicate(s) left out of the interval"
"""The warning :func:`basic_interval` gives, after the count, when some replicates are NaN or infinite
(e.g. R² of a resample that holds none of a tail's codes)."""


def nonfinite_replicates(caught) -> tuple[int, int]:
    """``(intervals, replicates)``: how many of the recorded warnings ``caught``
    (``warnings.catch_warnings(record=True)``) are :data:`NONFINITE` ones, and the replicates they left out."""
    counts = [int(str(w.message).split(" ", 1)[0]) for w in caught if str(w.message).endswith(NONFINITE)]
    return len(counts), sum(counts)


def _finite_quantiles(replicates, probs) -> np.ndarray:
    r = np.asarray(replicates, dtype=np.float64)
    if r.ndim == 0 or r.shape[0] < 2:
        raise ValueError(f"need at least 2 replicates along the first axis; got shape {r.shape}")
    r = np.where(np.isfinite(r), r, np.nan)
    dropped = int(np.isnan(r).sum())
    if dropped:
        warnings.warn(f"{dropped} {NONFINITE}", stacklevel=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN quantiles
        return np.nanquantile(r, probs, axis=0)


def _tail_probs(level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level={level!r}: expected a confidence level strictly between 0 and 1")
    alpha = 1.0 - level
    return alpha / 2, 1.0 - alpha / 2


def basic_interval(estimate, replicates, level: float = LEVEL,
                   bounds: tuple[float, float] = (-np.inf, np.inf)):
    """Basic (reflected) bootstrap interval ``[2θ̂ - q(1-α/2), 2θ̂ - q(α/2)]``.

    The reflection corrects for bias, so when θ̂ is strongly biased (RMSE of two samples of one
    population, say) the interval need not contain θ̂ itself. It can also leave the metric's
    range (R² above 1); ``bounds`` clips it back, which never uncovers a true value.

    Args:
        estimate: θ̂ on the full sample, a float or an array of shape S.
        replicates: bootstrap replicates θ*, shape (B,) or (B, *S); non-finite replicates are
            left out (with a warning).
        level: confidence level 1 - α.
        bounds: the range of the metric, ``(lowest, highest)``.

    Returns:
        ``(low, high)``, floats or arrays of shape S; NaN where θ̂ or every replicate is NaN.
    """
    lo_p, hi_p = _tail_probs(level)
    q_lo, q_hi = _finite_quantiles(replicates, [lo_p, hi_p])
    estimate = np.asarray(estimate, dtype=np.float64)
    low = np.clip(2 * estimate - q_hi, *bounds)
    high = np.clip(2 * estimate - q_lo, *bounds)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def percentile_interval(replicates, level: float = LEVEL):
    """Percentile interval ``[q(α/2), q(1-α/2)]``, for comparison only.

    Do not report it for prevalence metrics: their replicates are biased away from the truth
    in the same direction as θ̂, so it can miss the truth every time (module docstring).
    """
    lo_p, hi_p = _tail_probs(level)
    q_lo, q_hi = _finite_quantiles(replicates, [lo_p, hi_p])
    if np.ndim(q_lo) == 0:
        return float(q_lo), float(q_hi)
    return q_lo, q_hi


def interval_table(estimates: Mapping[str, float], replicates: Mapping[str, np.ndarray],
                   level: float = LEVEL,
                   ranges: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """One row per metric: ``metric``, ``estimate``, ``ci_low``, ``ci_high`` (basic intervals).

    Args:
        estimates: ``{name: θ̂}``.
        replicates: ``{name: (B,) replicates}`` for the same names.
        level: confidence level.
        ranges: ``{name: (lowest, highest)}`` to clip intervals to; names not in it are not
            clipped. Default :data:`ehrlib.metrics.prevalence.PREVALENCE_RANGES`.
    """
    ranges = PREVALENCE_RANGES if ranges is None else ranges
    rows = []
    for name, estimate in estimates.items():
        low, high = basic_interval(estimate, replicates[name], level,
                                   ranges.get(name, (-np.inf, np.inf)))
        r = np.asarray(replicates[name], dtype=np.float64)
        r = r[np.isfinite(r)]
        bias = float(r.mean() - estimate) if r.size else float("nan")
        rows.append((name, float(estimate), low, high, bias))
    return pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS))


def bias_corrected(estimate: float, bias: float, metric: str = "") -> float:
    """The bias-corrected estimate ``θ̂ - bias = 2θ̂ - mean(θ*)``, clipped to the metric's range
    (:data:`ehrlib.metrics.prevalence.PREVALENCE_RANGES`); ``estimate`` itself when ``bias`` is
    missing.

    It estimates the same thing as the basic interval (the metric of the population, not of two
    finite samples), so a table shows one estimand per cell. In the coverage simulation of the
    methods page it lies inside its basic interval in every simulated dataset, with a smaller
    error than the plug-in θ̂, which for a generator as good as real data lies outside its own
    interval in most datasets (R² and Pearson r of two samples are biased low, RMSE high).
    """
    if bias is None or not np.isfinite(bias):
        return float(estimate)
    low, high = PREVALENCE_RANGES.get(metric, (-np.inf, np.inf))
    return float(np.clip(estimate - bias, low, high))


def bootstrap_prevalence(
    real: Cohort,
    synthetic: Cohort,
    n_bootstrap: int | None = None,
    seed: int = 0,
    real_resamples: RealResamples | None = None,
    vocab: Vocabulary | None = None,
    metrics: Mapping[str, PrevalenceMetric] | None = None,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Prevalence R², Pearson r and RMSE with basic bootstrap confidence intervals.

    Paper: section 3.1 metrics; intervals as on the book's Deviations page ("Confidence intervals").

    Args:
        real, synthetic, n_bootstrap, seed, real_resamples, vocab, metrics: as in
            :func:`prevalence_replicates` (B = 1000 by default, two-sample, the real side
            shared across generators when ``real_resamples`` is given).
        level: confidence level.

    Returns:
        DataFrame with one row per metric and columns ``metric``, ``estimate``, ``ci_low``,
        ``ci_high``; ``estimate`` equals :func:`ehrlib.metrics.prevalence.prevalence_metrics`.

    Raises:
        CohortError: an empty cohort, or ``vocab`` lacks one of their codes.

    Deviations:
        Basic rather than percentile intervals, two-sample resampling, B = 1000 (module
        docstring).
    """
    estimates, replicates = prevalence_replicates(
        real, synthetic, n_bootstrap, seed, real_resamples, vocab, metrics
    )
    return interval_table(estimates, replicates, level)


def prevalence_from_context(context, name: str, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0,
                            level: float = LEVEL) -> pd.DataFrame:
    """The prevalence family of one synthetic cohort of an :class:`ehrlib.metrics.context.EvaluationContext`.

    Paper: section 3.1. Equals :func:`bootstrap_prevalence` of ``(context.train, synthetic)``
    with the context's real-side resamples (drawn once for B and ``seed``, shared by every
    generator) and the context's binary matrix of the synthetic cohort.
    """
    vocab = context.union(context.real_key("train"), name)
    real_resamples = context.real_resamples(n_bootstrap, seed)
    estimates, replicates = _replicates(real_resamples, context.binary(name, vocab), vocab, seed)
    df = interval_table(estimates, replicates, level)
    shared = " (train side shared across generators)" if len(context.synthetic) > 1 else ""
    df["note"] = (f"basic bootstrap interval, B={n_bootstrap}, patients of train and synthetic resampled "
                  f"independently{shared}")
    return df
