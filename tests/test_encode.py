import numpy as np
import pandas as pd
import pytest

from ehrlib.cohort import CohortError
from ehrlib.data.encode import (Vocabulary, binary_matrix, count_matrix, from_binary_matrix, from_count_matrix,
                                from_token_sequences, from_visit_multihot, token_sequences, visit_multihot,
                                visit_position_matrix)


def test_vocabulary_order_is_sorted_and_stable(small_cohort):
    v1 = Vocabulary.from_cohorts(small_cohort)
    v2 = Vocabulary(reversed(small_cohort.codes()))
    assert v1 == v2 and v1.codes == sorted(v1.codes)


def test_unknown_code_is_a_clear_error(small_cohort):
    with pytest.raises(CohortError, match="not in the vocabulary"):
        Vocabulary(["0010"]).index(["9999"])


def test_count_matrix_round_trip_preserves_per_patient_counts(small_cohort):
    v = Vocabulary.from_cohorts(small_cohort)
    m = count_matrix(small_cohort, v)
    back = from_count_matrix(m, v, small_cohort.subject_ids)
    assert (count_matrix(back, v) != m).nnz == 0


def test_binary_matrix_round_trip_gives_one_visit_per_patient(small_cohort):
    v = Vocabulary.from_cohorts(small_cohort)
    m = binary_matrix(small_cohort, v)
    back = from_binary_matrix(m, v)
    assert back.n_visits == back.n_patients == small_cohort.n_patients
    assert (binary_matrix(back, v) != m).nnz == 0
    assert back.subject_ids[0].startswith("SYNTH_")


def test_count_matrix_rejects_negative_or_fractional_counts():
    v = Vocabulary(["A", "B"])
    with pytest.raises(CohortError, match="non-negative integers"):
        from_count_matrix(np.array([[1.5, 0]]), v)
    with pytest.raises(CohortError, match="non-negative integers"):
        from_count_matrix(np.array([[-1, 0]]), v)


def test_visit_multihot_round_trip(small_cohort):
    v = Vocabulary.from_cohorts(small_cohort)
    m, off = visit_multihot(small_cohort, v)
    assert m.shape[0] == small_cohort.n_visits
    back = from_visit_multihot(m, off, v, small_cohort.subject_ids)
    pd.testing.assert_frame_equal(back.events, small_cohort.events)


def test_visit_position_matrix_inner_product_counts_aligned_shared_codes():
    from ehrlib.cohort import Cohort

    c = Cohort.from_visits([[["A", "B"], ["C"]], [["A"], ["C", "B"]]])
    v = Vocabulary.from_cohorts(c)
    x = visit_position_matrix(c, v)
    assert (x @ x.T).toarray().tolist() == [[3, 2], [2, 3]]


def test_token_sequences_round_trip(small_cohort):
    v = Vocabulary.from_cohorts(small_cohort)
    seqs = token_sequences(small_cohort, v, code_offset=5, visit_delim=4, bos=0, eos=1)
    assert all(s[0] == 0 and s[-1] == 1 for s in seqs)
    delims = sum(int((s == 4).sum()) for s in seqs)
    assert delims == small_cohort.n_visits - small_cohort.n_patients
    back = from_token_sequences(seqs, v, code_offset=5, visit_delim=4, eos=1, subject_ids=small_cohort.subject_ids)
    pd.testing.assert_frame_equal(back.events, small_cohort.events)


def test_token_decoding_stops_at_eos_and_drops_specials_and_duplicates():
    v = Vocabulary(["A", "B"])
    seq = [0, 3, 3, 2, 2, 4, 1, 3]  # A A | | B EOS A
    c = from_token_sequences([seq], v, code_offset=3, visit_delim=2, eos=1)
    assert c.records() == [[["A"], ["B"]]]
