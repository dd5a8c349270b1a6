"""Every notebook runs in smoke mode (papermill) and the book builds with warnings as errors."""
import json
import re

import pytest

from conftest import ROOT
from ehrlib.cli import notebooks, reproduce

NOTEBOOKS = notebooks(ROOT)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_style_rules(nb):
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and cells[0] is tagged[0], "the first code cell, and only it, is tagged 'parameters'"
    assert not any(c.get("outputs") for c in cells), "committed outputs"
    source = "\n".join("".join(c["source"]) for c in cells)
    assert not re.search(r"^\s*(def|class)\s", source, re.M), "functions belong in ehrlib"
    assert len(cells) <= 15


@pytest.mark.slow
def test_smoke_profile_runs_every_notebook_and_builds_the_book(tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    html = reproduce(ROOT, profile="smoke", run="ci", out=tmp_path / "build")
    assert (html / "index.html").is_file()
    for nb in NOTEBOOKS:
        page = html / "notebooks" / f"{nb.stem}.html"
        assert page.is_file(), page
        assert "Traceback" not in page.read_text()
    run = tmp_path / "runs" / "ci"
    assert (run / "data" / "train.parquet").is_file() and (run / "figures" / "fig2.png").is_file()
    assert "00_data" in json.loads((run / "manifest.json").read_text())["stages"]
