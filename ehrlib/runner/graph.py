"""The stage graph: which stages each stage needs, whether their outputs can be used, and the
schedule that starts every stage once the stages it needs are done, several at a time.

A notebook names the stages whose outputs it reads in its metadata (:data:`NEEDS_KEY`); one that
names nothing waits for every notebook before it. Each notebook opens the stage context of its
own name (:func:`stage_name_problems`), so the run manifest's record of a stage is the record of
that notebook.
"""
from __future__ import annotations

import ast
import json
import logging
import shutil
import time
from pathlib import Path

from ehrlib import stages as stage_names
from ehrlib.book import notebooks
from ehrlib.errors import RunInterrupted
from ehrlib.runner.fingerprints import fingerprint
from ehrlib.runner.kernels import INTERRUPTED, StageResult, stop_kernels
from ehrlib.runner.needs import NEEDS_KEY, stage_needs  # noqa: F401 - part of this module's API
from ehrlib.runs import Run

log = logging.getLogger("ehrbench")

def opened_stages(nb: Path) -> list[str | None]:
    """The name each ``runs.stage(...)`` call of notebook ``nb`` opens: a string, or a constant of
    :mod:`ehrlib.stages` (``stages.TABLE1``); ``None`` for a name it gives any other way."""
    names = []
    for cell in json.loads(Path(nb).read_text()).get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse("".join(cell.get("source", [])))
        except SyntaxError:  # IPython magics: not a cell that opens a stage
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "stage"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "runs"):
                continue
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.append(arg.value)
            elif (isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id == "stages"
                  and isinstance(getattr(stage_names, arg.attr, None), str)):
                names.append(getattr(stage_names, arg.attr))
            else:
                names.append(None)
    return names


def stage_name_problems(selected: list[Path]) -> list[str]:
    """Each selected notebook whose stage context is not its own name (a renamed or copied
    notebook would read and write another stage's record and defeat its up-to-date check)."""
    problems = []
    for nb in selected:
        for name in opened_stages(nb):
            if name is None:
                problems.append(f"{nb.name} opens a stage whose name the runner cannot read: write runs.stage("
                                f"stages.NAME, ...) with a constant of ehrlib.stages, or the name {nb.stem!r}")
            elif name != nb.stem:
                problems.append(f"{nb.name} opens stage {name!r}, not its own name {nb.stem!r}: a notebook opens the "
                                f"stage named after its file (rename the file, or add its name to ehrlib.stages)")
    return problems


def undeclared_reads(run: Run, selected: list[Path]) -> list[str]:
    """Files a stage read that a stage it does not need (directly or through its needs) wrote,
    from the run manifest: each is a missing ``needs`` entry, which could let the stage run
    before its input exists."""
    if not selected:
        return []
    needs = stage_needs(notebooks(selected[0].parent.parent))  # every notebook's, not just --only's
    entries = run.manifest().get("stages", {})
    writer = {rel: name for name, entry in entries.items() for rel in entry.get("outputs", [])}

    problems = []
    for nb in selected:
        allowed = set(needs[nb.stem]) | {nb.stem}  # needs are transitive
        for rel in entries.get(nb.stem, {}).get("inputs", []):
            w = writer.get(rel)
            if w is not None and w not in allowed:
                problems.append(f"{nb.stem} read {rel}, written by {w}, which it does not need: add {w!r} to "
                                f"{nb.name}'s metadata {NEEDS_KEY}.needs")
    return problems


def stale_needs(run: Run, needs: list[str], params: dict[str, dict]) -> str:
    """Why the outputs of stages ``needs`` (not run by this command) cannot be used, or ``""``.

    A need that never ran is no reason (its outputs are missing, and the stage reading them says
    so). A need is out of date when its last run did not succeed, when a file it read or wrote
    (fingerprints in the manifest) changed or is gone since, or when it ran with another
    ``profile``/``data`` than ``params[need]`` gives now.
    """
    entries = run.manifest().get("stages", {})
    for need in needs:
        entry = entries.get(need)
        if not entry:
            continue
        done = entry.get("runner")
        fix = f"run it again (add {stage_names.number(need)} to --only, or run without --only)"
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


def default_jobs() -> int:
    """Stages run at once: one when a GPU is visible (training stages would share it), else
    every core up to 4 (each stage then gets its share of the cores)."""
    from ehrlib import threads

    if shutil.which("nvidia-smi") is not None:
        return 1
    return max(1, min(4, threads.available_cpus()))


def recorded_seconds(run: Run, names=None) -> dict[str, float]:
    """Each stage's wall-clock seconds at its last successful run, from the run manifest
    (``stages.<name>.runner.seconds`` of the entries whose status is ``ok``); ``names``: only those."""
    out = {}
    for name, entry in run.manifest().get("stages", {}).items():
        done = entry.get("runner") or {}
        if done.get("status") == "ok" and isinstance(done.get("seconds"), (int, float)) and (names is None or name in names):
            out[name] = float(done["seconds"])
    return out


def critical_path(needs: dict[str, list[str]], seconds: dict[str, float] | None = None) -> dict[str, float]:
    """Each stage's longest remaining chain: its own seconds plus the longest chain among the stages
    that need it (directly or through others), so the stage that starts the longest path to the end
    of the run ranks first.

    ``seconds`` gives the stages' durations (:func:`recorded_seconds` of earlier runs); a stage it
    lacks counts as the mean of the given ones (1 when none is given), so without records the rank
    is the number of stages on the longest chain below it.
    """
    seconds = dict(seconds or {})
    known = [v for k, v in seconds.items() if k in needs]
    default = sum(known) / len(known) if known else 1.0
    users: dict[str, list[str]] = {name: [] for name in needs}
    for name, its in needs.items():
        for n in its:
            users.setdefault(n, []).append(name)
    rank: dict[str, float] = {}
    for name in reversed(list(needs)):  # needs point to earlier notebooks: users are ranked first
        below = [rank[u] for u in users.get(name, []) if u in rank]
        rank[name] = max(0.0, float(seconds.get(name, default))) + max(below, default=0.0)
    return rank


def run_stages(selected: list[Path], run_one, jobs: int, seconds: dict[str, float] | None = None) -> list[StageResult]:
    """Run every stage once the stages it needs (:func:`stage_needs`) are done, up to ``jobs`` at a
    time. ``run_one(nb, at_once)`` runs one stage. A stage whose need failed is not run. Results
    come back in notebook order.

    Among the ready stages, those with the longest remaining chain (:func:`critical_path` of
    ``seconds``, e.g. :func:`recorded_seconds` of the run's earlier runs) start first, ties in
    notebook order; with ``seconds=None`` the ready stages start in notebook order.

    Ctrl-C (``KeyboardInterrupt``) stops the running kernels at once
    (:func:`~ehrlib.runner.kernels.stop_kernels`), waits for their stages to record themselves
    (``interrupted``), marks the stages not started as ``not run`` and raises
    :class:`~ehrlib.errors.RunInterrupted` carrying every result.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    needs = stage_needs(selected)
    pending = list(selected)
    if seconds is not None:
        rank = critical_path(needs, seconds)
        position = {nb.stem: i for i, nb in enumerate(selected)}
        pending.sort(key=lambda nb: (-rank[nb.stem], position[nb.stem]))
    results: dict[str, StageResult] = {}
    running: dict = {}
    INTERRUPTED.clear()
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
        INTERRUPTED.set()
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
        INTERRUPTED.clear()
    pool.shutdown(wait=True)
    return [results[nb.stem] for nb in selected]
