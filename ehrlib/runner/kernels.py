"""Running one stage: its notebook in a fresh kernel (papermill) with a thread plan of its own,
the kernels this process started, and stopping them at once on Ctrl-C.

Each kernel talks over local IPC sockets in a private folder, starts in the repository root with
its stage's thread plan added to its environment (stages running at once never share
``os.environ``), and shuts down without the interrupt jupyter_client sends first by default.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from ehrlib.runner.fingerprints import EXECUTED_DIR, record_result, up_to_date
from ehrlib.runs import Run

log = logging.getLogger("ehrbench")


@dataclass
class StageResult:
    name: str
    status: str  # ok | skipped | failed | not run | interrupted
    seconds: float = 0.0
    threads: str = ""
    error: str = ""
    extra: dict = field(default_factory=dict)


def declared_parameters(nb: Path) -> dict:
    """The parameters notebook ``nb`` declares in its ``parameters`` cell (papermill's reading)."""
    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.WARNING)
    return pm.inspect_notebook(str(nb))


def _failure(exc: Exception, nb: Path) -> str:
    cell = getattr(exc, "exec_count", None) or getattr(exc, "cell_index", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    where = f"{nb.name}, cell {cell}" if cell is not None else nb.name
    return f"{where}: {ename}: {str(evalue).splitlines()[0] if str(evalue) else ''}"


def show_parameters_once(path: Path) -> None:
    """In an executed notebook, write the values papermill injected into the parameters cell
    (keeping each parameter's comment) and drop the injected cell: the page shows the parameters
    that were used, once."""
    nb = json.loads(Path(path).read_text())
    cells = nb["cells"]
    injected = [c for c in cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not injected or not params:
        return
    values = dict(re.findall(r"^(\w+) = (.*)$", "".join(injected[0]["source"]), re.M))
    lines = []
    for line in "".join(params[0]["source"]).splitlines(True):
        m = re.match(r"^(\w+)(\s*=\s*)(.*?)(\s*#.*)?(\n?)$", line)
        if m and m.group(1) in values:
            value, comment = values[m.group(1)], m.group(4) or ""
            pad = max(1, len(m.group(3)) + len(comment) - len(comment.lstrip()) - len(value)) if comment else 0
            line = f"{m.group(1)}{m.group(2)}{value}{' ' * pad if comment else ''}{comment.lstrip()}{m.group(5)}"
        lines.append(line)
    params[0]["source"] = lines
    nb["cells"] = [c for c in cells if c is not injected[0]]
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False))


_IPC_DIR: list[Path] = []


def _ipc_dir() -> Path:
    """A private folder for this process's kernel sockets (removed at exit)."""
    if not _IPC_DIR:
        import atexit
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="ehrbench-ipc-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _IPC_DIR.append(path)
    return _IPC_DIR[0]


#: The kernel managers of this process's stages (to stop their kernels on Ctrl-C).
_KERNELS: "weakref.WeakSet" = weakref.WeakSet()
#: Set by Ctrl-C during :func:`ehrlib.runner.graph.run_stages`: no stage starts, running ones
#: count as interrupted.
INTERRUPTED = threading.Event()


def stop_kernels() -> list[int]:
    """Kill every kernel this process's stages started (its whole process group); returns their pids."""
    import signal

    stopped = []
    for km in list(_KERNELS):
        prov = getattr(km, "provisioner", None)
        pid, pgid = getattr(prov, "pid", None), getattr(prov, "pgid", None)
        if not pid or getattr(prov, "process", None) is None:
            continue
        try:
            if pgid and pgid != os.getpgid(0):  # kernels run in a session of their own
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            stopped.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return stopped


