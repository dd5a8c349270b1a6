"""``ehrbench reproduce``: execute the stage notebooks into a run, then build the book.

* Each notebook runs in a fresh kernel (papermill) with a thread plan chosen just before it
  starts (:mod:`ehrlib.threads`), with only the parameters it declares.
* Stages run as soon as the stages they need are done, up to ``jobs`` at a time
  (:func:`default_jobs`); a notebook names what it needs in its metadata (:data:`NEEDS_KEY`),
  and one that names nothing waits for every notebook before it.
* A stage is skipped when its notebook, the library code, its parameters and the files it read
  and wrote are unchanged since it last succeeded (fingerprints in the run manifest); its
  executed copy from that run is reused for the book.
* A failing stage is recorded (notebook, cell, error); the stages that need it are not run, the
  others still run, and the command ends with a non-zero exit code; the stages before it stay
  reusable.
* The build folder is only ever cleared when it carries the runner's marker file.
* One ``reproduce`` at a time writes a run folder (:meth:`ehrlib.runs.Run.writer`); a second one
  on the same run is refused, naming the first (process, host, start).
* The keys the runner sets itself (:data:`RUNNER_OWNS`) cannot be given with ``--set``.
* A selected stage whose needs (followed through the stages outside ``--only``) are out of date
  (:func:`stale_needs`: a file they read or wrote changed or is gone, their last run did not
  succeed, or they ran with another profile or data source) is refused, never run on them.
* Ctrl-C stops the running kernels at once; their stages are recorded as ``interrupted`` and the
  command ends with :class:`~ehrlib.errors.RunInterrupted` (one line on the console).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from ehrlib.book import notebooks
from ehrlib.errors import RunError, RunInterrupted
from ehrlib.runs import Run, _now, failed_generators, open_run, runs_root

log = logging.getLogger("ehrbench")

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "_static")
#: Written into every build folder the runner creates; only such folders are ever cleared.
MARKER = ".ehrbench-build"
EXECUTED_DIR = "executed"
#: The stage that fits the user's own generators (``--generator``; :mod:`ehrlib.models.user`).
USER_STAGE = "17_user_generators"
#: Files above this size are fingerprinted by size and modification time instead of content.
HASH_LIMIT = 64 << 20


#: Notebook metadata key: ``{"ehrbench": {"needs": ["00_data", ...]}}`` names the stages whose
#: outputs the notebook reads.
NEEDS_KEY = "ehrbench"


def _declared_needs(nb: Path, earlier: list[str]) -> list[str]:
    """The stages notebook ``nb`` names in its metadata, or ``earlier`` when it names none."""
    meta = json.loads(nb.read_text()).get("metadata", {}).get(NEEDS_KEY, {})
    if "needs" not in meta:
        return list(earlier)
    needs = meta["needs"]
    bad = [n for n in needs if not isinstance(n, str) or n not in earlier] if isinstance(needs, list) else [needs]
    if bad:
        raise RunError(f"{nb}: metadata {NEEDS_KEY}.needs has {bad[0]!r}; expected a list of the names of "
                       f"earlier notebooks (e.g. '00_data')")
    return list(needs)


def stage_needs(selected: list[Path]) -> dict[str, list[str]]:
    """The selected stages each selected notebook waits for: those it names in its metadata
    (every notebook before it when it names none), followed through the stages that are not
    selected (``--only 00 30`` makes 30 wait for 00, through 20 and the training stages).

    Raises:
        RunError: a ``needs`` entry is not a list of names of earlier notebooks.
    """
    if not selected:
        return {}
    every = notebooks(selected[0].parent.parent)
    order = [nb.stem for nb in every]
    direct = {nb.stem: _declared_needs(nb, order[:i]) for i, nb in enumerate(every)}
    chosen = {nb.stem for nb in selected}
    out = {}
    for nb in selected:
        seen, todo = set(), list(direct.get(nb.stem, []))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(direct.get(n, []))
        out[nb.stem] = [n for n in order if n in seen and n in chosen]
    return out


def undeclared_reads(run: Run, selected: list[Path]) -> list[str]:
    """Files a stage read that a stage it does not need (directly or through its needs) wrote,
    from the run manifest: each is a missing ``needs`` entry, which could let the stage run
    before its input exists."""
    if not selected:
        return []
    needs = stage_needs(notebooks(selected[0].parent.parent))  # every notebook's, not just --only's
    stages = run.manifest().get("stages", {})
    writer = {rel: name for name, entry in stages.items() for rel in entry.get("outputs", [])}

    problems = []
    for nb in selected:
        allowed = set(needs[nb.stem]) | {nb.stem}  # needs are transitive
        for rel in stages.get(nb.stem, {}).get("inputs", []):
            w = writer.get(rel)
            if w is not None and w not in allowed:
                problems.append(f"{nb.stem} read {rel}, written by {w}, which it does not need: add {w!r} to "
                                f"{nb.name}'s metadata {NEEDS_KEY}.needs")
    return problems


def default_jobs() -> int:
    """Stages run at once: one when a GPU is visible (training stages would share it), else
    every core up to 4 (each stage then gets its share of the cores)."""
    from ehrlib import threads

    if shutil.which("nvidia-smi") is not None:
        return 1
    return max(1, min(4, threads.available_cpus()))


# ---------------------------------------------------------------------------- fingerprints
def _file_print(path: Path) -> str:
    st = path.stat()
    if st.st_size > HASH_LIMIT:
        return f"size={st.st_size},mtime={st.st_mtime_ns}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: Path) -> str | None:
    """Content fingerprint of a file or a folder (all its files); ``None`` when it is missing."""
    path = Path(path)
    if path.is_file():
        return _file_print(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file() and not q.name.startswith(".")):
            h.update(str(p.relative_to(path)).encode())
            h.update(_file_print(p).encode())
        return h.hexdigest()
    return None


def notebook_source_hash(nb: Path) -> str:
    """sha256 of a notebook's cell sources (outputs and metadata ignored)."""
    cells = json.loads(Path(nb).read_text())["cells"]
    return hashlib.sha256(json.dumps([(c["cell_type"], "".join(c["source"])) for c in cells]).encode()).hexdigest()


