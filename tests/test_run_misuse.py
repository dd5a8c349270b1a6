"""Misuses of a run folder, by class: a second writer, ``--set`` of what the runner sets, stages run
on needs that are out of date (under ``--only``), a need with nothing in it, Ctrl-C, and
``evaluate --out`` onto earlier outputs. Each must end in a clear error or a correct result, and
never in a run whose stages disagree about their inputs without saying so.

The pipeline here is three tiny notebooks (a data stage, a stage that copies the train split into
a synthetic cohort, a stage that reads the synthetic cohorts), so each kernel starts in seconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import write_pipeline
from ehrlib import runner, runs
from ehrlib.errors import RunError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = 'run = "r"\nprofile = "smoke"\nseed = 0\n'
STAGES = {
    "00_data": ([], """
import pandas as pd
from ehrlib import runs
from ehrlib.cohort import Cohort
st = runs.stage("00_data", run=run, profile=profile, seed=seed)
st.save_splits(train=Cohort.from_events(pd.DataFrame({"subject_id": [str(seed), "x"], "visit_id": [0, 0],
                                                      "code": ["4019", "0389"]})))
"""),
    "10_copy": (["00_data"], """
from ehrlib import runs
st = runs.stage("10_copy", run=run, profile=profile, seed=seed)
st.save_synthetic("copy", st.train)
"""),
    "20_read": (["10_copy"], """
import pandas as pd
from ehrlib import runs
st = runs.stage("20_read", run=run, profile=profile, seed=seed)
st.save_metrics("privacy", pd.DataFrame({"model": sorted(st.synthetic), "n": [c.n_patients for c in st.synthetic.values()]}))
"""),
}


def _pipeline(root: Path, stages=STAGES) -> Path:
    return write_pipeline(root, stages, PARAMS)


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return _pipeline(tmp_path / "repo")


def _status(name: str, run: str = "r") -> dict:
    return runs.open_run(run).manifest()["stages"][name]["runner"]


# ---------------------------------------------------------------- one writer per run folder

HOLD = """
import sys, time
from ehrlib import runs
with runs.open_run("mix").writer():
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_of_a_run_is_refused_naming_the_first_and_a_dead_writers_lock_is_taken_over(
        tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=rf"being written by another ehrbench reproduce \(process {holder.pid} on "):
            runner.reproduce(ROOT, profile="smoke", run="mix", only=["00"], book=False)
        with pytest.raises(RunError, match="being written by an ehrbench reproduce now"):
            runs.Stage("00_data", runs.open_run("mix"), "smoke", 0, {})  # a notebook outside the runner
        assert "stages" not in runs.open_run("mix").manifest()
    finally:
        holder.kill()
        holder.wait()
    lock = runs.open_run("mix").path / runs.WRITER_LOCK
    assert json.loads(lock.read_text())["pid"] == holder.pid  # killed: its lock file stays behind ...
    with runs.open_run("mix").writer():  # ... and is stale: the next writer takes it over
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert runs.open_run("mix").writer_token() is None


def test_the_writers_own_kernels_may_write_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    run = runs.open_run("r")
    with run.writer() as token:
        monkeypatch.setenv(runs.ENV_WRITER, token)
        runs.Stage("00_data", run, "smoke", 0, {})  # what a stage's kernel does: accepted


# ---------------------------------------------------------------- --set of what the runner sets

@pytest.mark.parametrize("key, value, option", [("run", "victim", "--run"), ("profile", "paper", "--profile"),
                                                ("seed", 3, "--seed"), ("data", "mimic3-demo", "--data")])
def test_set_of_a_key_the_runner_sets_is_an_error_naming_the_option(key, value, option, tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(RunError, match=rf"--set {key}=.*the runner sets '{key}' itself; use {option}"):
        runner.reproduce(ROOT, profile="smoke", run="mine", only=["00"], book=False, settings={key: value})
    assert not (tmp_path / "runs" / "victim").exists()
    assert not (tmp_path / "runs" / "mine" / "manifest.json").exists()


# ---------------------------------------------------------------- needs out of date under --only

def test_a_stage_whose_unselected_need_read_an_input_that_changed_since_is_refused(pipeline, caplog):
    runner.reproduce(pipeline, profile="smoke", run="r", book=False, jobs=1)
    runner.reproduce(pipeline, profile="smoke", run="r", seed=1, only=["00"], book=False)  # a new train split
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "out of date" in r.getMessage()]
    assert said and "10_copy, 20_read; run them again (--only 10 20)" in said[0]  # the run says it disagrees
    with pytest.raises(RunError, match="10_copy, which is out of date: its input data/train.parquet changed"):
        runner.reproduce(pipeline, profile="smoke", run="r", seed=1, only=["20"], book=False)
    assert _status("20_read")["status"] == "failed"
    runner.reproduce(pipeline, profile="smoke", run="r", seed=1, only=["10", "20"], book=False, jobs=1)  # the fix
    assert _status("20_read")["status"] == "ok"


