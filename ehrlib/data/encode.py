"""Vocabulary and the encodings models and metrics use, each round-tripping to a Cohort.

* flat binary / count matrices (patients x codes, sparse): MedGAN, CorGAN, prevalence;
* visit multi-hot rows (visits x codes, sparse, with per-patient offsets): HALO, LSTM;
* visit-position matrices (patients x (visit position, code), sparse): the patient distance;
* token sequences with visit delimiters: GPT-2, PromptEHR.

Code order in a :class:`Vocabulary` is sorted string order, so it is the same in every
process (the paper's notebook built indices from Python sets, which change between runs).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort, CohortError, synthetic_ids


class Vocabulary:
    """A sorted, stable mapping between ICD codes and column indices 0..V-1."""

    def __init__(self, codes: Iterable[str]):
        self.codes: list[str] = sorted(set(str(c) for c in codes))
        if not self.codes:
            raise CohortError("a vocabulary needs at least one code (got none)")
        self._index = pd.Index(self.codes)

    @classmethod
    def from_cohorts(cls, *cohorts: Cohort) -> "Vocabulary":
        """The union of the codes of the given cohorts."""
        codes: set[str] = set()
        for c in cohorts:
            codes.update(pd.unique(c.events[CODE]).tolist())
        return cls(codes)

    def __len__(self) -> int:
        return len(self.codes)

    def __contains__(self, code: str) -> bool:
        return code in self._index

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.codes == other.codes

    def index(self, codes, *, strict: bool = True) -> np.ndarray:
        """Column index of each code; unknown codes raise (``strict``) or map to -1."""
        idx = self._index.get_indexer(pd.Index(codes))
        if strict and (idx < 0).any():
            bad = np.asarray(codes)[idx < 0]
            raise CohortError(
                f"code {bad[0]!r} is not in the vocabulary ({len(bad)} unknown occurrence(s)); "
                "build the vocabulary from every cohort you encode (Vocabulary.from_cohorts)"
            )
        return idx.astype(np.int64)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.codes))

    @classmethod
    def load(cls, path) -> "Vocabulary":
        return cls(json.loads(Path(path).read_text()))


def _positions(cohort: Cohort) -> tuple[np.ndarray, np.ndarray]:
    """Patient position (0..N-1 in cohort order) and visit id of every event."""
    subj = cohort.events[SUBJECT].to_numpy()
    new = np.empty(len(subj), dtype=bool)
    if len(subj):
        new[0] = True
        new[1:] = subj[1:] != subj[:-1]
    return np.cumsum(new) - 1, cohort.events[VISIT].to_numpy(np.int64)


def binary_matrix(cohort: Cohort, vocab: Vocabulary, dtype=np.float32) -> sp.csr_matrix:
    """Patients x codes: 1 if the code occurs in any visit of the patient."""
    return (count_matrix(cohort, vocab, dtype) > 0).astype(dtype)


def count_matrix(cohort: Cohort, vocab: Vocabulary, dtype=np.float32) -> sp.csr_matrix:
    """Patients x codes: the number of visits of the patient in which the code occurs."""
    pat, _ = _positions(cohort)
    cols = vocab.index(cohort.events[CODE].to_numpy())
    m = sp.csr_matrix(
        (np.ones(len(pat), dtype=dtype), (pat, cols)), shape=(cohort.n_patients, len(vocab))
    )
    m.sum_duplicates()
    return m


def from_count_matrix(matrix, vocab: Vocabulary, subject_ids: Sequence[str] | None = None,
                      source: str = "") -> Cohort:
    """Cohort from a patients x codes matrix of non-negative integer counts.

    A code with count k appears in visits 0..k-1 of its patient, so per-patient code counts
    survive the round trip (``count_matrix`` of the result equals the input). A binary matrix is
    the special case k <= 1: one visit per patient, as the paper does for flat models (2.1).
    Patients with no codes are dropped.
    """
    m = sp.csr_matrix(matrix)
    if m.shape[1] != len(vocab):
        raise CohortError(f"matrix has {m.shape[1]} columns; the vocabulary has {len(vocab)} codes")
    m.eliminate_zeros()
    data = m.data
    if (data < 0).any() or not np.allclose(data, np.round(data)):
        raise CohortError("count matrix must hold non-negative integers")
    counts = np.round(data).astype(np.int64)
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    reps = counts
    r = np.repeat(rows, reps)
    c = np.repeat(m.indices, reps)
    # visit index within each (row, code) run: 0..k-1
    starts = np.repeat(np.cumsum(reps) - reps, reps)
    v = np.arange(len(r)) - starts
    ids = np.asarray(subject_ids if subject_ids is not None else synthetic_ids(m.shape[0]), dtype=object)
    codes = np.asarray(vocab.codes, dtype=object)
    df = pd.DataFrame({SUBJECT: ids[r], VISIT: v, CODE: codes[c]})
    return Cohort.from_events(df, source=source, allow_empty=True)


def from_binary_matrix(matrix, vocab: Vocabulary, subject_ids=None, source: str = "") -> Cohort:
    """Cohort with one visit per patient from a patients x codes 0/1 matrix."""
    m = sp.csr_matrix(matrix)
    m.data = (m.data > 0).astype(np.float32)
    return from_count_matrix(m, vocab, subject_ids, source)


def visit_multihot(cohort: Cohort, vocab: Vocabulary, dtype=np.float32) -> tuple[sp.csr_matrix, np.ndarray]:
    """All visits as multi-hot rows plus offsets: visits of patient p are rows offsets[p]:offsets[p+1]."""
    pat, vis = _positions(cohort)
    n_visits_pp = np.zeros(cohort.n_patients, dtype=np.int64)
    np.maximum.at(n_visits_pp, pat, vis + 1)
    offsets = np.concatenate([[0], np.cumsum(n_visits_pp)])
    rows = offsets[pat] + vis
    cols = vocab.index(cohort.events[CODE].to_numpy())
    m = sp.csr_matrix((np.ones(len(rows), dtype=dtype), (rows, cols)), shape=(offsets[-1], len(vocab)))
    return m, offsets


def from_visit_multihot(matrix, offsets, vocab: Vocabulary, subject_ids=None, source: str = "") -> Cohort:
    """Inverse of :func:`visit_multihot`; empty visits are dropped."""
    m = sp.coo_matrix(matrix)
    keep = m.data > 0
    rows, cols = m.row[keep], m.col[keep]
    offsets = np.asarray(offsets)
    pat = np.searchsorted(offsets, rows, side="right") - 1
    vis = rows - offsets[pat]
    ids = np.asarray(subject_ids if subject_ids is not None else synthetic_ids(len(offsets) - 1), dtype=object)
    codes = np.asarray(vocab.codes, dtype=object)
    df = pd.DataFrame({SUBJECT: ids[pat], VISIT: vis, CODE: codes[cols]})
    return Cohort.from_events(df, source=source, allow_empty=True)


def visit_position_matrix(cohort: Cohort, vocab: Vocabulary, n_positions: int | None = None,
                          dtype=np.float32) -> sp.csr_matrix:
    """Patients x (visit position, code) multi-hot: column ``visit * V + code``.

    The inner product of two rows counts the codes the two records share at the same visit
    position, which is what the visit-aligned set distance needs (the book's methods page).
    """
    pat, vis = _positions(cohort)
    longest = int(vis.max()) + 1 if len(vis) else 1
    n_positions = max(n_positions or 0, longest)
    cols = vis * len(vocab) + vocab.index(cohort.events[CODE].to_numpy())
    return sp.csr_matrix(
        (np.ones(len(pat), dtype=dtype), (pat, cols)), shape=(cohort.n_patients, n_positions * len(vocab))
    )


def token_sequences(cohort: Cohort, vocab: Vocabulary, *, code_offset: int, visit_delim: int,
                    bos: int | None = None, eos: int | None = None) -> list[np.ndarray]:
    """Each patient as token ids: ``[bos] v0 codes <delim> v1 codes ... [eos]``.

    Code ``vocab.codes[i]`` becomes token ``code_offset + i``; visits are separated (not
    terminated) by ``visit_delim``.
    """
    pat, vis = _positions(cohort)
    tok = vocab.index(cohort.events[CODE].to_numpy()) + code_offset
    out: list[np.ndarray] = []
    bounds = np.flatnonzero(np.diff(pat)) + 1
    for p_tok, p_vis in zip(np.split(tok, bounds), np.split(vis, bounds)):
        if len(p_tok) == 0:
            continue
        change = np.flatnonzero(np.diff(p_vis)) + 1
        pieces = np.split(p_tok, change)
        seq: list[int] = [bos] if bos is not None else []
        for j, piece in enumerate(pieces):
            if j:
                seq.append(visit_delim)
            seq.extend(piece.tolist())
        if eos is not None:
            seq.append(eos)
        out.append(np.asarray(seq, dtype=np.int64))
    return out


def from_token_sequences(sequences, vocab: Vocabulary, *, code_offset: int, visit_delim: int,
                         eos: int | None = None, subject_ids=None, source: str = "") -> Cohort:
    """Inverse of :func:`token_sequences`; stops at ``eos``, drops other special tokens,
    duplicate codes within a visit and empty visits."""
    subj, visits, codes = [], [], []
    ids = subject_ids if subject_ids is not None else synthetic_ids(len(sequences))
    V = len(vocab)
    for sid, seq in zip(ids, sequences):
        v = 0
        for t in np.asarray(seq).tolist():
            if eos is not None and t == eos:
                break
            if t == visit_delim:
                v += 1
                continue
            i = t - code_offset
            if 0 <= i < V:
                subj.append(sid)
                visits.append(v)
                codes.append(vocab.codes[i])
    df = pd.DataFrame({SUBJECT: subj, VISIT: visits, CODE: codes})
    return Cohort.from_events(df, source=source, allow_empty=True)