def library_hash() -> str:
    """sha256 of the installed ``ehrlib`` package's files (code and package data)."""
    import ehrlib

    pkg = Path(ehrlib.__file__).parent
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            h.update(str(p.relative_to(pkg)).encode())
            h.update(_file_print(p).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------- one stage
@dataclass
class StageResult:
    name: str
    status: str  # ok | skipped | failed | not run | interrupted
    seconds: float = 0.0
    threads: str = ""
    error: str = ""
    extra: dict = field(default_factory=dict)


def _declared(nb: Path) -> dict:
    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.WARNING)
    return pm.inspect_notebook(str(nb))


def up_to_date(run: Run, nb: Path, params: dict, code: str) -> bool:
    """Whether stage ``nb`` succeeded before with the same notebook, code and parameters, and
    every file it read or wrote is as it left them."""
    entry = run.manifest().get("stages", {}).get(nb.stem, {})
    done = entry.get("runner", {})
    if done.get("status") != "ok" or done.get("params") != params or done.get("code") != code:
        return False
    if done.get("notebook") != notebook_source_hash(nb) or not (run.path / EXECUTED_DIR / nb.name).is_file():
        return False
    prints = done.get("files", {})
    if not prints:
        return False
    return all(fingerprint(run.path / rel) == fp for rel, fp in prints.items())


def _record_result(run: Run, nb: Path, result: StageResult, params: dict, code: str) -> None:
    def change(m):
        entry = m.setdefault("stages", {}).setdefault(nb.stem, {})
        files = {}
        if result.status == "ok":
            for rel in sorted(set(entry.get("inputs", [])) | set(entry.get("outputs", []))):
                files[rel] = fingerprint(run.path / rel)
        entry["runner"] = {"status": result.status, "seconds": round(result.seconds, 1), "threads": result.threads,
                           "error": result.error, "params": params, "code": code,
                           "notebook": notebook_source_hash(nb), "files": files, "finished": _now()}
    run.update_manifest(change)


