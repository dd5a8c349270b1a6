"""The Colab install cell: rendered from ``_config.yml`` into every notebook, inert outside Colab,
and in Colab exactly clone → checkout → ``pip install -e`` → chdir (offline: every effect is faked)."""
import json
import os
import shutil
import subprocess
import sys
import types

import pytest

from conftest import ROOT
from ehrlib import colab
from ehrlib.errors import ConfigError
from ehrlib.runner import notebooks

URL, REF = colab.repository(ROOT)
FOLDER = colab.clone_folder(URL)


def _install_source(nb) -> str:
    code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    return "".join(code[0]["source"])


class Colab:
    """A fake Colab runtime: ``google.colab`` imported, and every command, folder change and
    GPU probe of the cell recorded instead of run."""

    def __init__(self, monkeypatch, clone_exists=False, gpu=False, failing=None):
        self.commands, self.chdirs = [], []
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.delenv("EHRLIB_PROFILE", raising=False)
        self.monkeypatch, self.clone_exists, self.gpu, self.failing = monkeypatch, clone_exists, gpu, failing

    def run_cell(self, source):
        def run(cmd, **kwargs):
            self.commands.append(list(cmd))
            failed = self.failing is not None and self.failing in cmd
            return subprocess.CompletedProcess(cmd, 1 if failed else 0, "", "fatal: the error text" if failed else "")

        with self.monkeypatch.context() as m:
            m.setattr(subprocess, "run", run)
            m.setattr(os, "chdir", self.chdirs.append)
            m.setattr(os.path, "isdir", lambda p: self.clone_exists if p == FOLDER else os.path.isdir(p))
            m.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if self.gpu and name == "nvidia-smi" else None)
            exec(compile(source, "install-cell", "exec"), {})


def _expected_commands(clone=True):
    return ([["git", "clone", "--quiet", URL, FOLDER]] if clone else []) + [
        ["git", "-C", FOLDER, "checkout", "--quiet", REF],
        [sys.executable, "-m", "pip", "install", "--quiet", "-e", FOLDER + "[models,colab]"]]


# ---------------------------------------------------------------------------- the committed cells
def test_every_notebook_install_cell_is_the_one_rendered_from_config():
    stale = colab.stale_notebooks(ROOT)
    assert not stale, (f"{', '.join(p.name for p in stale)}: the Colab install cell differs from _config.yml "
                       f"(repository.url, repository.branch); run `{colab.SYNC_COMMAND}` and commit the notebooks")


