"""A fake Slurm for the tests (tests/test_slurm.py): sbatch, squeue, sacct, scancel, scontrol and
srun as small programs on PATH that record what they were asked in $FAKE_SLURM_DIR.

* ``sbatch FILE`` records the file's ``#SBATCH`` options (one JSON line in ``submissions.jsonl``)
  and prints ``Submitted batch job N``. With ``FAKE_SLURM_RUN=1`` a background process plays the
  cluster for that job: it waits for its ``afterok`` dependencies (a failed one cancels it, as
  ``--kill-on-invalid-dep=yes`` does), runs the batch script with Slurm's environment variables,
  and records the job's state (``jobs/N.json``: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED,
  REQUEUED). With ``FAKE_SLURM_TIMEOUT_NAME`` (a part of a job's name) and
  ``FAKE_SLURM_TIMEOUT_S``, that job's first run gets SIGUSR2 after so many seconds (counted
  from when the file ``FAKE_SLURM_TIMEOUT_AFTER`` exists, if given), as Slurm signals a job near
  its time limit (``--signal=USR2@90``).
* ``scontrol requeue N`` records the requeue; the job then runs again (``SLURM_RESTART_COUNT=1``).
* ``scancel N`` records the id and cancels the job (its running script is killed).
* ``sacct -j N ... --parsable2`` and ``squeue`` print the recorded states.
* ``srun [options] CMD`` runs ``CMD`` with its output appended to ``--output``/``--error``.
"""
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HOME = Path(os.environ["FAKE_SLURM_DIR"])
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


def _locked(fn):
    HOME.mkdir(parents=True, exist_ok=True)
    with open(HOME / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            return fn()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def state_of(job):
    p = HOME / "jobs" / f"{job}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def set_state(job, **fields):
    def change():
        p = HOME / "jobs" / f"{job}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = json.loads(p.read_text()) if p.is_file() else {}
        data.update(fields)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, p)
        return data
    return _locked(change)


def options(script: str) -> dict:
    out = {}
    for line in Path(script).read_text().splitlines():
        m = re.match(r"#SBATCH\s+--([\w-]+)(?:=(.*))?$", line.strip())
        if m:
            out[m.group(1)] = m.group(2) if m.group(2) is not None else True
    return out