def _failure(exc: Exception, nb: Path) -> str:
    cell = getattr(exc, "exec_count", None) or getattr(exc, "cell_index", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    where = f"{nb.name}, cell {cell}" if cell is not None else nb.name
    return f"{where}: {ename}: {str(evalue).splitlines()[0] if str(evalue) else ''}"


def show_parameters_once(path: Path) -> None:
    """In an executed notebook, write the values papermill injected into the parameters cell
    (keeping each parameter's comment) and drop the injected cell: the page shows the parameters
    that were used, once."""
    import re

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
#: Set by Ctrl-C during :func:`run_stages`: no stage starts, running ones count as interrupted.
_INTERRUPTED = threading.Event()


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


def _kernel_manager_class(env: dict | None = None, cwd: str | None = None):
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
              environ: dict | None = None, at_once: int = 1, jobs: int = 1) -> StageResult:
    """Execute one notebook unless it is up to date (``at_once``, ``jobs``: see :func:`stage_plan`)."""
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
                            kernel_manager_class=_kernel_manager_class(plan.env(), cwd=str(root)))
    except Exception as exc:  # papermill's execution error carries the cell and the error
        result.status, result.error = "failed", _failure(exc, nb)
        if _INTERRUPTED.is_set():  # its kernel was stopped by Ctrl-C
            result.status, result.error = "interrupted", "stopped by Ctrl-C"
    result.seconds = time.time() - t0
    if tmp.exists():
        show_parameters_once(tmp)
        os.replace(tmp, executed)
    _record_result(run, nb, result, params, code)
    if result.status == "interrupted":
        log.error("%-26s interrupted after %.1f s", nb.stem, result.seconds)
    elif result.status == "failed":
        log.error("%-26s FAILED after %.1f s: %s", nb.stem, result.seconds, result.error)
    else:
        log.info("%-26s done in %.1f s", nb.stem, result.seconds)
    return result


# ---------------------------------------------------------------------------- build folder
def _prepare_out(out: Path) -> None:
    """Create the build folder, or check that an existing one is the runner's own."""
    from ehrlib.io import blocking_file

    if blocking_file(out) is not None:
        raise RunError(f"--out {out}: cannot be made: {blocking_file(out)} is a file, not a folder")
    if out.exists():
        if not out.is_dir():
            raise RunError(f"--out {out}: exists and is not a folder")
        owned = (out / MARKER).is_file()
        ours = [n for n in ("src", "html", "book") if (out / n).exists()]
        if ours and not owned:
            raise RunError(f"--out {out}: holds {', '.join(ours)} but no {MARKER} marker, so it was not made by "
                           "ehrbench; refusing to replace them. Choose an empty or new folder.")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by ehrbench reproduce; its src/, book/ and html/ are rebuilt on every run\n")


def stamp_colab_cells(root: Path, folder: Path) -> str:
    """Render the Colab install cell of every notebook in ``folder`` (the book's copies) with the
    commit the book is built from, or with ``repository.branch`` when the tree has uncommitted
    changes or is no git checkout (said in one log line). Returns the ref."""
    from ehrlib import colab

    url, _ = colab.repository(root)
    ref, why_not = colab.book_ref(root)
    if why_not:
        log.warning("Colab install cells on the pages name branch %r, not a commit: %s", ref, why_not)
    else:
        log.info("Colab install cells on the pages name commit %s", ref)
    for nb in sorted(Path(folder).glob("*.ipynb")):
        colab.write_install_cell(nb, url, ref)
    return ref