def test_the_install_cell_is_tagged_and_folded_on_the_pages():
    for nb in notebooks(ROOT):
        first = next(c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        assert first["metadata"]["tags"] == ["colab-install", "hide-input"], nb.name
        assert first["outputs"] == [] and first["id"], nb.name


@pytest.mark.parametrize("nb", notebooks(ROOT), ids=lambda p: p.stem)
def test_outside_colab_the_install_cell_does_nothing(nb, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    env, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)

    def forbidden(*args, **kwargs):
        raise AssertionError(f"the install cell ran {args} outside Colab")

    namespace = {}
    with monkeypatch.context() as m:
        for module, name in ((subprocess, "run"), (subprocess, "Popen"), (os, "chdir"), (os, "system")):
            m.setattr(module, name, forbidden)
        exec(compile(_install_source(nb), "install-cell", "exec"), namespace)
    assert set(namespace) == {"__builtins__", "PAPER_ON_GPU", "sys"}
    assert dict(os.environ) == env and os.getcwd() == cwd and sys.path == path
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------------- in (fake) Colab
def test_in_colab_it_clones_the_configured_ref_installs_it_and_moves_into_the_clone(monkeypatch, capsys):
    fake = Colab(monkeypatch)
    fake.run_cell(_install_source(notebooks(ROOT)[0]))
    assert fake.commands == _expected_commands()
    assert fake.chdirs == [FOLDER] and sys.path[0] == FOLDER
    assert "EHRLIB_PROFILE" not in os.environ
    assert capsys.readouterr().out.strip() == f"ehrlib {REF} installed in {FOLDER}; GPU: False; profile: demo"


def test_in_colab_an_existing_clone_is_not_cloned_again(monkeypatch):
    fake = Colab(monkeypatch, clone_exists=True)
    fake.run_cell(_install_source(notebooks(ROOT)[0]))
    assert fake.commands == _expected_commands(clone=False)


def test_the_paper_flag_on_a_gpu_runtime_selects_the_paper_profile(monkeypatch, capsys):
    fake = Colab(monkeypatch, gpu=True)
    source = _install_source(notebooks(ROOT)[0]).replace("PAPER_ON_GPU = False", "PAPER_ON_GPU = True", 1)
    fake.run_cell(source)
    assert os.environ["EHRLIB_PROFILE"] == "paper"
    assert "GPU: True; profile: paper" in capsys.readouterr().out


def test_the_paper_flag_without_a_gpu_stops_and_says_what_to_click(monkeypatch):
    fake = Colab(monkeypatch, gpu=False)
    source = _install_source(notebooks(ROOT)[0]).replace("PAPER_ON_GPU = False", "PAPER_ON_GPU = True", 1)
    with pytest.raises(RuntimeError, match="Runtime > Change runtime type > GPU"):
        fake.run_cell(source)
    assert "EHRLIB_PROFILE" not in os.environ


def test_a_failing_install_step_stops_with_its_error(monkeypatch):
    fake = Colab(monkeypatch, failing="clone")
    with pytest.raises(RuntimeError, match="git clone .* failed:\nfatal: the error text"):
        fake.run_cell(_install_source(notebooks(ROOT)[0]))
    assert len(fake.commands) == 1 and fake.chdirs == []


def test_the_library_leaves_torch_to_colab_and_has_the_extras_the_cell_installs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for req in project["dependencies"] + extras["models"] + extras["colab"]:
        assert not req.lower().startswith("torch"), f"{req}: would replace Colab's CUDA torch"
    assert any(r.startswith("papermill") for r in extras["colab"])


# ---------------------------------------------------------------------------- rendering and syncing
def _repo_copy(tmp_path, url=URL, branch=REF, n=2):
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    config = (ROOT / "_config.yml").read_text().replace(f"url: {URL}", f"url: {url}").replace(
        f"branch: {REF}", f"branch: {branch}")
    (root / "_config.yml").write_text(config)
    for nb in notebooks(ROOT)[:n]:
        shutil.copy2(nb, root / "notebooks" / nb.name)
    return root


def test_changing_the_config_without_syncing_is_caught_and_the_sync_fixes_it(tmp_path):
    import nbformat

    root = _repo_copy(tmp_path, url="https://github.com/someone/fork.git", branch="v1.0")
    assert len(colab.stale_notebooks(root)) == 2
    assert len(colab.sync_notebooks(root)) == 2
    assert colab.stale_notebooks(root) == [] and colab.sync_notebooks(root) == []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        source = _install_source(path)
        assert '"https://github.com/someone/fork.git", "v1.0", "/content/fork"' in source
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert colab.is_install_cell(code[0]) and "parameters" in code[1].metadata.tags


def test_sync_inserts_the_cell_before_the_parameters_cell_of_a_notebook_without_one(tmp_path):
    root = _repo_copy(tmp_path, n=1)
    path = next((root / "notebooks").glob("*.ipynb"))
    nb = json.loads(path.read_text())
    nb["cells"] = [c for c in nb["cells"] if not colab.is_install_cell(c)]
    path.write_text(json.dumps(nb))
    assert colab.stale_notebooks(root) == [path]
    colab.sync_notebooks(root)
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert colab.is_install_cell(code[0]) and "parameters" in code[1]["metadata"]["tags"]
    assert cells[0]["cell_type"] == "markdown", "the goal paragraph stays first"
    assert len({c["id"] for c in cells}) == len(cells)


def test_the_command_checks_and_syncs(tmp_path, capsys):
    root = _repo_copy(tmp_path, branch="v2")
    assert colab.main(["--root", str(root), "--check"]) == 1
    assert colab.SYNC_COMMAND in capsys.readouterr().out
    assert colab.main(["--root", str(root)]) == 0
    assert colab.main(["--root", str(root), "--check"]) == 0


def test_a_config_without_a_repository_url_is_named(tmp_path):
    (tmp_path / "_config.yml").write_text("repository:\n  branch: main\n")
    with pytest.raises(ConfigError, match=r"_config.yml: repository.url is None"):
        colab.repository(tmp_path)


# ---------------------------------------------------------------------------- the book's commit
def _git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True)


@pytest.fixture
def git_repo(tmp_path):
    root = _repo_copy(tmp_path, n=1)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return root, head


def test_a_clean_checkout_names_its_commit(git_repo):
    root, head = git_repo
    assert colab.book_ref(root) == (head, None)


def test_a_dirty_checkout_falls_back_to_the_branch_and_says_why(git_repo):
    root, _ = git_repo
    (root / "_config.yml").write_text((root / "_config.yml").read_text() + "\n# edited\n")
    ref, why = colab.book_ref(root)
    assert ref == REF and "uncommitted changes" in why


def test_a_folder_outside_git_falls_back_to_the_branch_and_says_why(tmp_path):
    root = _repo_copy(tmp_path, n=0)
    ref, why = colab.book_ref(root)
    assert ref == REF and "not a git checkout" in why


def test_the_book_pages_install_the_commit_the_book_is_built_from(git_repo, tmp_path, monkeypatch, caplog):
    """build_book stamps the pages' copies (jupyter-book itself is faked: the slow build test runs it)."""
    from ehrlib import runner
    from ehrlib.runner import build
    from ehrlib.runs import open_run

    root, head = git_repo
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    real_run = subprocess.run

    def fake(cmd, **kwargs):
        if "jupyter-book" not in str(cmd[0]):
            return real_run(cmd, **kwargs)
        html = tmp_path / "out" / "book" / "_build" / "html"
        html.mkdir(parents=True)
        (html / "index.html").write_text("")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(build.subprocess, "run", fake)
    caplog.set_level("INFO", logger="ehrbench")
    runner.build_book(root, open_run("t"), tmp_path / "out")
    page_nb = next((tmp_path / "out" / "src" / "notebooks").glob("*.ipynb"))
    assert _install_source(page_nb) == colab.render(URL, head)
    assert f"name commit {head}" in caplog.text
    assert colab.stale_notebooks(root) == [], "the committed notebooks are left as they are"
