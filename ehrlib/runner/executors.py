"""Stages as cluster jobs: ``ehrbench reproduce --executor slurm``, through submitit.

The book's "Reproducing" page ("On a Slurm cluster") shows the commands; what the runner does:

* Every stage that is not up to date is one job, submitted by :mod:`submitit` (no hand-written
  ``sbatch`` script). On Slurm all of them are submitted at once, each depending (``afterok``)
  on the jobs of the stages it needs (:func:`~ehrlib.runner.graph.stage_needs`), so the five
  training stages run side by side once the data stage is done and evaluation starts when its
  needs are; with ``--slurm cluster=local`` (submitit's local executor: each stage a process of
  its own, no Slurm) a job is submitted when its needs are done, up to ``--jobs`` at a time.
* Resources come from the profile (``ehrlib/profiles/resources.yaml``, :func:`stage_resources`):
  ``paper`` gives every training stage one GPU, memory and a time limit and keeps evaluation on
  CPUs; ``--slurm KEY=VALUE`` overrides them for every stage (:func:`parse_options`).
* A job that reaches its time limit checkpoints and requeues itself (submitit's checkpointing,
  :class:`StageJob`); its notebook runs again and the model's training resumes from the
  checkpoint the interrupted job left in the run's model folder (``pipeline.train`` resumes
  unless ``force``).
* The coordinator (the ``reproduce`` process) holds the run's writer lock; the jobs get its
  token and write only their stage's outputs (the executed notebook by an atomic rename; the
  stage's files through its stage context). The coordinator records every stage's end in the
  manifest: a failed job marks its stage failed with its log named; the stages that need it
  are not run (their queued jobs are cancelled); a second ``reproduce`` submits only what is
  failed or out of date. Ctrl-C cancels every queued or running job.
* The job table (:data:`JOBS_FILE` in the run folder) says where every job is;
  ``ehrbench status --run R`` prints it (:func:`status_table`), asking Slurm for the states
  of the jobs not yet finished, also while the coordinator runs detached (``--detach``).
* The book is built by the coordinator once the last job has ended.

Not yet: ``--seeds`` (a sweep's seeds as one job array per stage); run one ``reproduce`` per seed.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ehrlib.errors import RunError, RunInterrupted
from ehrlib.io import atomic_write, process_alive
from ehrlib.runner.fingerprints import EXECUTED_DIR, record_result, up_to_date
from ehrlib.runner.graph import stage_needs
from ehrlib.runner.kernels import StageResult
from ehrlib.runs import ENV_RUNS_DIR, ENV_WRITER, Run, _now
from ehrlib.stages import TRAINING

log = logging.getLogger("ehrbench")

#: ``ehrbench reproduce --executor``: ``local`` runs the stages on this machine (kernels side by
#: side, :func:`~ehrlib.runner.graph.run_stages`); ``slurm`` submits them as jobs (this module).
EXECUTORS = ("local", "slurm")
#: submitit's clusters ``--slurm cluster=...`` may name (``local``: each job a process here).
CLUSTERS = ("slurm", "local")
#: The job table in the run folder (written by the coordinator only, atomically).
JOBS_FILE = "jobs.json"
#: The run's folder of submitit's job files (pickles and logs, ``<job id>_0_log.out/.err``).
JOBS_DIR = "jobs"
#: The log of a detached coordinator, in the run folder.
COORDINATOR_LOG = "coordinator.log"
#: Seconds between two looks at the jobs (``$EHRLIB_JOB_POLL_S``; Slurm is asked through ``sacct``).
POLL_ENV = "EHRLIB_JOB_POLL_S"
#: ``--slurm`` short names for submitit's Slurm-only parameters.
SHORT_NAMES = {"partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
               "constraint": "slurm_constraint", "exclude": "slurm_exclude", "gres": "slurm_gres",
               "time": "timeout_min", "mem": "mem_gb"}
#: The job states shown by ``ehrbench status``, from submitit's (Slurm's ``sacct`` or the local executor's).
QUEUED = ("PENDING", "REQUEUED", "READY", "CONFIGURING", "UNKNOWN", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED")
RUNNING = ("RUNNING", "COMPLETING", "RESIZING", "STAGE_OUT")
DONE = ("COMPLETED", "FINISHED")


def job_status(state: str) -> str:
    """``queued``, ``running``, ``done`` or ``failed`` for a submitit/Slurm job state."""
    state = (state or "UNKNOWN").upper().split()[0]
    if state in QUEUED:
        return "queued"
    if state in RUNNING:
        return "running"
    if state in DONE:
        return "done"
    return "failed"  # FAILED, TIMEOUT, CANCELLED, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE, INTERRUPTED


# ---------------------------------------------------------------------------- resources
def stage_resources(profile: str, stage: str) -> dict:
    """The submitit parameters of ``stage`` in ``profile`` (``ehrlib/profiles/resources.yaml``):
    the profile's ``default``, plus ``training.<model>`` for the stage training that model."""
    import importlib.resources as res

    import yaml

    table = yaml.safe_load(res.files("ehrlib.profiles").joinpath("resources.yaml").read_text()) or {}
    if profile not in table:
        raise RunError(f"ehrlib/profiles/resources.yaml: no entry for profile {profile!r}; expected one per profile")
    entry = table[profile] or {}
    out = dict(entry.get("default") or {})
    model = {v: k for k, v in TRAINING.items()}.get(stage)
    if model is not None:
        out.update((entry.get("training") or {}).get(model) or {})
    return out


