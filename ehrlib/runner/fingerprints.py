"""Whether a stage is up to date: fingerprints of what it read and wrote, of its notebook and of
the library, recorded in the run manifest when it ends and compared before it runs again.

A stage is skipped when its notebook's cells, the library code, its parameters and every file it
read or wrote are as they were when it last succeeded (the book's "Reproducing" page, "What the
runner does for you").
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ehrlib.runs import Run, _now

#: The run's folder of executed notebooks (the book's pages are built from them).
EXECUTED_DIR = "executed"
#: Files above this size are fingerprinted by size and modification time instead of content.
HASH_LIMIT = 64 << 20


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


def record_result(run: Run, nb: Path, result, params: dict, code: str) -> None:
    """Record how stage ``nb`` ended (a :class:`~ehrlib.runner.kernels.StageResult`) in the run
    manifest; after a success, with the fingerprints of every file it read or wrote, which
    :func:`up_to_date` compares next time."""
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
