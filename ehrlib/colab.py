"""Google Colab: the install cell at the top of every notebook.

In Colab, and only there, the cell clones the repository at a ref, installs it (``pip install -e``,
with the ``models`` and ``colab`` extras and without torch: Colab's CUDA build stays), moves into
the clone so that ``runs/`` is written there, and with ``PAPER_ON_GPU = True`` selects the
``paper`` profile (``$EHRLIB_PROFILE``, read by the parameters cell's ``profile = "default"``).
Outside Colab it does nothing.

The address and the ref have one place: ``repository.url`` and ``repository.branch`` in
``_config.yml``, which the book's Colab button uses too. The cell is rendered here and written
into the notebooks, never edited by hand::

    python -m ehrlib.colab            # rewrite every notebook's install cell from _config.yml
    python -m ehrlib.colab --check    # list the notebooks whose cell differs (exit status 1)

When the runner builds the book, the pages' cells are rendered with the exact commit the book was
built from (:func:`book_ref`), so the notebook a page offers for download installs the code that
computed it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ehrlib.book import notebooks
from ehrlib.errors import ConfigError

CONFIG = "_config.yml"
#: The tag that marks the install cell (and keeps its source folded on the book's pages).
TAG = "colab-install"
TAGS = [TAG, "hide-input"]
FLAG = "PAPER_ON_GPU"
SYNC_COMMAND = "python -m ehrlib.colab"

_CELL = """\
# Google Colab only: install this project (outside Colab this cell does nothing).
# Written from _config.yml (repository.url, .branch) by `{command}`: edit that file, not this.
{flag} = False  # True on a GPU runtime (Runtime > Change runtime type): run the paper profile
import sys
if "google.colab" in sys.modules:
    import os, shutil, subprocess
    REPO, REF, FOLDER = {url}, {ref}, {folder}
    steps = [] if os.path.isdir(FOLDER) else [["git", "clone", "--quiet", REPO, FOLDER]]
    steps += [["git", "-C", FOLDER, "checkout", "--quiet", REF],
              [sys.executable, "-m", "pip", "install", "--quiet", "-e", FOLDER + "[models,colab]"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(" ".join(step) + " failed:\\n" + done.stderr[-3000:])
    sys.path.insert(0, FOLDER)  # this kernel imports the clone without a restart
    os.chdir(FOLDER)  # runs/ is written in the clone
    GPU = shutil.which("nvidia-smi") is not None
    if {flag} and not GPU:
        raise RuntimeError("{flag} is True but this runtime has no GPU: Runtime > Change runtime type > GPU")
    if {flag}:
        os.environ["EHRLIB_PROFILE"] = "paper"
    print(f"ehrlib {{REF}} installed in {{FOLDER}}; GPU: {{GPU}}; profile: {{os.environ.get('EHRLIB_PROFILE', 'demo')}}")
"""


def repository(root: Path) -> tuple[str, str]:
    """``(repository.url, repository.branch)`` of ``<root>/_config.yml``."""
    import yaml

    path = Path(root) / CONFIG
    try:
        repo = (yaml.safe_load(path.read_text()) or {}).get("repository") or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; expected the book's config with repository.url and .branch") from None
    url, ref = repo.get("url"), repo.get("branch")
    for key, value in (("url", url), ("branch", ref)):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: repository.{key} is {value!r}; expected the repository's "
                              + ("address (https://github.com/OWNER/NAME)" if key == "url" else "branch, tag or commit"))
    return url.strip().rstrip("/"), ref.strip()


def clone_folder(url: str) -> str:
    """Where the cell clones ``url`` in Colab: ``/content/<repository name>``."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return "/content/" + (name[:-4] if name.endswith(".git") else name)


def render(url: str, ref: str) -> str:
    """The install cell's source for repository ``url`` at ``ref`` (branch, tag or commit)."""
    return _CELL.format(command=SYNC_COMMAND, flag=FLAG, url=json.dumps(url), ref=json.dumps(ref),
                        folder=json.dumps(clone_folder(url))).rstrip("\n")


def is_install_cell(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and TAG in cell.get("metadata", {}).get("tags", [])


def _lines(text: str) -> list[str]:
    return text.splitlines(True)


def set_install_cell(nb: dict, source: str) -> bool:
    """Make ``source`` the notebook's first code cell, tagged :data:`TAG` (replacing the one it
    has, or inserted before the first code cell). Returns whether the notebook changed."""
    cells = nb["cells"]
    first = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
    if first < len(cells) and is_install_cell(cells[first]):
        cell = cells[first]
        before = (cell["source"], cell["metadata"].get("tags"))
        cell["source"], cell["metadata"]["tags"] = _lines(source), list(TAGS)
        return before != (cell["source"], cell["metadata"]["tags"])
    ids = {c.get("id") for c in cells}
    prefix = next((c["id"].split("-")[0] for c in cells if c.get("id")), "nb")
    cell_id = f"{prefix}-colab"
    while cell_id in ids:
        cell_id += "-"
    cells.insert(first, {"cell_type": "code", "execution_count": None, "id": cell_id,
                         "metadata": {"tags": list(TAGS)}, "outputs": [], "source": _lines(source)})
    return True


def write_install_cell(path: Path, url: str, ref: str) -> bool:
    """Render the install cell for ``url`` at ``ref`` into notebook ``path``; whether it changed."""
    path = Path(path)
    nb = json.loads(path.read_text())
    changed = set_install_cell(nb, render(url, ref))
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return changed


def sync_notebooks(root: Path) -> list[Path]:
    """Rewrite the install cell of every stage notebook under ``root`` from its ``_config.yml``;
    returns the notebooks that changed."""
    url, ref = repository(root)
    return [nb for nb in notebooks(root) if write_install_cell(nb, url, ref)]


def stale_notebooks(root: Path) -> list[Path]:
    """The stage notebooks whose first code cell is not the install cell rendered from ``_config.yml``."""
    source = render(*repository(root))
    stale = []
    for path in notebooks(root):
        code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        if not code or not is_install_cell(code[0]) or "".join(code[0]["source"]) != source:
            stale.append(path)
    return stale


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def book_ref(root: Path) -> tuple[str, str | None]:
    """The ref the book's install cells name: ``(commit, None)`` when ``root`` is a git checkout
    without changes, else ``(repository.branch, why not a commit)``."""
    _, branch = repository(root)
    head = _git(root, "rev-parse", "HEAD")
    if not head or not head.strip():
        return branch, f"{root} is not a git checkout (or git is unavailable)"
    status = _git(root, "status", "--porcelain")
    if status is None:
        return branch, f"git status failed in {root}"
    if status.strip():
        return branch, f"the working tree has uncommitted changes ({len(status.splitlines())} paths)"
    return head.strip(), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=SYNC_COMMAND, description="Write the Colab install cell of every "
                                     "notebook from _config.yml (repository.url, repository.branch).")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (holds _config.yml)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of date")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_notebooks(args.root)
            for p in stale:
                print(f"{p}: install cell differs from {CONFIG}; run `{SYNC_COMMAND}`")
            return 1 if stale else 0
        url, ref = repository(args.root)
        changed = sync_notebooks(args.root)
    except ConfigError as exc:
        print(f"{SYNC_COMMAND}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(changed)} notebook(s) rewritten: install {url} at {ref}")
    for p in changed:
        print(f"  {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