def parse_options(items: list[str] | None) -> dict:
    """``--slurm KEY=VALUE`` items as submitit parameters (short names of :data:`SHORT_NAMES`
    expanded; numbers read as numbers). ``cluster`` picks submitit's cluster (:data:`CLUSTERS`)."""
    import ast

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise RunError(f"--slurm {item!r}: expected KEY=VALUE (e.g. partition=gpu, account=lab, gpus_per_node=1)")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        out[SHORT_NAMES.get(key, key)] = parsed
    cluster = out.get("cluster", "slurm")
    if cluster not in CLUSTERS:
        raise RunError(f"--slurm cluster={cluster!r}: expected one of {list(CLUSTERS)}")
    return out


# ---------------------------------------------------------------------------- one job
try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # submitit is the optional extra `slurm`; checked again when a job is submitted
    _Checkpointable = object


class StageJob(_Checkpointable):
    """One stage run as a cluster job: its notebook in a kernel (:func:`~ehrlib.runner.kernels.run_stage`)
    with the coordinator's writer token, leaving the manifest's record of its end to the coordinator.

    A :class:`submitit.helpers.Checkpointable`: when Slurm signals the end of the time limit,
    submitit pickles this job again and requeues it; the notebook then runs again and its model
    resumes from the last epoch checkpoint in the run's model folder.
    """

    def __init__(self, nb: Path, root: Path, run_path: Path, params: dict, threads: int | None, code: str,
                 env: dict, force: bool = False):
        self.nb, self.root, self.run_path = Path(nb), Path(root), Path(run_path)
        self.params, self.threads, self.code, self.env, self.force = dict(params), threads, code, dict(env), force

    def __call__(self) -> dict:
        from ehrlib.runner.kernels import run_stage, stop_kernels

        os.environ.update(self.env)
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            result = run_stage(self.nb, self.root, Run(self.run_path), self.params, self.threads, self.force, self.code,
                               dict(os.environ), record=False)
        finally:
            stop_kernels()  # a job ended by a signal leaves no kernel behind
        return {"name": result.name, "status": result.status, "seconds": result.seconds, "threads": result.threads,
                "error": result.error}


# ---------------------------------------------------------------------------- the job table
class JobTable:
    """The run's :data:`JOBS_FILE`: the coordinator, and per stage its job (id, state, logs)."""

    def __init__(self, run: Run, cluster: str):
        self.run, self.path = run, run.path / JOBS_FILE
        self.data = {"cluster": cluster, "folder": str(run.path / JOBS_DIR),
                     "coordinator": {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()},
                     "finished": None, "stages": {}}
        self.write()

    def set(self, stage: str, **fields) -> None:
        self.data["stages"].setdefault(stage, {}).update(fields)
        self.write()

    def write(self) -> None:
        text = json.dumps(self.data, indent=2, sort_keys=True)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))


