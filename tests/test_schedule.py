"""The runner's schedule: stages start once the stages they need are done, several at a time."""
import json
import threading
import time
from pathlib import Path

import pytest

from ehrlib import runner, runs
from ehrlib.runner import kernels
from ehrlib.errors import RunError
from ehrlib.runner import StageResult, run_stages, stage_needs, stage_plan

ROOT = Path(__file__).resolve().parents[1]


def _notebooks(root: Path, needs: dict) -> list[Path]:
    """Empty stage notebooks named after the keys, each declaring its needs (None: declares none)."""
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    for name, need in needs.items():
        meta = {} if need is None else {runner.NEEDS_KEY: {"needs": need}}
        (root / "notebooks" / f"{name}.ipynb").write_text(json.dumps({"cells": [], "metadata": meta}))
    return runner.notebooks(root)


class Recorder:
    """A fake ``run_one``: sleeps, fails the named stages, and logs when each started and ended."""

    def __init__(self, fail=(), seconds=0.05):
        self.fail, self.seconds = set(fail), seconds
        self.events, self.lock, self.at_once = [], threading.Lock(), {}
        self.running = self.most = 0

    def __call__(self, nb, at_once):
        with self.lock:
            self.events.append(("start", nb.stem))
            self.running += 1
            self.most = max(self.most, self.running)
            self.at_once[nb.stem] = at_once
        time.sleep(self.seconds)
        with self.lock:
            self.events.append(("end", nb.stem))
            self.running -= 1
        return StageResult(nb.stem, "failed" if nb.stem in self.fail else "ok", error="boom" * (nb.stem in self.fail))

    def index(self, kind, name):
        return self.events.index((kind, name))


GRAPH = {"00_data": [], "10_a": ["00_data"], "11_b": ["00_data"], "12_c": ["00_data"],
         "20_gen": ["10_a", "11_b"], "30_x": ["20_gen"], "31_y": ["12_c"], "50_free": []}


def test_no_stage_starts_before_the_stages_it_needs_have_ended(tmp_path):
    selected = _notebooks(tmp_path, GRAPH)
    rec = Recorder()
    results = run_stages(selected, rec, jobs=2)
    assert [r.name for r in results] == [nb.stem for nb in selected]
    assert all(r.status == "ok" for r in results)
    for name, needs in GRAPH.items():
        for need in needs:
            assert rec.index("end", need) < rec.index("start", name), f"{name} started before {need} ended"
    assert rec.most == 2  # independent stages did run side by side, never more than jobs


def test_one_job_runs_the_stages_one_after_another_in_notebook_order(tmp_path):
    selected = _notebooks(tmp_path, GRAPH)
    rec = Recorder(seconds=0.0)
    run_stages(selected, rec, jobs=1)
    assert rec.most == 1
    assert [name for kind, name in rec.events if kind == "start"] == [nb.stem for nb in selected]
    assert set(rec.at_once.values()) == {1}


def test_a_failed_stage_stops_only_the_stages_that_need_it(tmp_path):
    selected = _notebooks(tmp_path, GRAPH)
    results = {r.name: r for r in run_stages(selected, Recorder(fail={"11_b"}), jobs=2)}
    assert results["11_b"].status == "failed"
    assert results["20_gen"].status == "not run" and "needs 11_b, which failed" in results["20_gen"].error
    assert results["30_x"].status == "not run" and "needs 11_b, which failed" in results["30_x"].error
    assert {results[n].status for n in ("00_data", "10_a", "12_c", "31_y", "50_free")} == {"ok"}


def test_a_notebook_that_declares_no_needs_waits_for_every_notebook_before_it(tmp_path):
    selected = _notebooks(tmp_path, {"00_data": [], "10_a": ["00_data"], "11_b": ["00_data"], "20_any": None})
    assert stage_needs(selected)["20_any"] == ["00_data", "10_a", "11_b"]
    rec = Recorder()
    run_stages(selected, rec, jobs=4)
    assert rec.index("start", "20_any") > max(rec.index("end", n) for n in ("00_data", "10_a", "11_b"))


