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


def test_generated_ids_never_equal_training_ids_even_with_the_synthetic_prefix(tmp_path, splits):
    train = splits[0].renamed("SYNTH_")  # training data that already uses SYNTH_000001...
    for name in ("marginals", "memorizer"):
        gen = models.get(name).fit(train)
        out = gen.generate(len(train.subject_ids) + 5, seed=0)
        assert not set(out.subject_ids) & set(train.subject_ids)
        assert out.subject_ids[0] == "SYNTHETIC_000001"
        again = models.load(gen.save(tmp_path / name)).generate(5, seed=0)
        assert again.subject_ids[0] == "SYNTHETIC_000001"
    assert models.get("marginals").fit(splits[0]).generate(3).subject_ids[0] == "SYNTH_000001"


@pytest.mark.parametrize("seed", [True, -1, 1.5, "0"])
def test_bad_seed_is_a_generator_error(splits, seed):
    with pytest.raises(GeneratorError, match=r"seed=.*expected an integer >= 0"):
        models.get("marginals").fit(splits[0]).generate(5, seed=seed)


def test_numpy_integers_are_accepted_as_n_and_seed(splits):
    import numpy as np

    out = models.get("marginals").fit(splits[0]).generate(np.int64(4), seed=np.int32(2))
    assert out.n_patients == 4


def test_memorizer_refuses_a_huge_n_quickly_with_the_limit(splits):
    gen = models.get("memorizer").fit(splits[0])
    with pytest.raises(GeneratorError, match=r"n=10,000,000 is more than 100 copies .* \(limit 24,000\)"):
        gen.generate(10**7)
    with pytest.raises(GeneratorError, match="above the limit"):
        models.get("marginals").fit(splits[0]).generate(10**8)


@pytest.mark.parametrize("name,real", [("holdout", True), ("memorizer", True), ("marginals", False)])
def test_saved_folders_say_whether_they_hold_real_records(tmp_path, splits, name, real):
    import json

    train, _, reference = splits
    kw = {"records": reference} if name == "holdout" else {}
    d = models.get(name, **kw).fit(train).save(tmp_path / name)
    assert json.loads((d / "generator.json").read_text())["holds_real_records"] is real


def test_reference_generators_accept_every_fit_option_and_warn_about_a_profile(tmp_path, splits):
    with pytest.warns(UserWarning, match="no presets"):
        gen = models.get("marginals", profile="paper")
    gen.fit(splits[0], checkpoint_dir=tmp_path / "ckpt", resume=False, progress=True, callback=lambda e, s: None)
    assert gen.fitted and not (tmp_path / "ckpt").exists()


def test_holdout_training_key_depends_on_its_records(splits):
    train, holdout, reference = splits
    a = models.get("holdout", records=reference).training_key(train)
    b = models.get("holdout", records=holdout).training_key(train)
    assert a != b and a["data"] == b["data"]


def test_registry_and_reference_generators_work_without_torch(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import sys
sys.modules['torch'] = None  # as if torch were not installed
from ehrlib import models
from ehrlib.data import simulate
gen = models.get('marginals').fit(simulate(50, seed=0))
assert models.load(gen.save({str(tmp_path / 'm')!r})).generate(5).n_patients == 5
try:
    models.get('halo')
except models.GeneratorError as e:
    assert "needs the package 'torch'" in str(e), e
else:
    raise AssertionError('no error without torch')
"""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
