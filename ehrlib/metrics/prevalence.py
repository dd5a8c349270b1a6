"""Per-code patient-level prevalence and how well synthetic prevalence matches real.

Paper: section 3.1 ("Statistical Code Prevalence"): the share of patients with each code,
compared between real and synthetic cohorts by R², Pearson r and RMSE.

Every comparison is over one code axis, by default the union vocabulary of the two cohorts
(sorted codes, :class:`ehrlib.data.Vocabulary`): a code that only one cohort has counts as
prevalence 0 in the other, so disjoint vocabularies still give defined (and poor) scores.

The scoring functions (:func:`r2`, :func:`pearson`, :func:`rmse`, :func:`prevalence_scores`)
take arrays whose last axis is the code axis and broadcast over the leading axes, so the
bootstrap (:mod:`ehrlib.metrics.bootstrap`) scores all B replicate prevalence vectors
(a B x V matrix) in one call.

Deviations:
    The paper's notebook ran these metrics against the training split; here the real cohort
    is whatever the caller passes (``train`` or ``holdout``), so the holdout row gives the
    noise floor. Records are canonical before counting (missing codes dropped, ``nan`` never a
    code), which the paper's notebook did not guarantee. R² is undefined (NaN) when the real
    prevalence vector is constant and Pearson r when either vector is constant; the paper's
    notebook would have returned sklearn's conventions (1.0 or 0.0 for R²) there.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd

from ehrlib.cohort import Cohort, CohortError
from ehrlib.data.encode import Vocabulary, binary_matrix

PrevalenceMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check_nonempty(cohort: Cohort, role: str) -> None:
    if cohort.n_patients == 0:
        source = f" ({cohort.source})" if cohort.source else ""
        raise CohortError(f"{role} cohort{source} has no patients; prevalence needs at least one")


def prevalence_vector(cohort: Cohort, vocab: Vocabulary) -> np.ndarray:
    """Share of the cohort's patients who have each code in any visit.

    Args:
        cohort: a canonical cohort with at least one patient.
        vocab: the code axis; it must contain every code of ``cohort``.

    Returns:
        float64 array of length ``len(vocab)``, entries in [0, 1] (codes of ``vocab`` that the
        cohort lacks are 0).

    Raises:
        CohortError: the cohort is empty or has a code outside ``vocab``.
    """
    _check_nonempty(cohort, "the")
    return prevalence_from_matrix(binary_matrix(cohort, vocab))


def prevalence_from_matrix(matrix) -> np.ndarray:
    """Column means of a patients x codes 0/1 matrix (sparse or dense) as float64."""
    return np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel() / matrix.shape[0]


def _as_pair(real, synthetic) -> tuple[np.ndarray, np.ndarray]:
    real = np.asarray(real, dtype=np.float64)
    synthetic = np.asarray(synthetic, dtype=np.float64)
    if real.ndim == 0 or synthetic.ndim == 0 or real.shape[-1] != synthetic.shape[-1]:
        raise ValueError(
            f"prevalence arrays must share their last (code) axis; got shapes {real.shape} "
            f"and {synthetic.shape}"
        )
    if real.shape[-1] == 0:
        raise ValueError("prevalence arrays have no codes (last axis of length 0)")
    return real, synthetic


def _scalar_or_array(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


def r2(real, synthetic) -> np.ndarray | float:
    """Coefficient of determination of ``synthetic`` as a prediction of ``real``.

    ``1 - sum((real - synthetic)**2) / sum((real - mean(real))**2)`` along the last axis, with
    real as the truth (as ``sklearn.metrics.r2_score(real, synthetic)``, the paper notebook's
    call). It is not symmetric, can be negative, and is NaN when ``real`` is constant.

    Args:
        real: prevalences, shape ``(..., V)``.
        synthetic: prevalences, shape broadcastable to ``real``'s, same ``V``.

    Returns:
        A float for 1-d inputs, else an array of the broadcast leading shape.
    """
    real, synthetic = _as_pair(real, synthetic)
    ss_res = np.sum((real - synthetic) ** 2, axis=-1)
    ss_tot = np.sum((real - real.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    ss_tot, ss_res = np.broadcast_arrays(ss_tot, ss_res)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    return _scalar_or_array(out)


def pearson(real, synthetic) -> np.ndarray | float:
    """Pearson correlation between real and synthetic prevalences along the last axis.

    NaN when either vector is constant (zero variance).
    """
    real, synthetic = _as_pair(real, synthetic)
    dr = real - real.mean(axis=-1, keepdims=True)
    ds = synthetic - synthetic.mean(axis=-1, keepdims=True)
    cov = np.sum(dr * ds, axis=-1)
    var = np.sum(dr**2, axis=-1) * np.sum(ds**2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(var > 0, cov / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)
    return _scalar_or_array(np.clip(out, -1.0, 1.0))


def rmse(real, synthetic) -> np.ndarray | float:
    """Root mean squared difference between real and synthetic prevalences (last axis)."""
    real, synthetic = _as_pair(real, synthetic)
    return _scalar_or_array(np.sqrt(np.mean((real - synthetic) ** 2, axis=-1)))


PREVALENCE_METRICS: Mapping[str, PrevalenceMetric] = {
    "prevalence_r2": r2,
    "prevalence_pearson": pearson,
    "prevalence_rmse": rmse,
}
"""The paper's three prevalence metrics by result name; each maps ``(real, synthetic)``
prevalence arrays ``(..., V)`` to scores ``(...)``."""

PREVALENCE_RANGES: Mapping[str, tuple[float, float]] = {
    "prevalence_r2": (-np.inf, 1.0),
    "prevalence_pearson": (-1.0, 1.0),
    "prevalence_rmse": (0.0, 1.0),
}
"""The values each metric can take (prevalences lie in [0, 1]); intervals are clipped to them."""


def prevalence_scores(real, synthetic, metrics: Mapping[str, PrevalenceMetric] | None = None) -> dict:
    """Score prevalence vectors or matrices with every metric in ``metrics``.

    Args:
        real: real prevalences, shape ``(V,)`` or ``(B, V)``.
        synthetic: synthetic prevalences, broadcastable to ``real``.
        metrics: name -> function; default :data:`PREVALENCE_METRICS`.

    Returns:
        ``{name: float}`` for vectors, ``{name: array of shape (B,)}`` for matrices.
    """
    metrics = PREVALENCE_METRICS if metrics is None else metrics
    return {name: fn(real, synthetic) for name, fn in metrics.items()}


def prevalence_metrics(real: Cohort, synthetic: Cohort, vocab: Vocabulary | None = None) -> dict:
    """The paper's prevalence R², Pearson r and RMSE between two cohorts.

    Paper: section 3.1; R² with real as the truth, as ``sklearn.metrics.r2_score(real, synthetic)``
    in the paper's notebook.

    Args:
        real: the real cohort (``train`` or ``holdout``).
        synthetic: the synthetic cohort.
        vocab: the code axis; default the union of both cohorts' codes. A larger vocabulary
            adds codes with prevalence 0 on both sides, which raises R² and Pearson r and lowers
            RMSE, so compare generators on one and the same axis.

    Returns:
        ``{"prevalence_r2", "prevalence_pearson", "prevalence_rmse"}`` as floats.

    Raises:
        CohortError: either cohort is empty, or ``vocab`` lacks one of their codes.

    Deviations:
        See the module docstring: any real cohort, canonical records, NaN for undefined R²/r.
    """
    _check_nonempty(real, "real")
    _check_nonempty(synthetic, "synthetic")
    if vocab is None:
        vocab = Vocabulary.from_cohorts(real, synthetic)
    return prevalence_scores(prevalence_vector(real, vocab), prevalence_vector(synthetic, vocab))


# ---------------------------------------------------------------------------- rank correlation
def spearman(real, synthetic, n_real: int | None = None, n_synthetic: int | None = None) -> np.ndarray | float:
    """Spearman rank correlation between real and synthetic prevalences along the last axis:
    Pearson r of their ranks (ties get their average rank, as ``scipy.stats.rankdata``).

    Pearson r of prevalences is dominated by the few most common codes (a rare code moves it by
    almost nothing); the rank correlation weighs every code's place in the order the same. NaN
    when either vector is constant. ``n_real``, ``n_synthetic``: the cohorts' numbers of
    patients, when known: prevalences are then counts over them and are ranked by counting
    (the same ranks, without a sort per replicate).
    """
    real, synthetic = _as_pair(real, synthetic)
    real, synthetic = np.broadcast_arrays(real, synthetic)
    return pearson(_ranks(real, n_real), _ranks(synthetic, n_synthetic))


def _ranks(values: np.ndarray, n: int | None) -> np.ndarray:
    """Average ranks (1-based) along the last axis; by counting when ``values`` are counts / ``n``."""
    if n is None:  # scipy's ranks of any values
        from scipy.stats import rankdata

        return rankdata(values, axis=-1)
    counts = np.rint(np.asarray(values) * n).astype(np.int64)
    v = counts.shape[-1]
    if counts.size == 0:
        return counts.astype(np.float64)
    flat = counts.reshape(-1, v)
    rows = flat.shape[0]
    width = int(flat.max()) + 1 if flat.size else 1
    idx = (flat + (np.arange(rows) * width)[:, None]).ravel()
    equal = np.bincount(idx, minlength=rows * width)
    below = np.cumsum(equal) - equal - np.repeat(np.arange(rows) * v, width)  # values below, within the row
    return (below[idx] + (equal[idx] + 1) / 2).reshape(counts.shape)
