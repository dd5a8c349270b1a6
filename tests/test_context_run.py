"""The evaluation context is made once per run: stored by the first stage, loaded by the others."""
import json
import multiprocessing

import numpy as np
import pandas as pd
import pytest

from ehrlib import models, pipeline, runs
from ehrlib.cohort import Cohort, CohortError
from ehrlib.data import simulate, split
from ehrlib.metrics import names
from ehrlib.metrics.context import CONTEXT_FILE, EvaluationContext, fingerprint, load_context, shared_context
from ehrlib.metrics.evaluate import evaluate_context


@pytest.fixture(scope="module")
def cohorts():
    train, holdout = split(simulate(900, seed=5), n_holdout=200, seed=0)
    train, reference = split(train, n_holdout=200, seed=1)
    synthetic = {"holdout": models.get("holdout", records=reference).fit(train).generate(150, seed=0),
                 "marginals": models.get("marginals").fit(train).generate(150, seed=0),
                 "memorizer": models.get("memorizer").fit(train).generate(150, seed=0)}
    return train, holdout, reference, synthetic


def assert_same_csr(a, b):
    assert a.shape == b.shape and (a != b).nnz == 0


def assert_same_context(a: EvaluationContext, b: EvaluationContext):
    assert list(a.cohorts) == list(b.cohorts) and a.vocab == b.vocab and a.n_positions == b.n_positions
    for key in a.cohorts:
        x, y = a.encoded(key), b.encoded(key)
        assert_same_csr(x.matrix, y.matrix)
        assert x.n_codes == y.n_codes
        np.testing.assert_array_equal(x.totals, y.totals)
        np.testing.assert_array_equal(x.lengths, y.lengths)
        assert_same_csr(a.binary(key), b.binary(key))


def test_a_stored_context_loads_exactly_what_a_fresh_build_makes(cohorts, tmp_path):
    train, holdout, reference, synthetic = cohorts
    built = shared_context(tmp_path, train, holdout, synthetic, reference, n_bootstrap=20, seed=3)
    loaded = shared_context(tmp_path, train, holdout, synthetic, reference, n_bootstrap=20, seed=3)
    assert (built.origin, loaded.origin) == ("built", "loaded")
    assert loaded.builds == {}  # nothing encoded by the second caller
    assert loaded.stored_builds == built.builds and max(built.builds.values()) == 1
    fresh = EvaluationContext.build(train, holdout, synthetic, reference)
    assert_same_context(fresh, loaded)
    assert loaded.overlap == fresh.overlap
    r, s = fresh.real_resamples(20, 3), loaded.real_resamples(20, 3)
    assert r.vocab == s.vocab and (r.seed, r.n_patients, r.n_events) == (s.seed, s.n_patients, s.n_events)
    np.testing.assert_array_equal(r.estimate, s.estimate)
    np.testing.assert_array_equal(r.replicates, s.replicates)
    assert "resamples:train" not in loaded.builds  # read from the file, not drawn again
    a = evaluate_context(fresh, [names.PREVALENCE, names.PRIVACY], n_bootstrap=20, seed=3, repeats=2, progress=False)
    b = evaluate_context(loaded, [names.PREVALENCE, names.PRIVACY], n_bootstrap=20, seed=3, repeats=2, progress=False)
    pd.testing.assert_frame_equal(a, b)


def test_a_changed_cohort_is_built_again_not_loaded_stale(cohorts, tmp_path):
    train, holdout, reference, synthetic = cohorts
    first = shared_context(tmp_path, train, holdout, synthetic, reference)
    ev = synthetic["marginals"].events
    changed = {**synthetic, "marginals": Cohort.from_events(ev[ev["subject_id"] != ev["subject_id"].iloc[0]])}
    assert fingerprint(train, holdout, changed, reference) != first.fingerprint
    second = shared_context(tmp_path, train, holdout, changed, reference)
    assert second.origin == "built" and second.builds["encoded:marginals"] == 1
    assert second.binary("marginals").shape[0] == synthetic["marginals"].n_patients - 1
    assert [p.name for p in tmp_path.glob(CONTEXT_FILE.format("*"))] == [CONTEXT_FILE.format(second.fingerprint[:16])]
    with pytest.raises(ValueError, match="built from other cohorts"):
        load_context(tmp_path / CONTEXT_FILE.format(second.fingerprint[:16]), train, holdout, synthetic, reference)


def _open(folder, cohorts, queue):
    train, holdout, reference, synthetic = cohorts
    queue.put(shared_context(folder, train, holdout, synthetic, reference, n_bootstrap=20, seed=0).origin)


