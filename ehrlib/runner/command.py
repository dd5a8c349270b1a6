"""``ehrbench reproduce``: execute the stage notebooks into a run, then build the book.

What the command promises (the book's "Reproducing" page, "What the runner does for you") is in
:mod:`ehrlib.runner`; this module holds the command itself and the options the runner owns.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from ehrlib import profiles
from ehrlib.book import notebooks
from ehrlib.errors import RunError, RunInterrupted
from ehrlib.runner.build import build_book, prepare_out
from ehrlib.runner.fingerprints import EXECUTED_DIR, library_hash, record_result
from ehrlib.runner.graph import (default_jobs, recorded_seconds, run_stages, stage_name_problems, stage_needs, stale_needs,
                                 undeclared_reads)
from ehrlib.runner.kernels import INTERRUPTED, StageResult, declared_parameters, run_stage
from ehrlib.runs import ENV_RUNS_DIR, ENV_WRITER, Run, _now, failed_generators, open_run, runs_root
from ehrlib.stages import USER_GENERATORS, number

log = logging.getLogger("ehrbench")

#: Notebook parameters the runner sets from its own options: ``--set`` may not give them.
RUNNER_OWNS = {"run": "--run", "profile": "--profile", "seed": "--seed (or --seeds)", "data": "--data"}
#: Parameters a stage's needs must have run with for the stage to use their outputs.
OWNED_CHECKED = ("profile", "data")


@contextlib.contextmanager
def writing(run: Run):
    """Hold the run's writer lock; the stages' kernels get its token (:data:`ehrlib.runs.ENV_WRITER`)
    and the runs folder and the data folder as absolute paths (:data:`ehrlib.runs.ENV_RUNS_DIR`,
    :data:`ehrlib.data.registry.ENV_DATA_DIR`: a kernel starts in the repository root, which need not
    be this process's folder)."""
    from ehrlib.data.registry import ENV_DATA_DIR, data_dir

    with run.writer() as token:
        values = {ENV_WRITER: token, ENV_RUNS_DIR: str(run.path.parent.resolve()),
                  ENV_DATA_DIR: str(data_dir().resolve())}
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
              jobs: int | None = None, executor: str = "local", cluster: dict | None = None) -> Path:
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
            ``generators`` (``--generator``) names the user generators (stage
            :data:`ehrlib.stages.USER_GENERATORS`), each of which that fails is reported as a failed stage by name.
        book_only: build the book from the run's executed notebooks without executing anything.
        jobs: stages run at once (default :func:`default_jobs`); 1 runs them one after another.
        executor: ``local`` (the stages' kernels on this machine) or ``slurm`` (each stage a job
            submitted through submitit, :mod:`ehrlib.runner.executors`).
        cluster: with ``slurm``, submitit parameters (``--slurm KEY=VALUE``,
            :func:`~ehrlib.runner.executors.parse_options`).

    Returns:
        the folder of the built HTML book (or of the executed notebooks with ``book=False``).

    Raises:
        RunError: a stage failed (after every stage ran and the book was built), ``only``
            matched no notebook, a ``--set`` key no notebook declares, an unsafe ``out``, or a
            notebook whose stage context is not named after its file.
    """
    root = Path(root).resolve()
    from ehrlib.runner import executors

    if executor not in executors.EXECUTORS:
        raise RunError(f"--executor {executor!r}: expected one of {list(executors.EXECUTORS)}")
    from ehrlib.data.registry import resolve_source  # a relative data path names the user's file, whatever root is

    data, settings = resolve_source(data), {k: resolve_source(v) for k, v in (settings or {}).items()}
    if profile not in profiles.NAMES:
        raise RunError(f"--profile {profile!r}: expected one of {profiles.NAMES}")
    out = Path(out or root / "_build").resolve()
    if book:
        prepare_out(out)  # refuse an unsafe --out before any work
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
    declared = {nb: declared_parameters(nb) for nb in selected}
    unknown = set(settings or {}) - {k for d in declared.values() for k in d}
    if unknown:
        raise RunError(f"--set {', '.join(sorted(unknown))}: no selected notebook has such a parameter")
    misnamed = [] if book_only else stage_name_problems(selected)
    if misnamed:  # its record in the manifest would be another stage's: refused before any stage runs
        raise RunError("; ".join(misnamed))
    every_need = stage_needs(notebooks(root))  # through the stages outside --only
    every_params = {nb.stem: {k: v for k, v in given.items() if k in OWNED_CHECKED} for nb in notebooks(root)}
    with writing(run_dir):
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
                if INTERRUPTED.is_set():
                    return StageResult(nb.stem, "not run", error="not started: interrupted by Ctrl-C")
                stale = stale_needs(run_dir, [n for n in every_need[nb.stem] if n not in chosen], every_params)
                if stale:
                    result = StageResult(nb.stem, "failed", error=f"{nb.stem}: {stale}")
                    record_result(run_dir, nb, result, params_of(nb), code)
                    log.error("%-26s REFUSED: %s", nb.stem, stale)
                    return result
                return run_stage(nb, root, run_dir, params_of(nb), threads, force, code, user_env, at_once, jobs)

            t0 = time.time()
            try:
                if executor == "slurm":
                    results = executors.run_jobs(
                        root, run_dir, selected, params_of, code, profile=profile, options=cluster or {},
                        threads=threads, force=force, jobs=jobs,
                        stale_of=lambda nb: stale_needs(run_dir, [n for n in every_need[nb.stem] if n not in chosen],
                                                        every_params))
                else:
                    # longest remaining chain first, by the stage times this run's manifest recorded
                    results = run_stages(selected, run_one, jobs, seconds=recorded_seconds(run_dir))
            except RunInterrupted as exc:
                for nb, r in zip(selected, exc.results):  # recorded here unless run_stage recorded it
                    if r.status == "not run" or r.extra.get("unrecorded"):
                        record_result(run_dir, nb, r, params_of(nb), code)
                raise
            wall = time.time() - t0
            for nb, r in zip(selected, results):  # a failed need may have rewritten their inputs: not reusable
                if r.status == "not run":
                    record_result(run_dir, nb, r, params_of(nb), code)
            executed = sum(r.status in ("ok", "failed") for r in results)
            run_dir.update_manifest(lambda m: m.__setitem__("runner", {
                "jobs": jobs, "wall_seconds": round(wall, 1), "executed": executed,
                "skipped": sum(r.status == "skipped" for r in results), "finished": _now()}))
            if any(nb.stem == USER_GENERATORS for nb in selected):  # a failed user generator is a failed stage, by name
                results += [StageResult(f"{USER_GENERATORS}: {name}", "failed", error=f"{name}: {reason}")
                            for name, reason in failed_generators(run_dir.manifest(), stages=(USER_GENERATORS,)).items()]
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
                            run_dir.name, ", ".join(stale), " ".join(number(n) for n in stale))
        target = run_dir.path / EXECUTED_DIR
        if book:
            target = build_book(root, run_dir, out)
            log.info("book: %s", target / "index.html")
            if executor == "slurm":
                executors.note_book(run_dir, target)
        if failed:
            raise RunError(f"{len(failed)} stage(s) failed: " + "; ".join(r.error for r in failed))
        return target