def test_needs_outside_the_selection_are_followed_through_to_selected_stages(tmp_path):
    selected = _notebooks(tmp_path, GRAPH)
    only = [nb for nb in selected if nb.stem in ("00_data", "11_b", "30_x", "31_y")]
    assert stage_needs(only) == {"00_data": [], "11_b": ["00_data"], "30_x": ["00_data", "11_b"], "31_y": ["00_data"]}
    rec = Recorder()
    run_stages(only, rec, jobs=4)
    assert rec.index("start", "30_x") > rec.index("end", "11_b") > rec.index("start", "11_b") > rec.index("end", "00_data")


@pytest.mark.parametrize("needs, words", [
    (["99_later"], "'99_later'"),          # not an earlier notebook
    (["20_gen"], "'20_gen'"),              # a later one
    ("00_data", "'00_data'"),              # not a list
    ([3], "3"),
])
def test_needs_that_name_no_earlier_notebook_are_refused_with_the_file_and_value(tmp_path, needs, words):
    selected = _notebooks(tmp_path, {"00_data": [], "10_a": needs, "20_gen": ["00_data"]})
    with pytest.raises(RunError, match=rf"10_a\.ipynb: metadata ehrbench\.needs has {words}"):
        stage_needs(selected)


def test_stages_beside_each_other_share_the_cores(monkeypatch):
    from ehrlib import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda window=0.3: 0.0)
    assert stage_plan(None, {}, at_once=1, jobs=2).threads == 2      # alone on an idle machine: both cores
    beside = stage_plan(None, {}, at_once=2, jobs=2)
    assert (beside.threads, beside.wait_policy) == (1, "ACTIVE")      # beside another stage: one core each
    assert stage_plan(3, {}, at_once=2, jobs=2).threads == 3          # --threads wins
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda window=0.3: 4.0)  # the other stage's 4 cores
    assert stage_plan(None, {}, at_once=2, jobs=2).threads == 4


def test_each_kernel_gets_its_own_thread_plan_without_touching_this_process(tmp_path):
    import nbformat
    import papermill as pm

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os; print(os.environ.get('OMP_NUM_THREADS'), os.environ.get('OMP_WAIT_POLICY'))")])
    nbformat.write(nb, tmp_path / "probe.ipynb")
    before = dict(__import__("os").environ)
    out = pm.execute_notebook(str(tmp_path / "probe.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                              progress_bar=False, kernel_manager_class=kernels.kernel_manager_class(
                                  {"OMP_NUM_THREADS": "7", "OMP_WAIT_POLICY": "PASSIVE"}))
    assert out.cells[0].outputs[0]["text"].strip() == "7 PASSIVE"
    assert dict(__import__("os").environ) == before


def test_every_committed_notebook_declares_what_it_needs():
    for nb in runner.notebooks(ROOT):
        meta = json.loads(nb.read_text())["metadata"]
        assert "needs" in meta.get(runner.NEEDS_KEY, {}), f"{nb.name} declares no {runner.NEEDS_KEY}.needs"
    stage_needs(runner.notebooks(ROOT))  # and every name is an earlier notebook


def test_the_smoke_run_read_nothing_written_by_a_stage_it_does_not_need(smoke_build):
    _, run_dir = smoke_build
    run = runs.Run(run_dir)
    assert runner.undeclared_reads(run, runner.notebooks(ROOT)) == []
    jobs = run.manifest()["runner"]["jobs"]
    assert jobs == runner.default_jobs()
    html, _ = smoke_build
    results = (html / "book" / "reproducing.html").read_text()  # the stage timings live on the reproducing page
    executed = run.manifest()["runner"]["executed"]
    assert executed == len(runner.notebooks(ROOT))  # a fresh run executes every stage
    assert f"executed {executed} stages" + (f", up to {jobs} at a time" if jobs > 1 else "") in results