def kernel_manager_class(env: dict | None = None, cwd: str | None = None):
    """A kernel manager on local IPC sockets (no TCP ports, no unencrypted-TCP warning) that shuts a
    finished kernel down without interrupting it first (jupyter_client sends SIGINT before every
    shutdown, and an idle kernel logs "KeyboardInterrupt caught in kernel" on the console), and
    starts its kernel with ``env`` added to this process's environment (each stage's thread plan:
    stages running at once must not share ``os.environ``) in folder ``cwd`` (papermill's own ``cwd``
    changes this whole process's folder while a stage runs, and stages running at once would leave
    it changed)."""
    from jupyter_client.manager import AsyncKernelManager

    extra = dict(env or {})

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            # sockets of their own: by default every kernel started in one folder uses the prefix
            # "kernel-ipc" there, and two kernels starting at once can take the same socket
            kwargs.setdefault("ip", str(_ipc_dir() / uuid.uuid4().hex[:12]))
            # a kernel on a busy machine may take more than jupyter_client's 5 s to finish its shutdown;
            # terminating it then makes it log a ZMQ traceback on the console
            kwargs.setdefault("shutdown_wait_time", 60.0)
            super().__init__(**kwargs)
            _KERNELS.add(self)

        async def _async_pre_start_kernel(self, **kw):
            kw["env"] = {**kw.get("env", os.environ), **extra}
            if cwd is not None:
                kw["cwd"] = cwd
            return await super()._async_pre_start_kernel(**kw)

        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:  # a real interrupt still interrupts
                await super()._async_interrupt_kernel()

        interrupt_kernel = _async_interrupt_kernel

    return IPCKernelManager


def stage_plan(threads: int | None, environ: dict | None, at_once: int, jobs: int):
    """The thread plan of a stage that starts while ``at_once`` stages (itself included) will run:
    alone, :func:`ehrlib.threads.choose` measures the machine; beside others, it chooses within
    its share of the cores (``cores // jobs``; one thread on two cores), counting the cores the
    other stages use as theirs, not as busy."""
    from ehrlib import threads as threads_mod

    if threads is not None or at_once <= 1:
        return threads_mod.choose(threads, environ=environ)
    cpus = threads_mod.available_cpus()
    share = max(1, cpus // jobs)
    busy = 0.0 if share == 1 else max(0.0, threads_mod.busy_cores() - (at_once - 1) * share)
    plan = threads_mod.choose(cpus=share, busy=busy, environ=environ)
    if plan.reason.startswith("OMP_NUM_THREADS"):
        return plan
    why = f"{at_once} stages at once on {cpus} cores" + ("" if share == 1 else f", {share} each: {plan.reason}")
    return dataclasses.replace(plan, reason=why)


def run_stage(nb: Path, root: Path, run: Run, params: dict, threads: int | None, force: bool, code: str,
              environ: dict | None = None, at_once: int = 1, jobs: int = 1, record: bool = True) -> StageResult:
    """Execute one notebook unless it is up to date (``at_once``, ``jobs``: see :func:`stage_plan`);
    ``record=False`` leaves recording the result in the manifest to the caller (a cluster job's
    coordinator, :mod:`ehrlib.runner.executors`)."""
    import papermill as pm

    executed = run.path / EXECUTED_DIR / nb.name
    if not force and up_to_date(run, nb, params, code):
        log.info("%-26s up to date: skipped", nb.stem)
        return StageResult(nb.stem, "skipped")
    plan = stage_plan(threads, environ, at_once, jobs)
    log.info("%-26s running (%s)", nb.stem, plan)
    executed.parent.mkdir(parents=True, exist_ok=True)
    tmp = executed.with_name(f".tmp-{executed.name}")
    t0 = time.time()
    result = StageResult(nb.stem, "ok", threads=str(plan))
    try:
        pm.execute_notebook(str(nb), str(tmp), parameters=params, kernel_name="python3",
                            progress_bar=False, log_output=False,
                            kernel_manager_class=kernel_manager_class(plan.env(), cwd=str(root)))
    except Exception as exc:  # papermill's execution error carries the cell and the error
        result.status, result.error = "failed", _failure(exc, nb)
        if INTERRUPTED.is_set():  # its kernel was stopped by Ctrl-C
            result.status, result.error = "interrupted", "stopped by Ctrl-C"
    result.seconds = time.time() - t0
    if tmp.exists():
        show_parameters_once(tmp)
        os.replace(tmp, executed)
    if record:
        record_result(run, nb, result, params, code)
    if result.status == "interrupted":
        log.error("%-26s interrupted after %.1f s", nb.stem, result.seconds)
    elif result.status == "failed":
        log.error("%-26s FAILED after %.1f s: %s", nb.stem, result.seconds, result.error)
    else:
        log.info("%-26s done in %.1f s", nb.stem, result.seconds)
    return result
