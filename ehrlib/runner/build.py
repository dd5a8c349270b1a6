"""The book build: the build folder (cleared only when it carries the runner's marker), the
pages' Colab install cells stamped with the commit built from, and Jupyter Book 1.x run with
warnings as errors over the book's pages and the run's executed notebooks.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

from ehrlib import colab
from ehrlib.book import notebooks
from ehrlib.errors import RunError
from ehrlib.report import results_page
from ehrlib.runner.fingerprints import EXECUTED_DIR
from ehrlib.runs import Run

log = logging.getLogger("ehrbench")

#: The repository's files and folders the book is built from, beside the executed notebooks.
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "_static")
#: Written into every build folder the runner creates; only such folders are ever cleared.
MARKER = ".ehrbench-build"


def prepare_out(out: Path) -> None:
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
    prepare_out(out)
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
