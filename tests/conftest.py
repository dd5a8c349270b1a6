import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MIMIC3_DEMO = SHARED_DATA / "mimic-iii-demo"
MIMIC4_DEMO = SHARED_DATA / "mimic-iv-demo"

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

#: The user generators of the smoke book (``ehrbench reproduce --generator``).
SMOKE_GENERATORS = "markov=examples.visit_markov:VisitMarkov"

needs_demo = pytest.mark.skipif(not MIMIC3_DEMO.is_dir(), reason="../shared/data (open MIMIC demos) not present")


@pytest.fixture(scope="session")
def small_cohort():
    from ehrlib.data import simulate

    return simulate(400, seed=1)


def interrupt_then_resume(make, train, checkpoint_dir, after_epoch: int):
    """Fit ``make()`` until a callback interrupts it after epoch ``after_epoch`` (0-based), then
    fit a fresh ``make()`` on the same checkpoint folder.

    Returns ``(resumed generator, epochs the resumed fit ran)``.
    """
    from ehrlib.models.neural import CHECKPOINT

    def interrupt(epoch, stats):
        if epoch == after_epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make().fit(train, checkpoint_dir=checkpoint_dir, callback=interrupt)
    assert (Path(checkpoint_dir) / CHECKPOINT).is_file()
    seen = []
    resumed = make().fit(train, checkpoint_dir=checkpoint_dir, callback=lambda e, s: seen.append(e))
    return resumed, seen


CONSOLE = "console.txt"
"""What the smoke build printed on stderr, beside its ``runs`` and ``build`` folders."""


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory):
    """The smoke-profile book, built once per session: ``(html folder, run folder)``."""
    from ehrlib.runner import reproduce

    base = tmp_path_factory.mktemp("smoke")
    env = {"EHRLIB_RUNS_DIR": str(base / "runs")}
    if SHARED_DATA.is_dir():  # the paper's artifacts chapter reads the shared copies (no download)
        env["EHRLIB_DATA_DIR"] = str(SHARED_DATA)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # the console of the run (the runner's lines and anything its kernels print), as a user sees it
    console, saved_fd = open(base / CONSOLE, "w+b"), os.dup(2)
    os.dup2(console.fileno(), 2)
    try:
        # with the worked example of a user generator, so the built book shows one (tests/test_user_generators.py)
        html = reproduce(ROOT, profile="smoke", out=base / "build", settings={"generators": SMOKE_GENERATORS})
    finally:
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        console.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return html, base / "runs" / "smoke"


def write_pipeline(root: Path, stages: dict, params: str) -> Path:
    """A repository of toy stage notebooks under ``root/notebooks``: ``stages`` maps each name to
    ``(needs, code)``; every notebook has the parameters cell ``params`` and one code cell."""
    import nbformat

    from ehrlib import runner

    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    for name, (needs, code) in stages.items():
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(code)])
        nb.metadata[runner.NEEDS_KEY] = {"needs": needs}
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")
    return root
