import pandas as pd
import pytest

from ehrlib import models
from ehrlib.data import split
from ehrlib.metrics.structure import summary
from ehrlib.models import GeneratorError


@pytest.fixture(scope="module")
def splits(small_cohort):
    train, holdout = split(small_cohort, 80, seed=0)
    train, reference = split(train, 80, seed=1)
    return train, holdout, reference


@pytest.mark.parametrize("name", ["holdout", "marginals", "memorizer"])
def test_generate_validates_carries_no_real_ids_and_reloads_identically(tmp_path, splits, name):
    train, _, reference = splits
    kw = {"records": reference} if name == "holdout" else {}
    gen = models.get(name, **kw).fit(train)
    out = gen.generate(50, seed=3)
    assert out.n_patients == 50
    assert not set(out.subject_ids) & (set(train.subject_ids) | set(reference.subject_ids))
    again = models.load(gen.save(tmp_path / name)).generate(50, seed=3)
    pd.testing.assert_frame_equal(out.events, again.events)
    assert not out.events.equals(gen.generate(50, seed=4).events)


def test_memorizer_returns_training_records(splits):
    train, _, _ = splits
    out = models.get("memorizer").fit(train).generate(20, seed=0)
    train_records = {str(r) for r in train.records()}
    assert all(str(r) in train_records for r in out.records())


def test_holdout_returns_reference_records_and_refuses_training_overlap(splits):
    train, _, reference = splits
    out = models.get("holdout", records=reference).fit(train).generate(30, seed=0)
    ref = {str(r) for r in reference.records()}
    assert all(str(r) in ref for r in out.records())
    with pytest.raises(GeneratorError, match="training cohort"):
        models.get("holdout", records=train).fit(train)
    with pytest.raises(GeneratorError, match="only 80"):
        models.get("holdout", records=reference).fit(train).generate(81)


def test_marginals_keeps_visit_structure_and_code_marginals(small_cohort):
    gen = models.get("marginals").fit(small_cohort)
    out = gen.generate(2000, seed=0)
    s, r = summary(out), summary(small_cohort)
    assert s["visits_per_patient"] == pytest.approx(r["visits_per_patient"], rel=0.1)
    assert s["codes_per_visit"] == pytest.approx(r["codes_per_visit"], rel=0.1)
    top = small_cohort.events.code.value_counts().index[:5]
    assert set(out.events.code.value_counts().index[:10]) >= set(top[:3])


@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_bad_n_is_an_error(splits, n):
    with pytest.raises(GeneratorError, match="positive integer"):
        models.get("marginals").fit(splits[0]).generate(n)


def test_unknown_models_are_clear_errors():
    with pytest.raises(GeneratorError, match="unknown model"):
        models.get("wgan")


def test_generate_before_fit_is_an_error():
    with pytest.raises(GeneratorError, match="fit"):
        models.get("marginals").generate(5)
