"""``ehrbench reproduce --executor slurm``: stages as jobs through submitit.

Against a fake Slurm (``tests/fake_slurm/``: sbatch, squeue, sacct, scancel, scontrol, srun on
PATH, recording what they are asked and, with ``FAKE_SLURM_RUN=1``, running each job once its
``afterok`` dependencies completed) on a small tree of toy notebooks that open real stages, and
the whole smoke pipeline under submitit's local executor beside ``--executor local``.
"""
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from ehrlib.errors import RunError, RunInterrupted
from ehrlib.runner import executors, reproduce
from ehrlib.runs import open_run

FAKE = Path(__file__).parent / "fake_slurm"
_FIRST_IDS = itertools.count()
ROOT = Path(__file__).resolve().parents[1]

PARAMS = 'profile = "smoke"\nrun = "toy"\nseed = 0\n'
TOY = {  # stage -> (needs, parameters beyond PARAMS, body)
    "00_data": ([], "", "d = stage.model_dir('toy_data')\n(d / 'rows.txt').write_text('3')"),
    "10_train_medgan": (["00_data"], "sleep = 0.0\n",
                        "import time\nd = stage.model_dir('medgan')\nn = len(list(d.glob('attempt*')))\n"
                        "(d / f'attempt{n}').write_text('')\nif n == 0: time.sleep(sleep)\n"
                        "(d / 'weights.txt').write_text('1')"),
    "11_train_corgan": (["00_data"], "fail = False\n",
                        "d = stage.model_dir('corgan')\nassert not fail, 'told to fail'\n"
                        "(d / 'weights.txt').write_text('2')"),
    "20_generate": (["10_train_medgan", "11_train_corgan"], "",
                    "d = stage.model_dir('generated')\n(d / 'n.txt').write_text('4')"),
}
CONSTANT = {"00_data": "DATA", "10_train_medgan": "TRAIN_MEDGAN", "11_train_corgan": "TRAIN_CORGAN",
            "20_generate": "GENERATE"}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A repository root with four toy notebooks, runs in tmp, the fake Slurm first on PATH."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    for name, (needs, extra, body) in TOY.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["ehrbench"] = {"needs": needs}
        params = nbformat.v4.new_code_cell(PARAMS + extra)
        params.metadata["tags"] = ["parameters"]
        opened = f"from ehrlib import runs, stages\nstage = runs.stage(stages.{CONSTANT[name]}, run=run, profile=profile)"
        nb.cells = [params, nbformat.v4.new_code_cell(opened), nbformat.v4.new_code_cell(body)]
        nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FAKE_SLURM_DIR", str(tmp_path / "slurm"))
    monkeypatch.setenv("PATH", f"{FAKE}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(executors.POLL_ENV, "0.3")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    # job ids unique across the tests: submitit's watcher remembers finished ids for the whole process
    monkeypatch.setenv("FAKE_SLURM_FIRST_ID", str(1001 + 1000 * next(_FIRST_IDS)))
    return root


def submissions(tmp_path) -> list[dict]:
    path = tmp_path / "slurm" / "submissions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def by_stage(subs) -> dict[str, dict]:
    return {s["options"]["job-name"].split("-", 1)[1]: s for s in subs}


def lines(tmp_path, name) -> list[str]:
    path = tmp_path / "slurm" / name
    return path.read_text().split() if path.is_file() else []


def test_resources_come_from_the_profile_and_the_options_override_them():
    train = executors.stage_resources("paper", "12_train_promptehr")
    table = executors.stage_resources("paper", "33_table1")
    assert train["gpus_per_node"] == 1 and train["mem_gb"] > table["mem_gb"] and train["timeout_min"] > 0
    assert "gpus_per_node" not in table  # evaluation on CPUs
    assert "gpus_per_node" not in executors.stage_resources("smoke", "10_train_medgan")
    opts = executors.parse_options(["partition=gpu", "account=lab", "gpus_per_node=2", "cluster=local"])
    assert opts == {"slurm_partition": "gpu", "slurm_account": "lab", "gpus_per_node": 2, "cluster": "local"}
    with pytest.raises(RunError, match="expected KEY=VALUE"):
        executors.parse_options(["partition"])
    with pytest.raises(RunError, match="cluster='pbs'"):
        executors.parse_options(["cluster=pbs"])
    assert [executors.job_status(s) for s in ("PENDING", "RUNNING", "COMPLETED", "TIMEOUT", "CANCELLED by 0")] == \
        ["queued", "running", "done", "failed", "failed"]


def test_fake_slurm_dependencies_resources_failure_and_resubmission(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLURM_RUN", "1")
    with pytest.raises(RunError, match=r"11_train_corgan.*told to fail") as err:
        reproduce(toy, profile="paper", run="toy", book=False, settings={"fail": True},
                  executor="slurm", cluster=executors.parse_options(["partition=gpu", "account=lab"]))
    subs = by_stage(submissions(tmp_path))
    assert sorted(subs) == sorted(TOY)
    ids = {k: v["job_id"] for k, v in subs.items()}
    opts = {k: v["options"] for k, v in subs.items()}
    # the graph: both training stages after the data stage, generation after both
    assert "dependency" not in opts["00_data"]
    assert opts["10_train_medgan"]["dependency"] == opts["11_train_corgan"]["dependency"] == f"afterok:{ids['00_data']}"
    assert opts["20_generate"]["dependency"] == f"afterok:{ids['10_train_medgan']}:{ids['11_train_corgan']}"
    assert all(o["kill-on-invalid-dep"] == "yes" for k, o in opts.items() if k != "00_data")
    # resources: the paper profile's, with the options over them
    assert opts["10_train_medgan"]["gpus-per-node"] == "1" and opts["10_train_medgan"]["mem"] == "64GB"
    assert opts["10_train_medgan"]["time"] == "240" and "gpus-per-node" not in opts["00_data"]
    assert all(o["partition"] == "gpu" and o["account"] == "lab" for o in opts.values())
    assert all(o["signal"].startswith("USR2@") for o in opts.values())  # the time-limit warning submitit catches
    # the failure: its stage failed with its log named, the stage needing it not run (its job cancelled)
    run = open_run("toy")
    stages = run.manifest()["stages"]
    failed = stages["11_train_corgan"]["runner"]
    assert failed["status"] == "failed" and failed["job"]["id"] == ids["11_train_corgan"]
    assert failed["job"]["stderr"] in str(err.value) or "log:" in failed["error"]
    assert stages["20_generate"]["runner"]["status"] == "not run"
    assert stages["10_train_medgan"]["runner"]["status"] == "ok"
    table = executors.read_table(run)
    assert table["stages"]["11_train_corgan"]["status"] == "failed"
    assert table["stages"]["20_generate"]["status"] == "not run"
    shown = executors.status_table(run)
    assert ids["11_train_corgan"] in shown and table["stages"]["11_train_corgan"]["stderr"] in shown
    # a second reproduce submits only what failed or did not run
    reproduce(toy, profile="paper", run="toy", book=False, executor="slurm", cluster={})
    again = submissions(tmp_path)[len(subs):]
    assert sorted(by_stage(again)) == ["11_train_corgan", "20_generate"]
    assert "dependency" not in by_stage(again)["11_train_corgan"]["options"]  # its need is done, not resubmitted
    assert all(v["runner"]["status"] == "ok" for v in open_run("toy").manifest()["stages"].values())


def test_a_job_at_its_time_limit_checkpoints_and_requeues(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLURM_RUN", "1")
    monkeypatch.setenv("FAKE_SLURM_TIMEOUT_NAME", "10_train_medgan")
    monkeypatch.setenv("FAKE_SLURM_TIMEOUT_S", "1")  # after the notebook began its first attempt
    monkeypatch.setenv("FAKE_SLURM_TIMEOUT_AFTER", str(tmp_path / "runs" / "toy" / "models" / "medgan" / "attempt0"))
    reproduce(toy, profile="smoke", run="toy", book=False, settings={"sleep": 120.0}, executor="slurm",
              cluster={}, only=["00", "10"])
    job = by_stage(submissions(tmp_path))["10_train_medgan"]["job_id"]
    assert lines(tmp_path, "requeued.txt") == [job]  # submitit asked Slurm to requeue it
    path = tmp_path / "slurm" / "jobs" / f"{job}.json"
    assert _wait_for(lambda: json.loads(path.read_text())["state"] == "COMPLETED", 30)  # the fake records it last
    state = json.loads(path.read_text())
    assert state["signalled"] == "USR2" and state["restarts"] == 1
    models = open_run("toy").path / "models" / "medgan"
    assert sorted(p.name for p in models.glob("attempt*")) == ["attempt0", "attempt1"]  # ran again after the requeue
    assert open_run("toy").manifest()["stages"]["10_train_medgan"]["runner"]["status"] == "ok"


def _coordinator(toy, tmp_path, *args):
    """``ehrbench reproduce --executor slurm`` as a process of its own (Python's SIGINT handler
    installed: a test run in the background inherits SIGINT ignored)."""
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from ehrlib.cli import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, "reproduce", "--root", str(toy), "--profile", "smoke",
                             "--run", "toy", "--no-book", "--executor", "slurm", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(cond, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def _submitted(toy, tmp_path) -> int:
    """Stages whose job id the coordinator has recorded in its job table."""
    path = tmp_path / "runs" / "toy" / executors.JOBS_FILE
    try:
        return sum(1 for s in json.loads(path.read_text())["stages"].values() if s.get("job_id"))
    except (OSError, ValueError, KeyError):
        return 0


def test_ctrl_c_cancels_every_queued_job(toy, tmp_path):
    proc = _coordinator(toy, tmp_path)  # FAKE_SLURM_RUN unset: the jobs stay queued
    assert _wait_for(lambda: _submitted(toy, tmp_path) == len(TOY)), proc.communicate(timeout=10)[0]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    ids = sorted(s["job_id"] for s in submissions(tmp_path))
    assert sorted(lines(tmp_path, "cancelled.txt")) == ids
    table = executors.read_table(open_run("toy"))
    assert {s["status"] for s in table["stages"].values()} == {"cancelled"}
    assert "cancelled the jobs of" in out


def test_detach_leaves_the_coordinator_running_and_status_shows_the_jobs(toy, tmp_path, monkeypatch):
    from ehrlib.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--root", str(toy), "--profile", "smoke", "--run", "toy", "--no-book",
                 "--executor", "slurm", "--detach"]) == 0
    run = open_run("toy")
    pid = executors.read_table(run)["coordinator"]["pid"]
    try:
        assert _wait_for(lambda: _submitted(toy, tmp_path) == len(TOY))
        shown = executors.status_table(run)
        assert "running" in shown.splitlines()[0] and "4 queued" in shown
        for s in submissions(tmp_path):
            assert s["job_id"] in shown
        # Slurm starts the data stage: status asks sacct
        first = by_stage(submissions(tmp_path))["00_data"]["job_id"]
        state = tmp_path / "slurm" / "jobs" / f"{first}.json"
        state.write_text(json.dumps({**json.loads(state.read_text()), "state": "RUNNING"}))
        shown = executors.status_table(run)
        assert "1 running" in shown and "3 queued" in shown
    finally:
        os.kill(pid, signal.SIGINT)
        assert _wait_for(lambda: executors.read_table(run).get("finished"), 60)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EHRLIB_TEST_CLUSTER_PIPELINE"),
                    reason="a second whole smoke pipeline (~5 min on 2 cores); set EHRLIB_TEST_CLUSTER_PIPELINE=1 to run it "
                           "(it did not yet pass: see the issue's closing note)")
def test_smoke_pipeline_under_submitits_local_executor_matches_the_local_run(smoke_build, tmp_path, monkeypatch):
    """The whole smoke pipeline, each stage a process of submitit's local executor, against the
    session's ``--executor local`` build: the same stages, statuses and tables."""
    from tests.conftest import SHARED_DATA, SMOKE_GENERATORS

    _, local_run = smoke_build
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv(executors.POLL_ENV, "0.5")
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("EHRLIB_DATA_DIR", str(SHARED_DATA))
    t0 = time.time()
    reproduce(ROOT, profile="smoke", book=False, settings={"generators": SMOKE_GENERATORS}, executor="slurm",
              cluster={"cluster": "local"})
    print(f"smoke pipeline under submitit's local executor: {time.time() - t0:.0f} s")
    ours, theirs = open_run("smoke").manifest()["stages"], json.loads((local_run / "manifest.json").read_text())["stages"]
    assert sorted(ours) == sorted(theirs)
    assert {k: v.get("runner", {}).get("status") for k, v in ours.items()} == {
        k: v.get("runner", {}).get("status") for k, v in theirs.items()}
    assert all("job" in v["runner"] for v in ours.values())
    tables = sorted(p.name for p in (local_run / "tables").glob("*.csv"))
    assert tables == sorted(p.name for p in (open_run("smoke").path / "tables").glob("*.csv"))
    for name in tables:
        a = pd.read_csv(local_run / "tables" / name)
        b = pd.read_csv(open_run("smoke").path / "tables" / name)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, obj=name)


