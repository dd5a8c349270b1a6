"""Whether a stage is up to date: fingerprints of what it read and wrote, of its notebook, of the
notebooks of the stages it needs and of the library, recorded in the run manifest when it ends and
compared before it runs again.

A stage is skipped when its notebook's cells, the cells of every notebook it needs (directly or
through others), the library code, its parameters and every file it read or wrote are as they were
when it last succeeded (the book's "Reproducing" page, "What the runner does for you"). The files it
read are those its stage context recorded (:class:`ehrlib.runs.Stage`): under the run folder by
path relative to it, the data it read from outside (the data folder, ``--data long:PATH``, ...) by
absolute path, and a file it looked for and did not find as absent, so that its appearing makes the
stage out of date.

A file is fingerprinted by its content (sha256); one above :data:`HASH_LIMIT` by its size and
modification time, and, when it lies outside the run folder, by its content as well, which is
compared whenever the modification time changed (a data file touched but not changed is no reason
to run again).
"""
from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

from ehrlib.runs import EXECUTED_DIR, Run, _now

__all__ = ["EXECUTED_DIR", "HASH_LIMIT", "fingerprint", "library_hash", "needs_notebooks", "notebook_source_hash",
           "record_result", "up_to_date"]

#: Files above this size are fingerprinted by size and modification time instead of content.
HASH_LIMIT = 64 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_print(path: Path) -> str:
    st = path.stat()
    if st.st_size > HASH_LIMIT:
        return f"size={st.st_size},mtime={st.st_mtime_ns}"
    return _sha256(path)


def _listing_print(path: Path) -> str:
    """The files a glob pattern (``synthetic/*.parquet``) matches now, by name."""
    parts = path.parts
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    base = Path(*parts[:first])
    names = sorted(str(p.relative_to(base)) for p in base.glob(str(Path(*parts[first:])))
                   if not p.name.startswith(".")) if base.is_dir() else []
    return "glob:" + hashlib.sha256("\n".join(names).encode()).hexdigest()


def fingerprint(path: Path) -> str | None:
    """Content fingerprint of a file or a folder (all its files); ``None`` when it is missing. A path
    with a glob pattern (``synthetic/*.parquet``) fingerprints the names of the files it matches."""
    path = Path(path)
    if path.is_file():
        return _file_print(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file() and not q.name.startswith(".")):
            h.update(str(p.relative_to(path)).encode())
            h.update(_file_print(p).encode())
        return h.hexdigest()
    if glob.has_magic(str(path)):
        return _listing_print(path)
    return None


def _same(path: Path, recorded: str | None, content: str | None) -> bool:
    """Whether ``path`` still has the fingerprint ``recorded``: for a large file outside the run
    whose modification time changed, whether its content is still ``content``."""
    now = fingerprint(path)
    if now == recorded:
        return True
    if content is None or now is None or recorded is None or not now.startswith("size="):
        return False
    size = lambda fp: fp.split(",", 1)[0]  # noqa: E731
    return size(now) == size(recorded) and _sha256(path) == content


def notebook_source_hash(nb: Path) -> str:
    """sha256 of a notebook's cell sources (outputs and metadata ignored)."""
    cells = json.loads(Path(nb).read_text())["cells"]
    return hashlib.sha256(json.dumps([(c["cell_type"], "".join(c["source"])) for c in cells]).encode()).hexdigest()


def needs_notebooks(nb: Path) -> dict[str, str]:
    """``{stage: notebook_source_hash}`` of every stage ``nb`` needs, directly or through others
    (:func:`ehrlib.runner.graph.stage_needs` over every notebook beside it): editing a needed
    notebook makes ``nb`` out of date too, even under ``--only``."""
    from ehrlib.book import notebooks
    from ehrlib.runner.needs import stage_needs

    nb = Path(nb)
    every = notebooks(nb.parent.parent)
    if nb not in every:
        return {}
    return {need: notebook_source_hash(nb.parent / f"{need}.ipynb") for need in stage_needs(every)[nb.stem]}


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
    """Whether stage ``nb`` succeeded before with the same notebook, needed notebooks, code and
    parameters, and every file it read or wrote (or found missing) is as it left them."""
    entry = run.manifest().get("stages", {}).get(nb.stem, {})
    done = entry.get("runner", {})
    if done.get("status") != "ok" or done.get("params") != params or done.get("code") != code:
        return False
    if done.get("notebook") != notebook_source_hash(nb) or not (run.path / EXECUTED_DIR / nb.name).is_file():
        return False
    if done.get("needs_notebooks") != needs_notebooks(nb):
        return False
    prints = done.get("files", {})
    if not prints:
        return False
    contents = done.get("contents", {})
    return all(_same(run.path / rel, fp, contents.get(rel)) for rel, fp in prints.items())


def _recorded_files(run: Run, entry: dict) -> tuple[dict, dict]:
    """The fingerprints of a stage's inputs and outputs (a file inside a recorded folder is covered
    by the folder's), and the content hash of each large file outside the run."""
    keys = set(entry.get("inputs", [])) | set(entry.get("outputs", []))
    files, contents = {}, {}
    for rel in sorted(keys):
        parents = Path(rel).parents
        if any(str(parent) in keys for parent in parents if str(parent) not in (".", "/")):
            continue
        path = run.path / rel  # an absolute key (outside the run) stays itself
        files[rel] = fingerprint(path)
        if Path(rel).is_absolute() and files[rel] is not None and files[rel].startswith("size="):
            contents[rel] = _sha256(path)
    return files, contents


def record_result(run: Run, nb: Path, result, params: dict, code: str) -> None:
    """Record how stage ``nb`` ended (a :class:`~ehrlib.runner.kernels.StageResult`) in the run
    manifest; after a success, with the fingerprints of every file it read or wrote, which
    :func:`up_to_date` compares next time."""
    needs = needs_notebooks(nb)

    def change(m):
        entry = m.setdefault("stages", {}).setdefault(nb.stem, {})
        files, contents = _recorded_files(run, entry) if result.status == "ok" else ({}, {})
        entry["runner"] = {"status": result.status, "seconds": round(result.seconds, 1), "threads": result.threads,
                           "error": result.error, "params": params, "code": code,
                           "notebook": notebook_source_hash(nb), "needs_notebooks": needs, "files": files,
                           "finished": _now()}
        if contents:
            entry["runner"]["contents"] = contents
    run.update_manifest(change)
