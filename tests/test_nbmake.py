"""``pytest --nbmake notebooks/``: the committed notebooks run as they are, in numeric order.

The parameters cells read ``profile="default"``, which the stage context resolves from
``$EHRLIB_PROFILE`` (here ``smoke``). The run folder is the smoke book's, so the training
notebooks load the models it trained (``fit_or_load``) instead of training them again.
"""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_the_committed_notebooks_run_under_nbmake(smoke_build):
    html, run = smoke_build
    env = {**os.environ, "EHRLIB_PROFILE": "smoke", "EHRLIB_RUNS_DIR": str(run.parent), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbmake", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(ROOT), *sorted(str(p) for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    n = len(list((ROOT / "notebooks").glob("[0-9]*.ipynb")))
    assert f"{n} passed" in proc.stdout, proc.stdout[-2000:]
