"""Run folders, stage contexts and the runner's safety rules."""
import json
import multiprocessing as mp

import pandas as pd
import pytest

from ehrlib import book, runs
from ehrlib.errors import ConfigError, EhrlibError, RunError
from ehrlib.runner import MARKER, fingerprint, prepare_out, reproduce


def _record_many(root, worker, n):
    run = runs.open_run("race", root=root)
    for i in range(n):
        run.record(f"stage_{worker}_{i}", i=i)


def test_two_processes_recording_into_one_manifest_lose_nothing(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(tmp_path, w, 60)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    stages = json.loads((tmp_path / "race" / "manifest.json").read_text())["stages"]
    assert len(stages) == 120
    assert not list((tmp_path / "race").glob(".*.tmp")), "stray temporaries"


def test_the_build_folder_of_another_tool_is_never_cleared(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "precious.py").write_text("x = 1\n")
    with pytest.raises(RunError, match="marker"):
        prepare_out(tmp_path)
    assert (tmp_path / "src" / "precious.py").read_text() == "x = 1\n"


def test_reproduce_refuses_an_unsafe_out_before_running_anything(tmp_path, monkeypatch):
    from conftest import ROOT

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "project"
    (out / "html").mkdir(parents=True)
    with pytest.raises(RunError, match="refusing"):
        reproduce(ROOT, profile="smoke", out=out)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("manifest.json"))


def test_a_folder_made_by_the_runner_is_marked(tmp_path):
    prepare_out(tmp_path / "b")
    assert (tmp_path / "b" / MARKER).is_file()
    prepare_out(tmp_path / "b")  # its own folder: accepted again


def test_only_that_matches_no_notebook_is_an_error(tmp_path, monkeypatch):
    from conftest import ROOT

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(RunError, match="matches no notebook"):
        reproduce(ROOT, profile="smoke", only=["99"], book=False)


def test_a_setting_no_notebook_declares_is_an_error(tmp_path, monkeypatch):
    from conftest import ROOT

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(RunError, match="no selected notebook"):
        reproduce(ROOT, profile="smoke", only=["30"], book=False, settings={"no_such_parameter": 1})


def test_stage_records_its_inputs_and_outputs(tmp_path, small_cohort):
    from ehrlib.data import make_splits

    stage = runs.Stage("00_data", runs.open_run("r", root=tmp_path), "smoke", 0, {})

    stage.save_splits(**make_splits(small_cohort, 40, 40, seed=0))
    stage.save_table("table12_real", pd.DataFrame({"a": [1]}))
    entry = stage.run.manifest()["stages"]["00_data"]
    assert "data/train.parquet" in entry["outputs"] and "tables/table12_real.csv" in entry["outputs"]
    assert entry["params"] == {"profile": "smoke", "seed": 0}


def test_unknown_artifact_ids_and_metric_families_are_refused(tmp_path):
    stage = runs.Stage("x", runs.open_run("r", root=tmp_path), "smoke", 0, {})
    with pytest.raises(ConfigError, match="ARTIFACTS"):
        stage.save_table("table99", pd.DataFrame({"a": [1]}))
    with pytest.raises(RunError, match="metric family"):
        stage.save_metrics("nonsense", pd.DataFrame({"a": [1]}))
    assert not (tmp_path / "r" / "tables").exists() or not any((tmp_path / "r" / "tables").iterdir())


@pytest.mark.parametrize("kwargs", [{"profile": "huge"}, {"seed": -1}, {"seed": True}, {"seed": 1.5}])
def test_stage_refuses_bad_profiles_and_seeds(kwargs, tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path))
    with pytest.raises(ConfigError):
        runs.stage("00_data", run="r", **kwargs)


def test_every_figure_id_has_a_caption():
    assert all(book.caption(k) for k in book.ARTIFACTS)
    with pytest.raises(EhrlibError):
        book.caption("fig99")


def test_fingerprint_changes_with_content(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("a")
    a = fingerprint(p)
    p.write_text("b")
    assert fingerprint(p) != a and fingerprint(tmp_path / "missing") is None


def test_table1_across_seeds_reports_mean_and_spread(tmp_path):
    from ehrlib.metrics.seeds import seeds_table1
    from ehrlib.runner.sweep import table1_by_seed

    by_seed = {}
    for seed, value in ((0, 0.5), (1, 0.7)):
        run = runs.open_run(f"r-seed{seed}", root=tmp_path)
        tidy = pd.DataFrame({"model": ["halo"], "family": ["prevalence"], "metric": ["prevalence_r2"],
                             "estimate": [value], "ci_low": [value - 0.1], "ci_high": [value + 0.1], "spread": [None]})
        book.save_table(tidy, "table1_tidy", run)
        by_seed[seed] = run
    row = seeds_table1(table1_by_seed(by_seed)).iloc[0]
    assert row["mean"] == pytest.approx(0.6) and row["sd_across_seeds"] == pytest.approx(0.1414, abs=1e-3)
    assert row["seeds"] == 2 and row["mean_ci_width_within_run"] == pytest.approx(0.2)



def test_table1_across_seeds_names_a_missing_column_and_a_sweep_without_table1(tmp_path):
    from ehrlib.metrics.seeds import seeds_table1
    from ehrlib.runner.sweep import table1_by_seed

    with pytest.raises(ConfigError, match="seed 3 has no column 'ci_low'"):
        seeds_table1({3: pd.DataFrame({"model": ["halo"], "family": ["prevalence"], "metric": ["r2"], "estimate": [1.0]})})
    with pytest.raises(RunError, match="no run of the sweep has Table 1 \\(stage 33_table1\\)"):
        table1_by_seed({0: runs.open_run("r-seed0", root=tmp_path)})

def test_the_papers_split_leaves_no_reference_on_the_demo_and_the_holdout_generator_is_skipped(tmp_path, capsys):
    from conftest import MIMIC3_DEMO

    if not MIMIC3_DEMO.is_dir():
        pytest.skip("../shared/data (open MIMIC demos) not present")
    from ehrlib import pipeline
    from ehrlib.data import load_mimic3

    stage = runs.Stage("00_data", runs.open_run("p", root=tmp_path), "smoke", 0, {})
    with pytest.warns(UserWarning, match="98 of 45520"):
        splits = pipeline.split_cohort(stage, load_mimic3(MIMIC3_DEMO), split="paper")
    assert splits["train"].n_patients == 98 and splits["holdout"].n_patients == 2 and "reference" not in splits
    assert "holdout reference generator is disabled" in capsys.readouterr().out
    ref = runs.Stage("15_reference_generators", stage.run, "smoke", 0, {})
    table = pipeline.reference_generators(ref)
    assert list(table["dataset"]) == ["marginals", "memorizer"]
    with pytest.raises(EhrlibError, match="split"):
        pipeline.split_cohort(stage, load_mimic3(MIMIC3_DEMO), split="nonsense")