def test_stages_running_side_by_side_build_it_once(cohorts, tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open, args=(tmp_path, cohorts, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    origins = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert origins == ["built", "loaded", "loaded"]
    assert len(list(tmp_path.glob(CONTEXT_FILE.format("*")))) == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_subset_equals_a_fresh_build_of_its_part(cohorts):
    train, holdout, reference, synthetic = cohorts
    whole = EvaluationContext.build(train, holdout, synthetic, reference).prepare()
    part_names = ["marginals", "memorizer"]
    part = whole.subset(part_names, reference=False)
    fresh = EvaluationContext.build(train, holdout, {n: synthetic[n] for n in part_names})
    assert len(part.vocab) < len(whole.vocab)  # the reference's and the holdout generator's codes are not in it
    assert_same_context(fresh, part)
    assert not any(k.startswith(("encoded:", "binary:")) for k in part.builds)  # derived, not encoded again
    families = [names.PREVALENCE, names.PRIVACY, names.UTILITY]
    a = evaluate_context(fresh, families, n_bootstrap=20, repeats=2, progress=False)
    b = evaluate_context(part, families, n_bootstrap=20, repeats=2, progress=False)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(CohortError, match="no synthetic cohort 'gpt'"):
        whole.subset(["gpt"])


def test_a_stored_overlapping_holdout_is_refused_unless_allowed(cohorts, tmp_path):
    train, _, _, synthetic = cohorts
    shared_context(tmp_path, train, train, synthetic, allow_overlap=True)
    with pytest.raises(CohortError, match="the holdout overlaps train"):
        shared_context(tmp_path, train, train, synthetic)
    assert shared_context(tmp_path, train, train, synthetic, allow_overlap=True).origin == "loaded"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EHRLIB_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    mp.setenv("TQDM_DISABLE", "1")
    pipeline.split_cohort(runs.stage("00_data", run="c", profile="smoke", seed=0), simulate(600, seed=0))
    pipeline.reference_generators(runs.stage("15_reference_generators", run="c", profile="smoke", seed=0))
    pipeline.evaluate(runs.stage("30_prevalence", run="c", profile="smoke", seed=0), "prevalence")
    pipeline.evaluate(runs.stage("32_privacy", run="c", profile="smoke", seed=0), "privacy", "attribute_inference")
    pipeline.protocol_effects(runs.stage("34_protocol_effects", run="c", profile="smoke", seed=0))
    yield runs.open_run("c")
    mp.undo()


def test_across_the_stages_of_a_run_each_cohort_is_encoded_once(run):
    stages = json.loads(run.manifest_path.read_text())["stages"]
    used = {k: v["results"]["context"] for k, v in stages.items() if "context" in v.get("results", {})}
    assert set(used) == {"30_prevalence", "32_privacy", "34_protocol_effects"}
    assert sorted(u["origin"] for u in used.values()) == ["built", "loaded", "loaded"]
    assert len({u["fingerprint"] for u in used.values()}) == 1
    encoded: dict[str, int] = {}
    for u in used.values():
        for k, n in u["builds"].items():
            if k.startswith(("encoded:", "binary:")):
                encoded[k] = encoded.get(k, 0) + n
    cohorts = {"__train__", "__holdout__", "__reference__", *run.synthetic()}
    assert encoded == {f"{what}:{c}": 1 for what in ("encoded", "binary") for c in cohorts}


def test_a_generator_run_again_makes_the_next_stage_build_a_new_context(run, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    before = json.loads(run.manifest_path.read_text())["stages"]["30_prevalence"]["results"]["context"]
    old = pd.read_csv(run.path / "metrics" / "prevalence.csv").query("model == 'marginals'")
    stage = runs.stage("15_reference_generators", run="c", profile="smoke", seed=0)
    stage.save_synthetic("marginals", models.get("marginals").fit(stage.train).generate(80, seed=9))
    pipeline.evaluate(runs.stage("30_prevalence", run="c", profile="smoke", seed=0), "prevalence")
    after = json.loads(run.manifest_path.read_text())["stages"]["30_prevalence"]["results"]["context"]
    assert after["origin"] == "built" and after["fingerprint"] != before["fingerprint"]
    assert after["builds"]["encoded:marginals"] == 1
    new = pd.read_csv(run.path / "metrics" / "prevalence.csv").query("model == 'marginals'")
    assert not np.allclose(new.estimate.to_numpy(), old.estimate.to_numpy())  # scored on the new cohort
