"""The visit-aligned set distance (paper 3.2.1): exact, chunked, never the full matrix."""
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrlib.cohort import Cohort, CohortError
from ehrlib.data import Vocabulary
from ehrlib.data.encode import visit_position_matrix
from ehrlib.metrics import distance
from ehrlib.metrics.distance import (
    EncodedCohort,
    encode_cohorts,
    nearest,
    nearest_by_group,
    pairwise,
)

CODES = ["A", "B", "C", "D", "E"]
PENALTIES = [0.0, 0.5, 1.0, 2.5]


def naive_distance(a, b, metric="set", length_penalty=0.0):
    """The definition on nested lists, as an exact Fraction: visit by visit, extra visits in full."""
    sym = union = 0
    for i in range(max(len(a), len(b))):
        va = set(a[i]) if i < len(a) else set()
        vb = set(b[i]) if i < len(b) else set()
        sym += len(va ^ vb)
        union += len(va | vb)
    if metric == "set_binary_length":  # the paper's notebook: + 1 when the numbers of visits differ
        return Fraction(sym + (len(a) != len(b))) + Fraction(length_penalty) * abs(len(a) - len(b))
    d = Fraction(sym) if metric == "set" else (Fraction(sym, union) if union else Fraction(0))
    return d + Fraction(length_penalty) * abs(len(a) - len(b))


def naive_matrix(a: Cohort, b: Cohort, metric="set", length_penalty=0.0):
    return [[naive_distance(x, y, metric, length_penalty) for y in b.records()] for x in a.records()]


def brute_nearest(rows, exclude_self=False):
    """min, lowest argmin and ties of each row of a nested list of Fractions."""
    out = []
    for i, row in enumerate(rows):
        candidates = [(d, j) for j, d in enumerate(row) if not (exclude_self and j == i)]
        low = min(d for d, _ in candidates)
        at = [j for d, j in candidates if d == low]
        out.append((low, at[0], len(at)))
    return out


visits = st.lists(st.sampled_from(CODES), min_size=1, max_size=4)
records = st.lists(st.lists(visits, min_size=1, max_size=4), min_size=1, max_size=6)
options = st.tuples(st.sampled_from(["set", "jaccard", "set_binary_length"]), st.sampled_from(PENALTIES))


def cohort(nested) -> Cohort:
    return Cohort.from_visits(nested)


# --------------------------------------------------------------------------- the definition
def test_distance_sums_aligned_symmetric_differences_and_extra_visits():
    a = cohort([[["A", "B"], ["C"]]])
    b = cohort([[["A"], ["C", "D"], ["E"]]])
    # visit 0: {A,B} vs {A} -> 1; visit 1: {C} vs {C,D} -> 1; extra visit {E} -> 1
    assert pairwise(a, b)[0, 0] == 3
    assert pairwise(a, b, length_penalty=2.0)[0, 0] == 3 + 2 * 1
    # union over (visit, code): {A,B} + {C,D} + {E} = 5 pairs, 2 shared
    assert pairwise(a, b, metric="jaccard")[0, 0] == pytest.approx(1 - 2 / 5)


def test_visit_order_matters():
    a = cohort([[["A"], ["B"]]])
    b = cohort([[["B"], ["A"]]])
    assert pairwise(a, b)[0, 0] == 4


@settings(max_examples=60, deadline=None)
@given(records, records, options)
def test_sparse_distance_equals_the_naive_double_loop(a_nested, b_nested, opts):
    metric, penalty = opts
    a, b = cohort(a_nested), cohort(b_nested)
    expected = np.array(naive_matrix(a, b, metric, penalty), dtype=np.float64)
    got = pairwise(a, b, metric=metric, length_penalty=penalty)
    if metric in ("set", "set_binary_length"):
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(records, records, options, st.integers(1, 4))
def test_nearest_min_argmin_and_ties_equal_brute_force(a_nested, b_nested, opts, chunk_size):
    metric, penalty = opts
    a, b = cohort(a_nested), cohort(b_nested)
    qa, rb = encode_cohorts(a, b)
    got = nearest(qa, rb, metric=metric, length_penalty=penalty, chunk_size=chunk_size)
    want = brute_nearest(naive_matrix(a, b, metric, penalty))
    np.testing.assert_allclose(got.distance, [float(d) for d, _, _ in want], rtol=0, atol=1e-12)
    assert got.index.tolist() == [j for _, j, _ in want]
    assert got.ties.tolist() == [k for _, _, k in want]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(visits, min_size=1, max_size=3), min_size=2, max_size=7), options, st.integers(1, 3))
def test_exclude_self_skips_the_diagonal_by_index(nested, opts, chunk_size):
    metric, penalty = opts
    a = cohort(nested)
    (enc,) = encode_cohorts(a)
    got = nearest(enc, enc, metric=metric, length_penalty=penalty, exclude_self=True, chunk_size=chunk_size)
    want = brute_nearest(naive_matrix(a, a, metric, penalty), exclude_self=True)
    np.testing.assert_allclose(got.distance, [float(d) for d, _, _ in want], rtol=0, atol=1e-12)
    assert got.index.tolist() == [j for _, j, _ in want]
    assert got.ties.tolist() == [k for _, _, k in want]


