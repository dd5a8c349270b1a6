"""The visit-aligned set distance between patient records, exact and chunked.

Paper: section 3.2.1 (a Hamming-like set distance for sequences of multi-hot visits).

For records ``a`` and ``b`` with visits ``V_0, V_1, ...`` the distance is

    d(a, b) = sum_i |V_i(a) symmetric-difference V_i(b)|  +  length_penalty * |L_a - L_b|

where a visit position that only the longer record has contributes all of its codes. Flatten
each record to a multi-hot row over (visit position, code) with
:func:`ehrlib.data.encode.visit_position_matrix`; then, with ``T`` the number of codes of a
record and ``I = <x_a, x_b>`` the codes the two records share at the same visit position,

    d(a, b) = T_a + T_b - 2 I.

So every pair of two cohorts comes from one sparse product per chunk of query rows: the
``chunk x n_ref`` block is dense, the full ``n_query x n_ref`` matrix never exists. The
Jaccard variant ``1 - I / (T_a + T_b - I)`` (``metric="jaccard"``) comes from the same product
and is offered as a sensitivity analysis (the book's methods page).

Exactness: the set distance without a length penalty is an integer computed in float32
(exact below 2**24), so ties are exact. The Jaccard variant and any length penalty are computed
in float64, and two distances within :data:`TIE_TOLERANCE` of each other count as tied.

Deviations: the paper's length term is a "binary length penalty" (its notebook adds 1 when the
numbers of visits differ); here the default is ``length_penalty * |L_a - L_b|`` with
``length_penalty = 0`` (the extra visits' codes already make records of different lengths
differ). ``metric="set_binary_length"`` is the paper's distance: the set distance plus 1 when
the numbers of visits differ (the ``paper`` protocol uses it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from ehrlib.cohort import VISIT, Cohort
from ehrlib.data.encode import Vocabulary, visit_position_matrix

METRICS = ("set", "jaccard", "set_binary_length")
_INTEGER_METRICS = ("set", "set_binary_length")  # exact integers in float32
TIE_TOLERANCE = 1e-9  # float64 distances closer than this are ties (Jaccard or length penalty)
MAX_PAIRWISE = 20_000_000  # pairwise() refuses larger matrices: use nearest()
# Query rows per sparse product. At paper scale (10k x 45.5k) 32-128 rows were fastest and 256
# about 15% slower (benchmarks/bench_privacy.py); memory ~ CHUNK_SIZE x n_ref x 9 bytes.
CHUNK_SIZE = 64


@dataclass(frozen=True, eq=False)
class EncodedCohort:
    """Patients as binary rows over (visit position, code), with what the distance needs.

    Attributes:
        matrix: CSR, patients x (n_positions * n_codes), float32 ones, sorted column indices;
            column ``visit * n_codes + code``.
        n_codes: the vocabulary size V.
        totals: codes per patient (``T``), int64.
        lengths: visits per patient (``L``), int64.
    """

    matrix: sp.csr_matrix
    n_codes: int
    totals: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_matrix(cls, matrix, n_codes: int) -> "EncodedCohort":
        """Wrap a :func:`visit_position_matrix` (any sparse 0/1 matrix with ``n_codes`` codes per position)."""
        m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        m.sum_duplicates()  # also sorts the column indices of each row
        m.eliminate_zeros()
        if n_codes < 1 or m.shape[1] % n_codes:
            raise ValueError(
                f"matrix has {m.shape[1]} columns, not a multiple of n_codes={n_codes} "
                "(expected n_positions * n_codes columns from visit_position_matrix)"
            )
        if m.nnz and not np.all(m.data == 1):
            bad = m.data[m.data != 1][0]
            raise ValueError(f"matrix holds the value {bad!r}; expected a 0/1 multi-hot matrix")
        totals = np.diff(m.indptr).astype(np.int64)
        lengths = np.zeros(m.shape[0], dtype=np.int64)
        filled = totals > 0
        last_column = m.indices[m.indptr[1:][filled] - 1]  # the largest column of each row
        lengths[filled] = last_column // n_codes + 1
        return cls(m, int(n_codes), totals, lengths)

    def __len__(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_positions(self) -> int:
        return self.matrix.shape[1] // self.n_codes

    def take(self, rows) -> "EncodedCohort":
        """The patients at positions ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        return EncodedCohort(self.matrix[rows], self.n_codes, self.totals[rows], self.lengths[rows])


class Nearest(NamedTuple):
    """Nearest reference record of each query row.

    Attributes:
        distance: the smallest distance (float64).
        index: the reference row at that distance (the lowest index among ties).
        ties: how many reference rows are at that distance (>= 1).
    """

    distance: np.ndarray
    index: np.ndarray
    ties: np.ndarray