def test_jobs_must_be_a_positive_integer(tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    for jobs in (0, -1, 1.5, True):
        with pytest.raises(RunError, match="--jobs"):
            runner.reproduce(ROOT, profile="smoke", only=["16"], book=False, jobs=jobs)


def test_undeclared_reads_are_found(tmp_path):
    selected = _notebooks(tmp_path, {"00_data": [], "10_a": [], "11_b": ["00_data"]})
    run = runs.Run(tmp_path / "run")
    (tmp_path / "run").mkdir()
    run.update_manifest(lambda m: m.update(stages={
        "00_data": {"inputs": [], "outputs": ["data/train.parquet"]},
        "10_a": {"inputs": ["data/train.parquet"], "outputs": ["models/a"]},
        "11_b": {"inputs": ["data/train.parquet"], "outputs": []}}))
    problems = runner.undeclared_reads(run, selected)
    assert len(problems) == 1 and problems[0].startswith("10_a read data/train.parquet, written by 00_data")


def test_a_stage_whose_need_failed_is_recorded_as_not_run_and_the_command_fails(tmp_path, monkeypatch):
    import nbformat

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "notebooks").mkdir()
    for name, code, needs in (("00_first", "raise ValueError('no data')", []), ("10_second", "x = 1", ["00_first"]),
                              ("20_free", "y = 2", [])):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        nb.metadata[runner.NEEDS_KEY] = {"needs": needs}
        nbformat.write(nb, tmp_path / "notebooks" / f"{name}.ipynb")
    with pytest.raises(RunError, match=r"1 stage\(s\) failed: 00_first.ipynb, cell 1: ValueError: no data"):
        runner.reproduce(tmp_path, profile="smoke", run="r", book=False, jobs=2)
    stages = runs.open_run("r").manifest()["stages"]
    assert stages["00_first"]["runner"]["status"] == "failed"
    assert stages["10_second"]["runner"] == {**stages["10_second"]["runner"], "status": "not run",
                                             "error": "needs 00_first, which failed"}
    assert stages["20_free"]["runner"]["status"] == "ok"


def test_stages_run_in_the_repository_root_and_leave_this_process_folder_alone(tmp_path, monkeypatch):
    import os

    import nbformat

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    for name, seconds in (("00_a", 0), ("01_b", 3), ("02_c", 3)):  # the first to start ends first
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            f"import os, time; time.sleep({seconds}); open({name!r} + '.cwd', 'w').write(os.getcwd())")])
        nb.metadata[runner.NEEDS_KEY] = {"needs": []}
        nbformat.write(nb, repo / "notebooks" / f"{name}.ipynb")
    here = os.getcwd()
    runner.reproduce(repo, profile="smoke", run="r", book=False, jobs=3)
    assert os.getcwd() == here
    assert {(repo / f"{n}.cwd").read_text() for n in ("00_a", "01_b", "02_c")} == {str(repo)}


def test_the_stage_with_the_longest_remaining_chain_starts_first(tmp_path):
    # 12_c is short but 31_y after it is long: with two lanes the chain 12_c -> 31_y starts at once,
    # beside the longest training, instead of waiting behind 10_a and 11_b in notebook order
    selected = _notebooks(tmp_path, GRAPH)
    seconds = {"00_data": 1, "10_a": 50, "11_b": 5, "12_c": 5, "20_gen": 5, "30_x": 5, "31_y": 100, "50_free": 1}
    rank = runner.graph.critical_path(stage_needs(selected), seconds)
    assert rank["12_c"] == 105 and rank["10_a"] == 60 and rank["00_data"] == 106
    rec = Recorder(seconds=0.0)
    run_stages(selected, rec, jobs=1, seconds=seconds)
    starts = [name for kind, name in rec.events if kind == "start"]
    assert starts[:3] == ["00_data", "12_c", "31_y"]  # 31_y's chain outranks 10_a's once 12_c is done
    assert starts.index("10_a") < starts.index("11_b")
    for name, needs in GRAPH.items():
        for need in needs:
            assert starts.index(need) < starts.index(name)


def test_without_records_the_chain_counts_stages_and_recorded_seconds_come_from_the_manifest(tmp_path):
    selected = _notebooks(tmp_path, GRAPH)
    rank = runner.graph.critical_path(stage_needs(selected), {})
    assert rank == {"00_data": 4, "10_a": 3, "11_b": 3, "12_c": 2, "20_gen": 2, "30_x": 1, "31_y": 1, "50_free": 1}
    run = runs.open_run("sched", root=tmp_path / "runs")
    run.update_manifest(lambda m: m.setdefault("stages", {}).update({
        "10_a": {"runner": {"status": "ok", "seconds": 42.5}},
        "11_b": {"runner": {"status": "failed", "seconds": 3.0}},  # a failed run is no estimate
        "12_c": {}}))
    assert runner.graph.recorded_seconds(run) == {"10_a": 42.5}
    # unrecorded stages count as the mean of the recorded ones
    rank = runner.graph.critical_path(stage_needs(selected), runner.graph.recorded_seconds(run))
    assert rank["10_a"] == 42.5 * 3 and rank["31_y"] == 42.5