def test_a_deleted_output_of_an_unselected_need_is_noticed(pipeline):
    runner.reproduce(pipeline, profile="smoke", run="r", book=False, jobs=1)
    (runs.open_run("r").path / "synthetic" / "copy.parquet").unlink()
    with pytest.raises(RunError, match="10_copy, which is out of date: its output synthetic/copy.parquet is missing"):
        runner.reproduce(pipeline, profile="smoke", run="r", only=["20"], book=False)


def test_a_stage_whose_need_holds_nothing_says_so_and_fails(pipeline):
    runner.reproduce(pipeline, profile="smoke", run="r", only=["00"], book=False)
    with pytest.raises(RunError, match=r"20_read.ipynb, cell \d: RunError: stage 20_read: run 'r' has no synthetic cohort"):
        runner.reproduce(pipeline, profile="smoke", run="r", only=["20"], book=False)


def _manifest_run(tmp_path, entry: dict) -> runs.Run:
    run = runs.open_run("m", root=tmp_path)
    (run.path / "data").mkdir()
    (run.path / "data" / "train.parquet").write_text("train")
    files = {"data/train.parquet": runner.fingerprint(run.path / "data" / "train.parquet")}
    base = {"inputs": [], "outputs": ["data/train.parquet"],
            "runner": {"status": "ok", "params": {"profile": "smoke", "data": "simulated"}, "files": files}}
    if entry is None:  # opened by a notebook outside the runner: no fingerprints to check
        del base["runner"]
    else:
        base["runner"].update(entry)
    run.update_manifest(lambda m: m.update(stages={"00_data": base}))
    return run


@pytest.mark.parametrize("entry, params, words", [
    ({"status": "failed"}, {}, "whose last run failed"),
    ({"status": "interrupted"}, {}, "whose last run was interrupted"),
    ({"status": "not run"}, {}, "whose last run did not happen"),
    (None, {}, "which was not run by ehrbench reproduce"),
    ({}, {"profile": "demo"}, "ran with profile='smoke', not 'demo'"),
    ({}, {"data": "mimic3-demo"}, "ran with data='simulated', not 'mimic3-demo'"),
    ({"files": {"data/train.parquet": "0" * 64}}, {}, "its output data/train.parquet changed"),
])
def test_needs_that_did_not_succeed_or_ran_on_other_settings_are_out_of_date(tmp_path, entry, params, words):
    run = _manifest_run(tmp_path, entry)
    why = runner.stale_needs(run, ["00_data"], {"00_data": params})
    assert words in why and "add 00 to --only" in why
    assert runner.stale_needs(_manifest_run(tmp_path / "ok", {}), ["00_data", "10_never"], {"00_data": {}}) == ""


# ---------------------------------------------------------------- a notebook that opens another stage
def test_a_notebook_that_opens_another_stage_than_its_own_is_refused_before_any_stage_runs(tmp_path, monkeypatch):
    """A renamed or copied notebook would write the other stage's record and defeat its up-to-date check."""
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    repo = _pipeline(tmp_path / "repo", {"00_data": STAGES["00_data"], "05_data_copy": STAGES["00_data"]})
    with pytest.raises(RunError, match=r"05_data_copy\.ipynb opens stage '00_data', not its own name '05_data_copy'"):
        runner.reproduce(repo, profile="smoke", run="r", book=False, jobs=1)
    assert "stages" not in runs.open_run("r").manifest() or not runs.open_run("r").manifest()["stages"], "nothing ran"
    problems = runner.stage_name_problems([repo / "notebooks" / "00_data.ipynb"])
    assert problems == []


# ---------------------------------------------------------------- Ctrl-C

SLEEPER = {"00_sleep": ([], """
import os, pathlib, time
pathlib.Path(os.environ["EHRLIB_RUNS_DIR"], "kernel.pid").write_text(str(os.getpid()))
time.sleep(120)
"""), "10_after": (["00_sleep"], "x = 1\n")}


def test_ctrl_c_stops_the_running_kernel_at_once_records_it_and_ends_with_one_line(tmp_path, monkeypatch, capsys):
    import signal

    from ehrlib.cli import main
    from ehrlib.io import process_alive

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    (tmp_path / "runs").mkdir()
    repo = _pipeline(tmp_path / "repo", SLEEPER)
    pid_file = tmp_path / "runs" / "kernel.pid"
    pressed = {}

    def press_ctrl_c():
        deadline = time.time() + 300  # a kernel can take long to start on a loaded machine
        while not pid_file.is_file() and time.time() < deadline:
            time.sleep(0.2)
        pressed["kernel running"] = pid_file.is_file()
        time.sleep(0.5)
        pressed["at"] = time.time()
        os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl-C (whichever thread gets it)

    # Python's own Ctrl-C handler, as in a terminal: a test run started in the background by a
    # non-interactive shell inherits SIGINT ignored (POSIX), where no Ctrl-C could ever arrive
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=press_ctrl_c, daemon=True).start()
    try:
        code = main(["reproduce", "--root", str(repo), "--profile", "smoke", "--run", "r", "--no-book"])
    finally:
        signal.signal(signal.SIGINT, before)
    took = time.time() - pressed["at"]
    err = capsys.readouterr().err
    assert pressed["kernel running"], "the sleeping stage's kernel did not start within 300 s: " + err[-2000:]
    assert code == 130 and took < 20, (code, took, err[-2000:])
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("ehrbench: interrupted (Ctrl-C): stopped 00_sleep")
    assert not process_alive(int(pid_file.read_text()))
    assert _status("00_sleep")["status"] == "interrupted"
    assert _status("10_after")["status"] == "not run"



