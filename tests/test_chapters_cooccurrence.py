"""ICD-9 chapters (paper Fig. 12) and top-k co-occurrence (Fig. 13, Table 14)."""
import math

import numpy as np
import pytest

from ehrlib.cohort import Cohort, CohortError
from ehrlib.metrics.chapters import UNKNOWN, chapter_prevalence, code_chapters
from ehrlib.metrics.cooccurrence import (cooccurrence_matrices, cooccurrence_matrix, cooccurrence_similarity,
                                         head_codes)


def cohort(records, prefix="P"):
    return Cohort.from_visits(records, subject_ids=[f"{prefix}{i:03d}" for i in range(len(records))])


def flat(code_sets, prefix="P"):
    return cohort([[list(s)] for s in code_sets], prefix)


# ---------------------------------------------------------------- chapters
def test_codes_map_to_their_icd9_chapter():
    codes = ["0389", "4019", "25000", "V5861", "E8781", "7455", "99999", "001"]
    assert code_chapters(codes).tolist() == ["1", "7", "3", "18", "19", "14", "17", "1"]


def test_codes_not_shaped_like_icd9_are_unknown():
    assert code_chapters(["XYZ", "12", "V1", "E12", "123456", "I10"]).tolist() == [UNKNOWN] * 6


def test_chapter_share_counts_each_patient_once():
    # patient 0: two circulatory codes in two visits; patient 1: one circulatory, one V code
    c = cohort([[["4019"], ["42731"]], [["4280", "V5861"]], [["0389"]], [["25000"]]])
    out = chapter_prevalence({"train": c}).set_index("chapter")
    assert out.at["7", "patients"] == 2 and out.at["7", "share"] == 0.5
    assert out.at["18", "share"] == 0.25 and out.at["2", "share"] == 0.0
    assert len(out) == 19 and UNKNOWN not in out.index
    assert out.at["7", "chapter_name"] == "Circulatory system"


def test_unknown_rows_appear_for_every_model_when_one_has_non_icd9_codes():
    out = chapter_prevalence({"train": flat([["4019"]]), "m": flat([["FOO"], ["4019"]], "M")})
    unknown = out[out["chapter"] == UNKNOWN].set_index("model")["share"]
    assert unknown.to_dict() == {"train": 0.0, "m": 0.5}
    assert out["chapter"].iloc[-1] == UNKNOWN


# ---------------------------------------------------------------- co-occurrence
TRAIN = [["A", "B", "C"], ["A", "B"], ["A", "C"], ["A"], ["B", "D"]]


def test_head_codes_are_ranked_by_training_prevalence():
    assert head_codes(flat(TRAIN), k=3) == ["A", "B", "C"]


def test_cooccurrence_matrix_is_share_of_patients_with_both_codes():
    m = cooccurrence_matrix(flat(TRAIN), ["A", "B", "C"])
    expected = np.array([[4, 2, 2], [2, 3, 1], [2, 1, 2]]) / 5
    np.testing.assert_allclose(m, expected)


def test_codes_a_model_never_emits_give_zero_rows():
    m = cooccurrence_matrix(flat([["A", "B"]]), ["A", "Z", "B"])
    np.testing.assert_allclose(m, [[1, 0, 1], [0, 0, 0], [1, 0, 1]])


def test_identical_cohorts_have_cosine_one_and_frobenius_zero():
    train = flat(TRAIN)
    out = cooccurrence_similarity(train, {"copy": flat(TRAIN, prefix="S")}, k=4).iloc[0]
    assert out["cosine"] == pytest.approx(1.0) and out["frobenius"] == pytest.approx(0.0)
    assert out["n_codes"] == 4


def test_similarity_uses_off_diagonal_entries():
    train = flat(TRAIN)
    # same pairs as train for A-B only: off-diagonal (A,B) = 1 vs 0.4 etc.
    synth = flat([["A", "B"]])
    out = cooccurrence_similarity(train, {"m": synth}, k=3).iloc[0]
    real = np.array([2, 2, 2, 1, 2, 1]) / 5          # AB AC BA BC CA CB
    syn = np.array([1, 0, 1, 0, 0, 0])
    assert out["cosine"] == pytest.approx(real @ syn / np.linalg.norm(real) / np.linalg.norm(syn))
    assert out["frobenius"] == pytest.approx(np.linalg.norm(real - syn))


def test_cosine_is_nan_when_no_head_pair_co_occurs():
    out = cooccurrence_similarity(flat(TRAIN), {"m": flat([["A"], ["B"]])}, k=3).iloc[0]
    assert math.isnan(out["cosine"])


def test_cooccurrence_matrices_long_form_has_k_squared_rows_per_model():
    out = cooccurrence_matrices(flat(TRAIN), {"m": flat([["A", "B"]])}, k=3)
    assert out.groupby("model").size().to_dict() == {"train": 9, "m": 9}
    assert list(dict.fromkeys(out["model"])) == ["train", "m"]
    diag = out[(out["model"] == "train") & (out["i"] == out["j"])]["share"].tolist()
    assert diag == pytest.approx([0.8, 0.6, 0.4])


def test_too_small_k_and_empty_synthetic_raise():
    with pytest.raises(ValueError, match="k=1"):
        cooccurrence_similarity(flat(TRAIN), flat(TRAIN), k=1)
    with pytest.raises(CohortError):
        cooccurrence_similarity(flat(TRAIN), {"m": Cohort.from_visits([], subject_ids=[])})


def test_cooccurrence_intervals_cover_the_point_estimates_table_and_repeat_with_the_seed():
    import numpy as np

    from ehrlib.data import simulate, split
    from ehrlib.metrics.cooccurrence import cooccurrence_intervals, cooccurrence_similarity

    train, holdout = split(simulate(1500, seed=2), n_holdout=500, seed=0)
    tab = cooccurrence_intervals(train, {"holdout": holdout}, k=20, n_bootstrap=100, seed=0)
    plain = cooccurrence_similarity(train, {"holdout": holdout}, k=20)
    assert np.allclose(tab[["cosine", "frobenius"]], plain[["cosine", "frobenius"]])
    row = tab.iloc[0]
    assert row.cosine_ci_low < row.cosine_ci_high <= 1 and 0 <= row.frobenius_ci_low < row.frobenius_ci_high
    again = cooccurrence_intervals(train, {"holdout": holdout}, k=20, n_bootstrap=100, seed=0)
    assert again.equals(tab)
