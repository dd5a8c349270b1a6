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
