"""Pairwise code co-occurrence over the head of the real vocabulary (appendix G.5, Fig. 13, Table 14).

The head is the ``k`` codes with the highest training prevalence (ties broken by code). For a
cohort with patients x head-codes binary matrix ``X`` (from
:func:`ehrlib.data.encode.binary_matrix`) and ``n`` patients the co-occurrence matrix is
``C = XᵀX / n``: entry ``(i, j)`` is the share of patients whose record holds both codes
(anywhere in the record, not necessarily in one visit), the diagonal is the prevalence.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ehrlib.cohort import Cohort
from ehrlib.data.encode import Vocabulary, binary_matrix
from ehrlib.metrics.longtail import REAL, _named, _ranked, _require_events, code_counts


def head_codes(train: Cohort, k: int = 50) -> list[str]:
    """The ``k`` most prevalent training codes, most prevalent first (ties broken by code)."""
    if k < 2:
        raise ValueError(f"k={k!r}: a co-occurrence matrix needs at least 2 codes")
    return _ranked(code_counts(_require_events(train, REAL))).index[:k].tolist()


def cooccurrence_matrix(cohort: Cohort, codes: list[str]) -> np.ndarray:
    """``len(codes) x len(codes)`` share of patients with both codes (rows/columns in ``codes`` order).

    Codes the cohort never emits give zero rows and columns.
    """
    vocab = Vocabulary.from_cohorts(cohort)
    x = binary_matrix(cohort, vocab, dtype=np.float64).tocsc()
    idx = vocab.index(codes, strict=False)
    present = idx >= 0
    out = np.zeros((len(codes), len(codes)))
    sub = x[:, idx[present]]
    block = (sub.T @ sub).toarray() / cohort.n_patients
    out[np.ix_(present, present)] = block
    return out


def _matrices(train: Cohort, synthetic, k: int, real_name: str) -> tuple[list[str], dict[str, np.ndarray]]:
    models = _named(synthetic)
    if real_name in models:
        raise ValueError(f"real_name={real_name!r} is also a key of synthetic; rename one of them")
    codes = head_codes(train, k)
    mats = {real_name: cooccurrence_matrix(train, codes)}
    mats.update({name: cooccurrence_matrix(c, codes) for name, c in models.items()})
    return codes, mats


def cooccurrence_matrices(train: Cohort, synthetic, k: int = 50, real_name: str = REAL) -> pd.DataFrame:
    """The co-occurrence matrices of train and every model in long form (Fig. 13 data).

    Paper: appendix G.5, Fig. 13 (patient-level co-occurrence of the top-50 real codes).

    Returns:
        One row per model and ordered code pair: ``model`` (``real_name`` first), ``i``,
        ``j`` (0-based training ranks), ``code_i``, ``code_j``, ``share`` (share of patients
        with both codes; the diagonal ``i == j`` is the prevalence).
    """
    codes, mats = _matrices(train, synthetic, k, real_name)
    n = len(codes)
    i, j = np.divmod(np.arange(n * n), n)
    arr = np.asarray(codes, dtype=object)
    return pd.concat(
        [pd.DataFrame({"model": name, "i": i, "j": j, "code_i": arr[i], "code_j": arr[j], "share": m.ravel()})
         for name, m in mats.items()],
        ignore_index=True,
    )


def _pair_matrix(cohort: Cohort, codes: list[str]):
    """Patients x (k*k) sparse 0/1: patient p holds both codes i and j (column i*k + j)."""
    import scipy.sparse as sp

    vocab = Vocabulary.from_cohorts(cohort)
    idx = vocab.index(codes, strict=False)
    present = np.flatnonzero(idx >= 0)
    x = binary_matrix(cohort, vocab).tocsc()[:, idx[present]].tocsr()
    k = len(codes)
    rows, cols = [], []
    for p in range(x.shape[0]):
        held = present[x.indices[x.indptr[p]:x.indptr[p + 1]]]
        if len(held):
            rows.append(np.full(len(held) ** 2, p))
            cols.append((held[:, None] * k + held[None, :]).ravel())
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=int)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=int)
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(cohort.n_patients, k * k))


def _similarity(real: np.ndarray, synth: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and Frobenius of rows of flattened matrices (..., k*k) over the off-diagonal mask."""
    r, s = real[..., off], synth[..., off]
    denom = np.linalg.norm(r, axis=-1) * np.linalg.norm(s, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(denom > 0, np.sum(r * s, axis=-1) / np.where(denom > 0, denom, 1), np.nan)
    return cosine, np.linalg.norm(r - s, axis=-1)


def cooccurrence_intervals(train: Cohort, synthetic, k: int = 50, n_bootstrap: int = 1000, seed: int = 0,
                           level: float = 0.95) -> pd.DataFrame:
    """Table 14 with basic bootstrap intervals for ``cosine`` and ``frobenius``.

    Patients of train and of each model are resampled with replacement B times, the train
    resamples shared by every model (paired); each replicate's co-occurrence matrices come from
    one sparse product of the resample weights with the patients x code-pairs matrix. The head
    codes are those of the full training cohort (the table is conditional on them).

    Paper: appendix G.5, Table 14; intervals as on the book's methods page ("Uncertainty").

    Returns:
        :func:`cooccurrence_similarity` plus ``cosine_ci_low``, ``cosine_ci_high``,
        ``frobenius_ci_low``, ``frobenius_ci_high``.
    """
    from ehrlib.metrics.bootstrap import _check_n_bootstrap, _seed_sequences, basic_interval, resample_weights

    _check_n_bootstrap(n_bootstrap)
    table = cooccurrence_similarity(train, synthetic, k)
    models = _named(synthetic)
    codes = head_codes(train, k)
    off = ~np.eye(len(codes), dtype=bool).ravel()
    real_seq, syn_seq = _seed_sequences(seed)

    def replicates(cohort, rng):
        pairs = _pair_matrix(cohort, codes).T.tocsr()
        w = resample_weights(cohort.n_patients, n_bootstrap, rng)
        return np.asarray(pairs @ w.T).T / cohort.n_patients  # (B, k*k)

    real = replicates(train, np.random.default_rng(real_seq))
    for row, ((name, cohort), sq) in enumerate(zip(models.items(), syn_seq.spawn(len(models)))):
        cos_b, fro_b = _similarity(real, replicates(cohort, np.random.default_rng(sq)), off)
        for col, reps, bounds in (("cosine", cos_b, (-1.0, 1.0)), ("frobenius", fro_b, (0.0, np.inf))):
            est = table.at[row, col]
            low, high = (basic_interval(est, reps, level, bounds) if np.isfinite(est)
                         else (float("nan"), float("nan")))
            table.loc[row, f"{col}_ci_low"] = low
            table.loc[row, f"{col}_ci_high"] = high
    return table


def cooccurrence_similarity(train: Cohort, synthetic, k: int = 50) -> pd.DataFrame:
    """Cosine similarity and Frobenius distance of each model's co-occurrence matrix to train's (Table 14).

    Both statistics use the off-diagonal entries only (the diagonal is per-code prevalence,
    which the prevalence metrics already measure): ``cosine`` is the cosine of the two
    flattened off-diagonal parts, ``frobenius`` the Frobenius norm of their difference
    (both ordered pairs counted, as in the full symmetric matrix).

    Paper: appendix G.5, Table 14. Deviations: the paper does not state its normalisation or
    whether the diagonal is included; we use shares of patients and exclude the diagonal, so
    absolute Frobenius values are not comparable with the paper's.

    Returns:
        One row per model: ``model``, ``cosine`` (``nan`` when the model emits no pair of head
        codes together), ``frobenius``, ``n_codes`` (head codes the model emits at all).
    """
    codes, mats = _matrices(train, synthetic, k, REAL)
    off = ~np.eye(len(codes), dtype=bool)
    real = mats.pop(REAL)[off]
    rows = []
    for name, m in mats.items():
        s = m[off]
        denom = float(np.linalg.norm(real) * np.linalg.norm(s))
        rows.append({
            "model": name,
            "cosine": float(real @ s) / denom if denom > 0 else float("nan"),
            "frobenius": float(np.linalg.norm(real - s)),
            "n_codes": int((np.diag(m) > 0).sum()),
        })
    return pd.DataFrame(rows, columns=["model", "cosine", "frobenius", "n_codes"])