def encode_cohorts(*cohorts: Cohort, vocab: Vocabulary | None = None) -> tuple[EncodedCohort, ...]:
    """Encode cohorts with one shared vocabulary and one shared number of visit positions.

    Args:
        *cohorts: the cohorts to compare (e.g. ``train, holdout, synthetic``).
        vocab: the vocabulary; by default the union of the cohorts' codes, so codes that only
            one cohort uses (synthetic codes unseen in training) are fine.

    Returns:
        One :class:`EncodedCohort` per cohort, rows in cohort order.

    Raises:
        CohortError: no cohort has a code, or ``vocab`` lacks a code some cohort uses.
    """
    if not cohorts:
        raise ValueError("encode_cohorts needs at least one cohort")
    if vocab is None:
        vocab = Vocabulary.from_cohorts(*cohorts)
    n_positions = max((int(c.events[VISIT].max()) + 1 for c in cohorts if c.n_events), default=1)
    return tuple(
        EncodedCohort.from_matrix(visit_position_matrix(c, vocab, n_positions), len(vocab)) for c in cohorts
    )


def _check_options(metric: str, length_penalty: float) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; expected one of {METRICS}")
    if not (math.isfinite(length_penalty) and length_penalty >= 0):
        raise ValueError(f"length_penalty={length_penalty!r}; expected a finite number >= 0")


def _check_compatible(query: EncodedCohort, ref: EncodedCohort) -> None:
    if query.matrix.shape[1] != ref.matrix.shape[1] or query.n_codes != ref.n_codes:
        raise ValueError(
            f"query has {query.n_positions} visit positions x {query.n_codes} codes, reference "
            f"{ref.n_positions} x {ref.n_codes}: encode both with encode_cohorts(...) so they share "
            "one vocabulary and one number of visit positions"
        )


def tie_tolerance(metric: str = "set", length_penalty: float = 0.0) -> float:
    """How far apart two distances may be and still tie: 0 for the exact integer set distance."""
    return 0.0 if metric in _INTEGER_METRICS and length_penalty == 0 else TIE_TOLERANCE


def _block(query: EncodedCohort, start: int, stop: int, ref: EncodedCohort, ref_t: sp.csr_matrix,
           metric: str, length_penalty: float) -> np.ndarray:
    """Dense distances from query rows ``start:stop`` to every reference row."""
    inner = (query.matrix[start:stop] @ ref_t).toarray()  # shared codes I, float32
    tq, tr = query.totals[start:stop], ref.totals
    if metric in _INTEGER_METRICS and length_penalty == 0:
        inner *= -2.0
        inner += tr.astype(np.float32)
        inner += tq.astype(np.float32)[:, None]
        if metric == "set_binary_length":
            inner += query.lengths[start:stop, None] != ref.lengths[None, :]
        return inner
    inner = inner.astype(np.float64)
    if metric in _INTEGER_METRICS:
        if metric == "set_binary_length":
            inner -= 0.5 * (query.lengths[start:stop, None] != ref.lengths[None, :])
        d = (tq[:, None] + tr[None, :]) - 2.0 * inner
    else:
        union = (tq[:, None] + tr[None, :]) - inner
        d = 1.0 - np.divide(inner, union, out=np.ones_like(inner), where=union > 0)
    if length_penalty:
        d += length_penalty * np.abs(query.lengths[start:stop, None] - ref.lengths[None, :])
    return d


def _blocks(query: EncodedCohort, ref: EncodedCohort, metric: str, length_penalty: float,
            chunk_size: int, progress: bool = False):
    """Yield ``(start, stop, block)`` over chunks of query rows; memory ~ chunk_size x len(ref)."""
    _check_options(metric, length_penalty)
    _check_compatible(query, ref)
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}; expected a positive integer")
    ref_t = ref.matrix.T.tocsr()
    starts = range(0, len(query), chunk_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="nearest neighbours", unit="chunk")
    for start in starts:
        stop = min(start + chunk_size, len(query))
        yield start, stop, _block(query, start, stop, ref, ref_t, metric, length_penalty)


def pairwise(a: Cohort | EncodedCohort, b: Cohort | EncodedCohort, *, metric: str = "set",
             length_penalty: float = 0.0) -> np.ndarray:
    """The full ``len(a) x len(b)`` distance matrix, for small cohorts (tests, analysis).

    Args:
        a, b: two cohorts (encoded here with a shared vocabulary) or two
            :class:`EncodedCohort` from one :func:`encode_cohorts` call.
        metric: ``"set"`` (visit-aligned symmetric difference), ``"jaccard"`` or
            ``"set_binary_length"`` (the paper's: ``"set"`` + 1 when the numbers of visits differ).
        length_penalty: added per visit of length difference.

    Raises:
        ValueError: the matrix would exceed :data:`MAX_PAIRWISE` entries (use :func:`nearest`).
    """
    if isinstance(a, Cohort) and isinstance(b, Cohort):
        a, b = encode_cohorts(a, b)
    if not (isinstance(a, EncodedCohort) and isinstance(b, EncodedCohort)):
        raise TypeError(
            f"pairwise takes two Cohorts or two EncodedCohorts; got {type(a).__name__} and {type(b).__name__}"
        )
    if len(a) * len(b) > MAX_PAIRWISE:
        raise ValueError(
            f"pairwise distances for {len(a)} x {len(b)} records exceed {MAX_PAIRWISE} entries; "
            "use nearest() or nearest_by_group(), which never build the full matrix"
        )
    _check_options(metric, length_penalty)
    _check_compatible(a, b)
    d = _block(a, 0, len(a), b, b.matrix.T.tocsr(), metric, length_penalty)
    return d.astype(np.float64)