# ---------------------------------------------------------------- evaluate --out, one bad synthetic file

@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    from ehrlib.data import simulate, split

    d = tmp_path_factory.mktemp("long")
    train, holdout = split(simulate(160, seed=0), n_holdout=60, seed=0)
    synthetic = simulate(80, seed=5)
    for name, cohort in (("train", train), ("holdout", holdout), ("good", synthetic),
                         ("one", synthetic.subset(synthetic.subject_ids[:1]))):
        cohort.to_frame().to_csv(d / f"{name}.csv", index=False)
    (d / "junk.csv").write_text("nothing,useful\n1,2\n")
    return d


def _evaluate(d: Path, out: Path, *synthetic: str) -> list[str]:
    return ["evaluate", "--train", str(d / "train.csv"), "--holdout", str(d / "holdout.csv"), "--synthetic",
            *[str(d / s) for s in synthetic], "--out", str(out), "--n-bootstrap", "10", "--discriminators", "none"]


@pytest.mark.parametrize("existing", ["table1.md", "metrics.csv", "table1.csv"])
def test_evaluate_never_overwrites_outputs_already_in_out(existing, long_files, tmp_path, capsys):
    from ehrlib.cli import main

    (tmp_path / existing).write_text("the user's own")
    assert main(_evaluate(long_files, tmp_path, "good.csv")) == 2
    assert f"already holds {existing}; refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / existing).read_text() == "the user's own"


@pytest.mark.parametrize("bad, words", [("one.csv", "one.csv: not evaluated: privacy metrics: the synthetic cohort has 1"),
                                        ("junk.csv", "junk.csv: not read: ")])
def test_a_bad_synthetic_file_is_reported_and_the_good_ones_results_are_still_written(bad, words, long_files,
                                                                                        tmp_path, capsys):
    import pandas as pd

    from ehrlib.cli import main

    assert main(_evaluate(long_files, tmp_path / "out", "good.csv", bad)) == 2
    err = capsys.readouterr().err
    assert "1 of 2 synthetic file(s) not in" in err and words in err
    assert set(pd.read_csv(tmp_path / "out" / "metrics.csv")["model"]) == {"good"}


def test_a_lock_held_by_a_child_of_an_ended_writer_says_so(tmp_path, monkeypatch):
    import fcntl
    import socket

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    run = runs.open_run("r")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)

    (run.path / runs.WRITER_LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                                         "started": "then", "command": "ehrbench reproduce"}))
    with open(run.path / runs.WRITER_LOCK) as held:  # the lock, still held by a process the writer started
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RunError, match=rf"process {int(dead.stdout)} .* that has ended, while a process it "
                                           "started still holds the lock"):
            with run.writer():
                pass



@pytest.mark.parametrize("make", [
    lambda base: runner.prepare_out(base / "f" / "build"),
    lambda base: runs.open_run("r", root=base / "f"),
])
def test_a_folder_that_cannot_be_made_under_a_file_is_an_error_naming_the_file(make, tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(RunError, match=r"cannot be made: .*f is a file, not a folder"):
        make(tmp_path)


def test_evaluate_into_a_folder_under_a_file_is_refused_before_any_work(long_files, tmp_path, capsys):
    from ehrlib.cli import main

    (tmp_path / "f").write_text("a file")
    assert main(_evaluate(long_files, tmp_path / "f" / "out", "good.csv")) == 2
    assert "cannot be made" in capsys.readouterr().err



def test_a_run_from_another_folder_writes_and_reads_one_runs_folder(pipeline, tmp_path, monkeypatch):
    monkeypatch.delenv("EHRLIB_RUNS_DIR")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # ./runs is this folder's, while the kernels start in --root
    runner.reproduce(pipeline, profile="smoke", run="r", only=["00"], book=False)
    assert (tmp_path / "elsewhere" / "runs" / "r" / "data" / "train.parquet").is_file()
    assert not (pipeline / "runs").exists()
    runner.reproduce(pipeline, profile="smoke", run="r", only=["00"], book=False)
    assert runs.open_run("r").manifest()["runner"]["skipped"] == 1  # the same folder, found up to date