def build_book(root: Path, run: Run, out: Path) -> Path:
    """Copy the book pages and the run's executed notebooks into ``<out>/src`` (their Colab install
    cells naming the commit built from, :func:`stamp_colab_cells`) and build the HTML (Jupyter
    Book 1.x, warnings as errors) into ``<out>/html``."""
    _prepare_out(out)
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    for name in BOOK_SOURCES:
        p = root / name
        if p.is_dir():
            shutil.copytree(p, src / name)
        elif p.is_file():
            shutil.copy2(p, src / name)
    from ehrlib.report import results_page

    results_page(run, src)
    missing = []
    for nb in notebooks(root):
        executed = run.path / EXECUTED_DIR / nb.name
        if executed.is_file():
            shutil.copy2(executed, src / "notebooks" / nb.name)
        else:
            missing.append(nb.stem)
            shutil.copy2(nb, src / "notebooks" / nb.name)
    if missing:
        log.warning("not executed in run %r (shown without outputs): %s", run.name, ", ".join(missing))
    stamp_colab_cells(root, src / "notebooks")
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(src), "--path-output", str(out / "book"), "-W", "-n",
           "--keep-going", "-q"]
    log.info("building the book")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunError(f"the book build failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.copytree(out / "book" / "_build" / "html", html)
    return html


# ---------------------------------------------------------------------------- the command
#: Notebook parameters the runner sets from its own options: ``--set`` may not give them.
RUNNER_OWNS = {"run": "--run", "profile": "--profile", "seed": "--seed (or --seeds)", "data": "--data"}
#: Parameters a stage's needs must have run with for the stage to use their outputs.
OWNED_CHECKED = ("profile", "data")


@contextlib.contextmanager
def _writing(run: Run):
    """Hold the run's writer lock; the stages' kernels get its token (:data:`ehrlib.runs.ENV_WRITER`)
    and the runs folder as an absolute path (:data:`ehrlib.runs.ENV_RUNS_DIR`: a kernel starts in the
    repository root, which need not be this process's folder)."""
    from ehrlib.runs import ENV_RUNS_DIR, ENV_WRITER

    with run.writer() as token:
        values = {ENV_WRITER: token, ENV_RUNS_DIR: str(run.path.parent.resolve())}
        before = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def stale_needs(run: Run, needs: list[str], params: dict[str, dict]) -> str:
    """Why the outputs of stages ``needs`` (not run by this command) cannot be used, or ``""``.

    A need that never ran is no reason (its outputs are missing, and the stage reading them says
    so). A need is out of date when its last run did not succeed, when a file it read or wrote
    (fingerprints in the manifest) changed or is gone since, or when it ran with another
    ``profile``/``data`` than ``params[need]`` gives now.
    """
    stages = run.manifest().get("stages", {})
    for need in needs:
        entry = stages.get(need)
        if not entry:
            continue
        done = entry.get("runner")
        prefix = need.split("_")[0]
        fix = f"run it again (add {prefix} to --only, or run without --only)"
        if done is None:
            return f"needs {need}, which was not run by ehrbench reproduce (no record of its files); {fix}"
        if done.get("status") != "ok":
            how = {"failed": "failed", "interrupted": "was interrupted",
                   "not run": "did not happen (a stage it needs failed)"}.get(done.get("status"), f"is {done.get('status')!r}")
            return f"needs {need}, whose last run {how}, so its outputs are incomplete or missing; {fix}"
        for k, v in params.get(need, {}).items():
            if k in done.get("params", {}) and done["params"][k] != v:
                return f"needs {need}, which ran with {k}={done['params'][k]!r}, not {v!r}; {fix}"
        for rel, fp in done.get("files", {}).items():
            now = fingerprint(run.path / rel)
            if now != fp:
                what = "is missing" if now is None else "changed"
                role = "output" if rel in entry.get("outputs", []) else "input"
                return f"needs {need}, which is out of date: its {role} {rel} {what} since it ran; {fix}"
    return ""


def run_stages(selected: list[Path], run_one, jobs: int) -> list[StageResult]:
    """Run every stage once the stages it needs (:func:`stage_needs`) are done, up to ``jobs`` at a
    time, in notebook order among the ready ones. ``run_one(nb, at_once)`` runs one stage. A stage
    whose need failed is not run. Results come back in notebook order.

    Ctrl-C (``KeyboardInterrupt``) stops the running kernels at once (:func:`stop_kernels`), waits
    for their stages to record themselves (``interrupted``), marks the stages not started as
    ``not run`` and raises :class:`~ehrlib.errors.RunInterrupted` carrying every result.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    needs = stage_needs(selected)
    pending = list(selected)
    results: dict[str, StageResult] = {}
    running: dict = {}
    _INTERRUPTED.clear()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        while pending or running:
            for nb in list(pending):  # needs are transitive: a failed one is among them, first in order
                lost = [n for n in needs[nb.stem] if n in results and results[n].status == "failed"]
                if lost:
                    pending.remove(nb)
                    results[nb.stem] = StageResult(nb.stem, "not run", error=f"needs {lost[0]}, which failed")
                    log.error("%-26s not run: %s", nb.stem, results[nb.stem].error)
            ready = [nb for nb in pending if all(n in results for n in needs[nb.stem])]
            for nb in ready[:max(0, jobs - len(running))]:
                pending.remove(nb)
                ready.remove(nb)
                # stages at work while this one starts: those running, itself, the others ready now
                at_once = min(jobs, len(running) + 1 + len(ready))
                running[pool.submit(run_one, nb, at_once)] = nb
            if not running:
                continue
            # with a timeout: a Ctrl-C that the OS hands to a worker thread still reaches this one
            finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                nb = running.pop(fut)
                results[nb.stem] = fut.result()
    except KeyboardInterrupt:
        _INTERRUPTED.set()
        logging.getLogger("papermill").setLevel(logging.CRITICAL)  # not "Kernel died ..." for each stopped one
        deadline = time.time() + 60
        while running and time.time() < deadline:  # a kernel may be starting while we stop the others
            stop_kernels()
            finished, _ = wait(running, timeout=1.0)
            for fut in finished:
                nb = running.pop(fut)
                results[nb.stem] = fut.result() if not fut.exception() else StageResult(
                    nb.stem, "interrupted", error="stopped by Ctrl-C", extra={"unrecorded": True})
        for nb in running.values():
            results[nb.stem] = StageResult(nb.stem, "interrupted", error="stopped by Ctrl-C", extra={"unrecorded": True})
        for nb in pending:
            results[nb.stem] = StageResult(nb.stem, "not run", error="not started: interrupted by Ctrl-C")
        pool.shutdown(wait=False, cancel_futures=True)
        done = [results[nb.stem] for nb in selected]
        stopped = [r.name for r in done if r.status == "interrupted"]
        raise RunInterrupted("interrupted (Ctrl-C): " + (f"stopped {', '.join(stopped)}" if stopped else "no stage was running")
                             + f"; {len(pending)} stage(s) not started; finished stages are kept (run the command "
                             "again to go on)", results=done) from None
    finally:
        _INTERRUPTED.clear()
    pool.shutdown(wait=True)
    return [results[nb.stem] for nb in selected]


def summary_table(results: list[StageResult], wall: float | None = None) -> str:
    """Per-stage status, seconds and threads (or error), the sum of the stages' seconds and, when
    stages ran at once, the wall-clock time of the whole."""
    lines = [f"{'stage':<26} {'status':<8} {'seconds':>8}  threads / error"]
    for r in results:
        note = r.error or r.threads
        lines.append(f"{r.name:<26} {r.status:<8} {r.seconds:>8.1f}  {note}")
    total = sum(r.seconds for r in results)
    lines.append(f"{'total':<26} {'':<8} {total:>8.1f}")
    if wall is not None:
        lines.append(f"{'wall clock':<26} {'':<8} {wall:>8.1f}  (stages ran side by side)")
    return "\n".join(lines)


def reproduce(root: Path, profile: str = "demo", data: str = "simulated", run: str | None = None, seed: int = 0,
              out: Path | None = None, book: bool = True, only: list[str] | None = None, *, threads: int | None = None,
              force: bool = False, settings: dict | None = None, book_only: bool = False,
              jobs: int | None = None) -> Path:
    """Execute every stage notebook into run ``run`` (default: the profile's name), then build the book.

    Args:
        root: the repository root (holds ``notebooks/`` and ``_config.yml``).
        profile, data, seed: the run's profile, data source and seed (notebook parameters).
        out: the build folder (default ``<root>/_build``); never cleared unless the runner made it.
        book: build the HTML book after the stages.
        only: notebook name prefixes to run (others are neither run nor skipped).
        threads: thread count for every stage (default: chosen per stage, see :mod:`ehrlib.threads`).
        force: run every selected stage even when it is up to date.
        settings: extra notebook parameters (``--set key=value``), passed to the notebooks declaring them;
            ``generators`` (``--generator``) names the user generators of stage ``17_user_generators``,
            each of which that fails is reported as a failed stage by name.
        book_only: build the book from the run's executed notebooks without executing anything.
        jobs: stages run at once (default :func:`default_jobs`); 1 runs them one after another.

    Returns:
        the folder of the built HTML book (or of the executed notebooks with ``book=False``).

    Raises:
        RunError: a stage failed (after every stage ran and the book was built), ``only``
            matched no notebook, a ``--set`` key no notebook declares, or an unsafe ``out``.
    """
    from ehrlib import profiles

    root = Path(root).resolve()
    if profile not in profiles.NAMES:
        raise RunError(f"--profile {profile!r}: expected one of {profiles.NAMES}")
    out = Path(out or root / "_build").resolve()
    if book:
        _prepare_out(out)  # refuse an unsafe --out before any work
    run_dir = open_run(run or profile, root=runs_root().resolve())  # ./runs of this folder, not of --root
    selected = notebooks(root)
    if not selected:
        raise RunError(f"{root} has no notebooks/NN_*.ipynb: run from the repository root or pass --root")
    if only:
        selected = [nb for nb in selected if any(nb.stem.startswith(o) for o in only)]
        if not selected:
            raise RunError(f"--only {' '.join(only)}: matches no notebook; expected prefixes of "
                           f"{', '.join(nb.stem for nb in notebooks(root))}")
    owned = sorted(set(settings or {}) & set(RUNNER_OWNS))
    if owned:
        k = owned[0]
        raise RunError(f"--set {k}={(settings or {})[k]!r}: the runner sets {k!r} itself; use {RUNNER_OWNS[k]}")
    given = {"data": data, "profile": profile, "run": run_dir.name, "seed": seed, **(settings or {})}
    declared = {nb: _declared(nb) for nb in selected}
    unknown = set(settings or {}) - {k for d in declared.values() for k in d}
    if unknown:
        raise RunError(f"--set {', '.join(sorted(unknown))}: no selected notebook has such a parameter")
    every_need = stage_needs(notebooks(root))  # through the stages outside --only
    every_params = {nb.stem: {k: v for k, v in given.items() if k in OWNED_CHECKED} for nb in notebooks(root)}
    with _writing(run_dir):
        results: list[StageResult] = []
        if not book_only:
            code = library_hash()
            user_env = dict(os.environ)  # the user's own thread settings, before any stage changes them
            os.environ.setdefault("TQDM_DISABLE", "1")  # no progress-bar lines in the book's pages
            jobs = default_jobs() if jobs is None else jobs
            if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
                raise RunError(f"--jobs {jobs!r}: expected a positive integer")

            def params_of(nb: Path) -> dict:
                return {k: v for k, v in given.items() if k in declared[nb]}

            chosen = {nb.stem for nb in selected}

            def run_one(nb: Path, at_once: int) -> StageResult:
                if _INTERRUPTED.is_set():
                    return StageResult(nb.stem, "not run", error="not started: interrupted by Ctrl-C")
                stale = stale_needs(run_dir, [n for n in every_need[nb.stem] if n not in chosen], every_params)
                if stale:
                    result = StageResult(nb.stem, "failed", error=f"{nb.stem}: {stale}")
                    _record_result(run_dir, nb, result, params_of(nb), code)
                    log.error("%-26s REFUSED: %s", nb.stem, stale)
                    return result
                return run_stage(nb, root, run_dir, params_of(nb), threads, force, code, user_env, at_once, jobs)

            t0 = time.time()
            try:
                results = run_stages(selected, run_one, jobs)
            except RunInterrupted as exc:
                for nb, r in zip(selected, exc.results):  # recorded here unless run_stage recorded it
                    if r.status == "not run" or r.extra.get("unrecorded"):
                        _record_result(run_dir, nb, r, params_of(nb), code)
                raise
            wall = time.time() - t0
            for nb, r in zip(selected, results):  # a failed need may have rewritten their inputs: not reusable
                if r.status == "not run":
                    _record_result(run_dir, nb, r, params_of(nb), code)
            executed = sum(r.status in ("ok", "failed") for r in results)
            run_dir.update_manifest(lambda m: m.__setitem__("runner", {
                "jobs": jobs, "wall_seconds": round(wall, 1), "executed": executed,
                "skipped": sum(r.status == "skipped" for r in results), "finished": _now()}))
            if any(nb.stem == USER_STAGE for nb in selected):  # a failed user generator is a failed stage, by name
                results += [StageResult(f"{USER_STAGE}: {name}", "failed", error=f"{name}: {reason}")
                            for name, reason in failed_generators(run_dir.manifest(), stages=(USER_STAGE,)).items()]
            for problem in undeclared_reads(run_dir, selected):
                log.warning("needs: %s", problem)
            log.info("\n%s", summary_table(results, wall if jobs > 1 else None))
            log.info("run folder: %s", run_dir.path)
        failed = [r for r in results if r.status == "failed"]
        if only or book_only:  # stages this command did not run may now disagree with those it ran
            ran = {r.name for r in results}
            recorded = {k for k, v in run_dir.manifest().get("stages", {}).items() if "runner" in v}
            stale = [nb.stem for nb in notebooks(root) if nb.stem in recorded and nb.stem not in ran
                     and stale_needs(run_dir, [nb.stem, *every_need[nb.stem]], every_params)]
            if stale:
                log.warning("out of date in run %r (their inputs changed since they ran, or a stage they need did not "
                            "succeed; the book shows their earlier outputs): %s; run them again (--only %s)",
                            run_dir.name, ", ".join(stale), " ".join(n.split("_")[0] for n in stale))
        target = run_dir.path / EXECUTED_DIR
        if book:
            target = build_book(root, run_dir, out)
            log.info("book: %s", target / "index.html")
        if failed:
            raise RunError(f"{len(failed)} stage(s) failed: " + "; ".join(r.error for r in failed))
        return target


# ---------------------------------------------------------------------------- sweeps
def seeds_table1(runs_by_seed: dict[int, Run]):
    """Table 1 across the runs of a seed sweep: per model and metric, the mean and standard
    deviation of the estimate over seeds, beside the mean width of the within-run intervals."""
    import pandas as pd

    from ehrlib import book

    frames = []
    for seed, run in runs_by_seed.items():
        path = run.path / book.TABLES_DIR / "table1_tidy.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(seed=seed))
    if not frames:
        raise RunError("no run of the sweep has Table 1 (stage 33_table1)")
    df = pd.concat(frames, ignore_index=True)
    df["ci_width"] = df["ci_high"] - df["ci_low"]
    out = (df.groupby(["model", "family", "metric"])
             .agg(mean=("estimate", "mean"), sd_across_seeds=("estimate", "std"), seeds=("seed", "nunique"),
                  mean_ci_width_within_run=("ci_width", "mean"))
             .reset_index())
    return out


def sweep(root: Path, seeds: list[int], profile: str = "demo", run: str | None = None, out: Path | None = None,
          book: bool = True, **kwargs) -> Path:
    """Run the pipeline once per seed into ``<run>-seed<N>`` folders, aggregate Table 1 across
    them (``table1_seeds``, saved in the first seed's run), and build the book from that run."""
    from ehrlib import book as book_mod

    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise RunError(f"--seeds {seeds}: expected distinct non-negative integers")
    base = run or profile
    runs_by_seed, errors = {}, []
    for seed in seeds:
        name = f"{base}-seed{seed}"
        try:
            reproduce(root, profile=profile, run=name, seed=seed, book=False, **kwargs)
        except RunInterrupted:  # Ctrl-C ends the sweep, not just this seed
            raise
        except RunError as exc:
            errors.append(f"seed {seed}: {exc}")
        runs_by_seed[seed] = open_run(name)
    first = runs_by_seed[seeds[0]]
    table = seeds_table1(runs_by_seed)
    with _writing(first):  # the first seed's run gets the aggregate: one writer, as for its stages
        book_mod.save_table(table, "table1_seeds", first)
        log.info("Table 1 across seeds %s: %s", seeds, first.path / book_mod.TABLES_DIR / "table1_seeds.csv")
        target = build_book(Path(root).resolve(), first, Path(out or Path(root) / "_build").resolve()) if book else first.path
    if errors:
        raise RunError("; ".join(errors))
    return target