def test_a_duplicated_record_still_finds_its_twin_at_distance_zero():
    a = cohort([[["A"], ["B"]], [["C"]], [["A"], ["B"]]])
    (enc,) = encode_cohorts(a)
    got = nearest(enc, enc, exclude_self=True)
    assert got.distance.tolist() == [0, 3, 0]  # {C} vs {A},{B}: 2 + extra visit 1
    assert got.index.tolist() == [2, 0, 0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(visits, min_size=1, max_size=3), min_size=2, max_size=5), records, records, options)
def test_nearest_by_group_equals_brute_force_per_group(q_nested, r1_nested, r2_nested, opts):
    metric, penalty = opts
    q, r1, r2 = cohort(q_nested), cohort(r1_nested), cohort(r2_nested)
    eq, e1, e2 = encode_cohorts(q, r1, r2)
    got = nearest_by_group(eq, [eq, e1, e2], self_group=0, metric=metric, length_penalty=penalty, chunk_size=2)
    for column, (ref, skip) in enumerate([(q, True), (r1, False), (r2, False)]):
        want = [float(d) for d, _, _ in brute_nearest(naive_matrix(q, ref, metric, penalty), exclude_self=skip)]
        np.testing.assert_allclose(got[:, column], want, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- encoding
def test_encode_cohorts_shares_the_union_vocabulary_and_visit_positions():
    a = cohort([[["A"]], [["B"], ["C"], ["D"]]])
    b = cohort([[["Z"]]])  # a code only the second cohort has
    ea, eb = encode_cohorts(a, b)
    assert ea.n_codes == eb.n_codes == 5
    assert ea.n_positions == eb.n_positions == 3
    assert ea.totals.tolist() == [1, 3] and ea.lengths.tolist() == [1, 3]
    assert pairwise(ea, eb).tolist() == [[2.0], [4.0]]


def test_encoded_cohort_wraps_a_visit_position_matrix():
    a = cohort([[["A", "C"], ["B"]], [["C"]]])
    vocab = Vocabulary(CODES)
    enc = EncodedCohort.from_matrix(visit_position_matrix(a, vocab, 4), len(vocab))
    assert enc.n_positions == 4
    assert enc.totals.tolist() == [3, 1] and enc.lengths.tolist() == [2, 1]
    assert enc.take([1]).totals.tolist() == [1]


def test_a_non_binary_matrix_is_rejected():
    with pytest.raises(ValueError, match="0/1"):
        EncodedCohort.from_matrix(sp.csr_matrix(np.array([[2.0, 0.0]])), 2)


def test_a_vocabulary_missing_a_code_is_a_cohort_error():
    with pytest.raises(CohortError, match="'Z'"):
        encode_cohorts(cohort([[["Z"]]]), vocab=Vocabulary(["A"]))


# --------------------------------------------------------------------------- errors and limits
def test_encodings_from_separate_calls_are_refused():
    (ea,) = encode_cohorts(cohort([[["A"]]]))
    (eb,) = encode_cohorts(cohort([[["A", "B"]]]))
    with pytest.raises(ValueError, match="encode both with encode_cohorts"):
        nearest(ea, eb)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metric": "cosine"}, "metric='cosine'"),
        ({"length_penalty": -1.0}, "length_penalty=-1.0"),
        ({"chunk_size": 0}, "chunk_size=0"),
    ],
)
def test_bad_options_name_the_argument(kwargs, message):
    ea, eb = encode_cohorts(cohort([[["A"]]]), cohort([[["B"]]]))
    with pytest.raises(ValueError, match=message):
        nearest(ea, eb, **kwargs)


def test_exclude_self_needs_the_same_records():
    ea, eb = encode_cohorts(cohort([[["A"]], [["B"]]]), cohort([[["B"]]]))
    with pytest.raises(ValueError, match="exclude_self"):
        nearest(ea, eb, exclude_self=True)


def test_pairwise_refuses_a_large_matrix(monkeypatch):
    monkeypatch.setattr(distance, "MAX_PAIRWISE", 3)
    a = cohort([[["A"]], [["B"]]])
    with pytest.raises(ValueError, match="use nearest"):
        pairwise(a, a)


def test_nearest_never_holds_more_than_one_chunk(monkeypatch):
    seen = []
    real_block = distance._block

    def spy(query, start, stop, *args):
        block = real_block(query, start, stop, *args)
        seen.append(block.shape)
        return block

    monkeypatch.setattr(distance, "_block", spy)
    a = cohort([[[c]] for c in CODES * 3])
    (enc,) = encode_cohorts(a)
    nearest(enc, enc, chunk_size=4)
    assert max(rows for rows, _ in seen) == 4 and len(seen) == 4


def test_the_papers_distance_adds_one_when_the_numbers_of_visits_differ():
    a = cohort([[["A"], ["B"]], [["A"]]])
    b = cohort([[["A"]]])
    np.testing.assert_array_equal(pairwise(a, b, metric="set_binary_length"), [[2.0], [0.0]])
    np.testing.assert_array_equal(pairwise(a, b, metric="set"), [[1.0], [0.0]])