def read_table(run: Run) -> dict:
    path = run.path / JOBS_FILE
    if not path.is_file():
        raise RunError(f"run {run.name!r} has no job table ({path}): it was not run with ehrbench reproduce "
                       "--executor slurm")
    return json.loads(path.read_text())


def status_table(run: Run, live: bool = True) -> str:
    """``ehrbench status --run R``: the coordinator and every stage's job (status, job id, state,
    log). With ``live``, the jobs of a running coordinator that have not finished are looked up
    (Slurm: ``sacct`` through submitit)."""
    data = read_table(run)
    c = data.get("coordinator", {})
    alive = c.get("host") == socket.gethostname() and process_alive(int(c.get("pid", 0) or 0))
    where = ("finished " + data["finished"] if data.get("finished") else "running" if alive else
             "not running here" if c.get("host") != socket.gethostname() else "ended before its jobs did")
    lines = [f"run {run.name}: coordinator process {c.get('pid')} on {c.get('host')} (started {c.get('started')}; "
             f"{where}); cluster {data.get('cluster')}",
             f"{'stage':<26} {'status':<9} {'job':<12} {'state':<11} log"]
    stages = data.get("stages", {})
    if live and data.get("cluster") == "slurm":
        open_ids = [s["job_id"] for s in stages.values() if s.get("job_id") and s.get("status") in ("queued", "running")]
        states = _slurm_states(data["folder"], open_ids) if open_ids else {}
        for s in stages.values():
            if s.get("job_id") in states:
                s["state"] = states[s["job_id"]]
                s["status"] = job_status(s["state"])
    counts: dict[str, int] = {}
    for name in sorted(stages):
        s = stages[name]
        counts[s.get("status", "?")] = counts.get(s.get("status", "?"), 0) + 1
        log_path = s.get("stderr", "") if s.get("status") == "failed" else s.get("stdout", "")
        lines.append(f"{name:<26} {s.get('status', ''):<9} {s.get('job_id') or '-':<12} {s.get('state', ''):<11} "
                     f"{log_path}")
    lines.append("; ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if data.get("book"):
        lines.append(f"book: {data['book']}")
    return "\n".join(lines)


def _slurm_states(folder: str, job_ids: list[str]) -> dict[str, str]:
    import submitit

    jobs = [submitit.SlurmJob(folder=Path(folder) / "%j", job_id=j) for j in job_ids]
    submitit.SlurmJob.watcher.update()
    return {j.job_id: j.watcher.get_state(j.job_id, mode="cache") for j in jobs}


# ---------------------------------------------------------------------------- the coordinator
def _poll_seconds(cluster: str) -> float:
    raw = os.environ.get(POLL_ENV)
    if raw:
        try:
            return max(0.05, float(raw))
        except ValueError:
            raise RunError(f"${POLL_ENV}={raw!r}: expected a number of seconds") from None
    return 30.0 if cluster == "slurm" else 1.0


def run_jobs(root: Path, run: Run, selected: list[Path], params_of, code: str, *, profile: str, options: dict,
             threads: int | None = None, force: bool = False, stale_of=None, jobs: int = 4) -> list[StageResult]:
    """Run the ``selected`` stages as jobs (see the module docstring); results in notebook order.

    Args:
        params_of: a stage's notebook parameters (``params_of(nb) -> dict``).
        options: submitit parameters from ``--slurm`` (:func:`parse_options`), ``cluster`` among them.
        stale_of: ``stale_of(nb) -> str``, why the needs outside ``--only`` cannot be used (``""``: they can).
        jobs: with the local cluster, jobs running at once.

    Raises:
        RunError: submitit is not installed, or a parameter it does not know.
        RunInterrupted: Ctrl-C (every queued or running job cancelled first).
    """
    try:
        import submitit
    except ImportError:
        raise RunError("--executor slurm needs submitit: pip install 'ehrlib[slurm]'") from None
    options = dict(options)
    cluster = options.pop("cluster", "slurm")
    needs = stage_needs(selected)
    by_stem = {nb.stem: nb for nb in selected}
    results: dict[str, StageResult] = {}
    table = JobTable(run, cluster)
    token = os.environ.get(ENV_WRITER)
    env = {ENV_WRITER: token or "", ENV_RUNS_DIR: str(run.path.parent.resolve()), "TQDM_DISABLE": "1"}
    env.update({k: os.environ[k] for k in ("EHRLIB_PROFILE", "EHRLIB_DATA_DIR") if k in os.environ})

    def finish(nb: Path, result: StageResult, job=None) -> None:
        results[nb.stem] = result
        record_result(run, nb, result, params_of(nb), code)
        status = {"ok": "done", "skipped": "skipped", "interrupted": "cancelled"}.get(result.status, result.status)
        table.set(nb.stem, status=status, finished=_now(), error=result.error)
        if job is not None:
            info = {"id": str(job.job_id), "cluster": cluster, "stdout": str(job.paths.stdout),
                    "stderr": str(job.paths.stderr)}
            run.update_manifest(lambda m: m["stages"][nb.stem]["runner"].__setitem__("job", info))

    todo = []
    for nb in selected:
        stale = stale_of(nb) if stale_of else ""
        if stale:
            finish(nb, StageResult(nb.stem, "failed", error=f"{nb.stem}: {stale}"))
            log.error("%-26s REFUSED: %s", nb.stem, stale)
        elif not force and not any(n in {t.stem for t in todo} for n in needs[nb.stem]) \
                and up_to_date(run, nb, params_of(nb), code):  # else its job looks once its needs are done
            results[nb.stem] = StageResult(nb.stem, "skipped")
            table.set(nb.stem, status="skipped", job_id=None)
            log.info("%-26s up to date: skipped", nb.stem)
        else:
            todo.append(nb)

    submitted: dict[str, object] = {}

    def submit(nb: Path) -> None:
        ex = submitit.AutoExecutor(folder=run.path / JOBS_DIR / "%j", cluster=cluster)
        params = {"name": f"{run.name}-{nb.stem}", **stage_resources(profile, nb.stem), **options}
        # its direct needs among those submitted (a need of a need is already waited for)
        direct = [n for n in needs[nb.stem] if not any(n in needs.get(m, []) for m in needs[nb.stem])]
        deps = [str(submitted[n].job_id) for n in direct if n in submitted]
        if cluster == "slurm" and deps:
            params["slurm_dependency"] = "afterok:" + ":".join(deps)
            params["slurm_additional_parameters"] = {"kill-on-invalid-dep": "yes",
                                                     **params.get("slurm_additional_parameters", {})}
        try:
            ex.update_parameters(**params)
        except (NameError, ValueError, TypeError) as exc:
            raise RunError(f"--slurm: {str(exc).splitlines()[0]} (from {sorted(options)} and "
                           "ehrlib/profiles/resources.yaml)") from None
        job = ex.submit(StageJob(nb, root, run.path, params_of(nb), threads, code, env, force))
        submitted[nb.stem] = job
        table.set(nb.stem, job_id=str(job.job_id), status="queued", state="PENDING", needs=deps,
                  stdout=str(job.paths.stdout), stderr=str(job.paths.stderr), submitted=_now())
        log.info("%-26s submitted: job %s%s", nb.stem, job.job_id, f" (after {', '.join(deps)})" if deps else "")

    def collect(nb: Path, job) -> StageResult:
        try:
            out = job.result()
            result = StageResult(**out)
        except Exception as exc:  # the job failed, timed out without requeue, or was cancelled
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            result = StageResult(nb.stem, "failed", error=f"{nb.stem}: job {job.job_id} ended {job.state}: "
                                                          f"{first[:300]}; log: {job.paths.stderr}")
        if result.status == "failed" and "log:" not in result.error:
            result.error += f"; log: {job.paths.stderr}"
        return result

    pending, poll = list(todo), _poll_seconds(cluster)
    try:
        while pending or any(s not in results for s in submitted):
            for nb in [by_stem[s] for s in submitted if s not in results] + list(pending):
                lost = [n for n in needs[nb.stem] if n in results and results[n].status not in ("ok", "skipped")]
                if lost:
                    if nb.stem in submitted:
                        submitted[nb.stem].cancel(check=False)
                    else:
                        pending.remove(nb)
                    why = {"failed": "failed", "interrupted": "was interrupted"}.get(results[lost[0]].status,
                                                                                  "did not run")
                    finish(nb, StageResult(nb.stem, "not run", error=f"needs {lost[0]}, which {why}"))
                    log.error("%-26s not run: %s", nb.stem, results[nb.stem].error)
            if cluster == "slurm":
                ready = list(pending)  # all at once: Slurm starts each when its afterok dependencies are met
            else:
                running = sum(1 for s in submitted if s not in results)
                ready = [nb for nb in pending if all(results.get(n) and results[n].status in ("ok", "skipped")
                                                     for n in needs[nb.stem])][:max(0, jobs - running)]
            for nb in ready:
                submit(nb)
                pending.remove(nb)
            if cluster == "slurm" and submitted:
                submitit.SlurmJob.watcher.update()
            for stem, job in list(submitted.items()):
                if stem in results:
                    continue
                state = job.watcher.get_state(str(job.job_id), mode="cache") if cluster == "slurm" else job.state
                if job.done():
                    result = collect(by_stem[stem], job)
                    # its result is written while the scheduler may still count the job as running
                    table.set(stem, state=job.state if job_status(job.state) not in ("queued", "running") else "ENDING")
                    finish(by_stem[stem], result, job)
                    (log.error if result.status == "failed" else log.info)(
                        "%-26s %s after %.1f s%s", stem, result.status, result.seconds,
                        f": {result.error}" if result.error else "")
                elif table.data["stages"][stem].get("state") != state:
                    table.set(stem, state=state, status=job_status(state))
            if pending or any(s not in results for s in submitted):
                time.sleep(poll)
    except KeyboardInterrupt:
        stopped = []
        for stem, job in submitted.items():
            if stem not in results:
                job.cancel(check=False)
                stopped.append(stem)
                finish(by_stem[stem], StageResult(stem, "interrupted", error=f"job {job.job_id} cancelled by Ctrl-C"),
                       job)
        for nb in selected:
            if nb.stem not in results:
                finish(nb, StageResult(nb.stem, "not run", error="not submitted: interrupted by Ctrl-C"))
        table.data["finished"] = _now()
        table.write()
        raise RunInterrupted(f"interrupted (Ctrl-C): cancelled the jobs of {', '.join(stopped) or 'no stage'}; "
                             f"{len(pending)} stage(s) not submitted; finished stages are kept (run the command again "
                             "to go on)", results=[results[nb.stem] for nb in selected]) from None
    table.data["finished"] = _now()
    table.write()
    return [results[nb.stem] for nb in selected]


def note_book(run: Run, book: Path) -> None:
    """Record the built book in the job table (``ehrbench status`` shows it)."""
    path = run.path / JOBS_FILE
    if path.is_file():
        data = json.loads(path.read_text())
        data["book"] = str(book / "index.html")
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True)))