def _exclude_diagonal(block: np.ndarray, start: int, stop: int, column_offset: int = 0) -> None:
    rows = np.arange(stop - start)
    block[rows, column_offset + start + rows] = np.inf


def nearest(query: EncodedCohort, ref: EncodedCohort, *, metric: str = "set", length_penalty: float = 0.0,
            exclude_self: bool = False, chunk_size: int = CHUNK_SIZE, progress: bool = False) -> Nearest:
    """Nearest reference record of every query record, without building the full matrix.

    Args:
        query: the records to look up.
        ref: the records to search, encoded together with ``query`` (:func:`encode_cohorts`).
        metric: one of :data:`METRICS` (see :func:`pairwise`).
        length_penalty: added per visit of length difference.
        exclude_self: ``query`` and ``ref`` are the same records in the same order; row ``i``
            does not match reference row ``i``. The exclusion is by index, so a duplicated
            record still finds its twin at distance 0.
        chunk_size: query rows per sparse product; memory is about
            ``chunk_size * len(ref) * 9`` bytes (float32 block plus a boolean mask).
        progress: show a tqdm progress bar over chunks.

    Returns:
        :class:`Nearest` with the distance, the lowest-index nearest row and the number of ties.

    Raises:
        ValueError: an unknown metric, a negative penalty, incompatible encodings, an empty
            reference, or ``exclude_self`` with ``query`` and ``ref`` of different sizes or fewer
            than two records.
    """
    if len(ref) == 0:
        raise ValueError("nearest: the reference set is empty")
    if exclude_self and (len(query) != len(ref) or len(ref) < 2):
        raise ValueError(
            f"exclude_self=True needs query and ref to be the same records (got {len(query)} and "
            f"{len(ref)}) and at least two of them"
        )
    tol = tie_tolerance(metric, length_penalty)
    distance = np.empty(len(query), dtype=np.float64)
    index = np.empty(len(query), dtype=np.int64)
    ties = np.empty(len(query), dtype=np.int64)
    for start, stop, block in _blocks(query, ref, metric, length_penalty, chunk_size, progress):
        if exclude_self:
            _exclude_diagonal(block, start, stop)
        low = block.min(axis=1)
        at_min = block <= (low + tol)[:, None] if tol else block == low[:, None]
        distance[start:stop] = low
        index[start:stop] = at_min.argmax(axis=1)  # first True: lowest index among ties
        ties[start:stop] = at_min.sum(axis=1)
    return Nearest(distance, index, ties)


def nearest_by_group(query: EncodedCohort, refs: Sequence[EncodedCohort], *, self_group: int | None = None,
                     metric: str = "set", length_penalty: float = 0.0, chunk_size: int = CHUNK_SIZE) -> np.ndarray:
    """Nearest-neighbour distance of every query record within each of several reference sets.

    One sparse product per chunk serves all reference sets (NNAAR needs, e.g., the distance
    from each synthetic record to the nearest other synthetic, train and holdout record).

    Args:
        query: the records to look up.
        refs: the reference sets, each non-empty, encoded together with ``query``.
        self_group: index into ``refs`` of the set that holds the query records themselves (same
            order); each query row skips its own row there, by index.
        metric, length_penalty, chunk_size: as in :func:`nearest`.

    Returns:
        ``len(query) x len(refs)`` float64 array of nearest distances.
    """
    if not refs or any(len(r) == 0 for r in refs):
        raise ValueError(f"nearest_by_group needs non-empty reference sets (sizes {[len(r) for r in refs]})")
    if self_group is not None and (len(refs[self_group]) != len(query) or len(query) < 2):
        raise ValueError(
            f"self_group={self_group}: that set has {len(refs[self_group])} records, the query "
            f"{len(query)}; they must be the same records and at least two"
        )
    for r in refs:
        _check_compatible(query, r)
    sizes = np.array([len(r) for r in refs])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    combined = EncodedCohort(
        sp.vstack([r.matrix for r in refs], format="csr"),
        query.n_codes,
        np.concatenate([r.totals for r in refs]),
        np.concatenate([r.lengths for r in refs]),
    )
    out = np.empty((len(query), len(refs)), dtype=np.float64)
    for start, stop, block in _blocks(query, combined, metric, length_penalty, chunk_size):
        if self_group is not None:
            _exclude_diagonal(block, start, stop, int(offsets[self_group]))
        out[start:stop] = np.minimum.reduceat(block, offsets, axis=1)
    return out