def sbatch(args):
    script = args[-1]
    opts = options(script)

    def new_id():
        p = HOME / "next_id"
        n = int(p.read_text()) if p.is_file() else int(os.environ.get("FAKE_SLURM_FIRST_ID", "1001"))
        p.write_text(str(n + 1))
        return n
    job = str(_locked(new_id))
    line = json.dumps({"job_id": job, "script": script, "options": opts})
    _locked(lambda: open(HOME / "submissions.jsonl", "a").write(line + "\n"))
    set_state(job, state="PENDING", name=opts.get("job-name", ""), restarts=0)
    if os.environ.get("FAKE_SLURM_RUN") == "1":
        subprocess.Popen([sys.executable, __file__, "_play", job, script], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Submitted batch job {job}")


def play(job, script):
    opts = options(script)
    deps = [d for d in str(opts.get("dependency", "")).replace("afterok:", "").split(":") if d]
    while True:
        states = [(state_of(d) or {}).get("state") for d in deps]
        if any(s in ("FAILED", "CANCELLED", "TIMEOUT") for s in states):
            set_state(job, state="CANCELLED", reason="DependencyNeverSatisfied")
            return
        if (state_of(job) or {}).get("state") == "CANCELLED":
            return
        if all(s == "COMPLETED" for s in states):
            break
        time.sleep(0.2)
    out_dir = Path(str(opts["output"]).replace("%j", job)).parent
    for _ in range(600):  # submitit renames the job's pickle once sbatch has answered
        if (out_dir / f"{job}_submitted.pkl").is_file():
            break
        time.sleep(0.1)
    restarts = 0
    while True:
        env = {**os.environ, "SLURM_JOB_ID": job, "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
               "SLURM_JOB_NODELIST": "fake1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
               "SLURM_RESTART_COUNT": str(restarts), "SLURM_JOB_NAME": str(opts.get("job-name", ""))}
        proc = subprocess.Popen(["bash", script], env=env, start_new_session=True)
        set_state(job, state="RUNNING", pid=proc.pid)
        timeout_name = os.environ.get("FAKE_SLURM_TIMEOUT_NAME")
        signalled = False
        t0 = None
        err = Path(str(opts.get("error", "")).replace("%j", job))
        while proc.poll() is None:
            # the clock starts once the stage runs (submitit's signal handlers are then installed), or
            # once the file $FAKE_SLURM_TIMEOUT_AFTER exists (the job's own work has begun)
            after = os.environ.get("FAKE_SLURM_TIMEOUT_AFTER")
            started = Path(after).exists() if after else (err.is_file() and " running (" in err.read_text(errors="replace"))
            if t0 is None and started:
                t0 = time.time()
            if (timeout_name and restarts == 0 and not signalled and timeout_name in str(opts.get("job-name", ""))
                    and t0 is not None and time.time() - t0 > float(os.environ.get("FAKE_SLURM_TIMEOUT_S", "5"))):
                _signal_steps(proc.pid, signal.SIGUSR2)
                signalled = True
                set_state(job, signalled="USR2")
            time.sleep(0.1)
        now = state_of(job) or {}
        if now.get("state") == "CANCELLED":
            return
        if now.get("requeue"):
            restarts += 1
            set_state(job, state="REQUEUED", requeue=False, restarts=restarts)
            time.sleep(0.5)
            continue
        set_state(job, state="COMPLETED" if proc.returncode == 0 else "FAILED", exit=proc.returncode)
        return


def _signal_steps(pid, sig):
    """Signal the job's steps (the fake srun processes the batch script started; each forwards
    it to what it runs), as Slurm's ``--signal`` does."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    for p in out.split():
        try:
            os.kill(int(p), sig)
        except ProcessLookupError:
            pass


def srun(args):
    out = err = None
    i = 0
    while i < len(args) and args[i].startswith("-"):
        a = args[i]
        if a in ("--output", "--error"):
            val = args[i + 1].replace("%j", os.environ.get("SLURM_JOB_ID", "0")).replace("%t", "0")
            out, err = (val, err) if a == "--output" else (out, val)
            i += 2
        else:
            i += 1
    cmd = args[i:]
    with open(out or os.devnull, "ab") as o, open(err or os.devnull, "ab") as e:
        proc = subprocess.Popen(cmd, stdout=o, stderr=e)

        def forward(signum, frame):
            proc.send_signal(signum)
        signal.signal(signal.SIGUSR2, forward)
        signal.signal(signal.SIGTERM, forward)
        sys.exit(proc.wait())


def scancel(args):
    for job in args:
        _locked(lambda: open(HOME / "cancelled.txt", "a").write(job + "\n"))
        now = state_of(job)
        if now and now.get("state") not in FINAL:
            set_state(job, state="CANCELLED")
            if now.get("pid"):
                try:
                    os.killpg(os.getpgid(now["pid"]), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def scontrol(args):
    if args[:1] == ["requeue"]:
        for job in args[1:]:
            _locked(lambda: open(HOME / "requeued.txt", "a").write(job + "\n"))
            set_state(job, requeue=True)


def sacct(args):
    ids = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
    print("JobID|State|NodeList")
    for job in ids:
        now = state_of(job)
        if now:
            print(f"{job}|{now['state']}|fake1")


def squeue(args):
    print("JOBID|NAME|STATE")
    for p in sorted((HOME / "jobs").glob("*.json")):
        now = json.loads(p.read_text())
        if now["state"] not in FINAL:
            print(f"{p.stem}|{now.get('name', '')}|{now['state']}")


if __name__ == "__main__":
    if sys.argv[1] == "_play":
        play(sys.argv[2], sys.argv[3])
    else:
        {"sbatch": sbatch, "srun": srun, "scancel": scancel, "scontrol": scontrol, "sacct": sacct,
         "squeue": squeue}[sys.argv[1]](sys.argv[2:])