def test_the_reproducing_pages_worked_example_against_the_fake_slurm(toy, tmp_path, monkeypatch, capsys):
    """The page's commands (fetch, preflight, reproduce --executor slurm --detach, status), on the
    smoke profile and the toy notebooks; the jobs run on the fake Slurm."""
    from ehrlib.cli import main
    from tests.conftest import SHARED_DATA

    data = Path(os.environ.get("EHRLIB_DATA_DIR") or SHARED_DATA)
    if not (data / "paper-samples").is_dir():
        pytest.skip(f"{data} (the paper's samples) not present")
    monkeypatch.setenv("EHRLIB_DATA_DIR", str(data))  # present and checked: nothing downloaded
    monkeypatch.setenv("FAKE_SLURM_RUN", "1")
    monkeypatch.chdir(tmp_path)
    assert main(["fetch", "paper-samples"]) == 0
    assert main(["preflight", "--profile", "smoke", "--models", "gpt", "--gpu-memory", "40"]) == 0
    assert main(["reproduce", "--root", str(toy), "--profile", "smoke", "--run", "toy", "--no-book",
                 "--executor", "slurm", "--slurm", "partition=gpu", "account=mylab", "--detach"]) == 0
    out = capsys.readouterr().out
    assert "follow it with: ehrbench status --run toy" in out
    run = open_run("toy")
    assert _wait_for(lambda: executors.read_table(run).get("finished"), 240)
    assert main(["status", "--run", "toy"]) == 0
    shown = capsys.readouterr().out
    assert "4 done" in shown and "finished" in shown.splitlines()[0]
    assert all(s["options"]["partition"] == "gpu" for s in submissions(tmp_path))