def detach(argv: list[str], run: Run, wait_s: float = 60.0) -> int:
    """Start this ``reproduce`` again without ``--detach`` as a process of its own session (its
    output in the run's :data:`COORDINATOR_LOG`), wait until it has written its job table, and
    return its process id. Raises :class:`RunError` with its log's end when it ends first."""
    argv = [a for a in argv if a != "--detach"]
    log_path = run.path / COORDINATOR_LOG
    before = (run.path / JOBS_FILE).stat().st_mtime_ns if (run.path / JOBS_FILE).is_file() else None
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ehrlib.cli", *argv], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + wait_s
    while time.time() < deadline:
        path = run.path / JOBS_FILE
        if path.is_file() and path.stat().st_mtime_ns != before:
            try:
                if json.loads(path.read_text()).get("coordinator", {}).get("pid") == proc.pid:
                    return proc.pid
            except ValueError:
                pass
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise RunError(f"the detached coordinator ended (exit {proc.returncode}) before submitting: "
                           + " / ".join(tail) + f" (log: {log_path})")
        time.sleep(0.2)
    return proc.pid


__all__ = ["CLUSTERS", "COORDINATOR_LOG", "EXECUTORS", "EXECUTED_DIR", "JOBS_DIR", "JOBS_FILE", "JobTable",
           "StageJob", "detach", "job_status", "note_book", "parse_options", "read_table", "run_jobs",
           "stage_resources", "status_table"]
