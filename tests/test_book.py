"""Every notebook follows the style rules, runs in smoke mode (papermill), and the book builds
with every saved figure and table visible on its notebook's page."""
import json
import re

import pytest

from conftest import CONSOLE, ROOT
from ehrlib import book, colab
from ehrlib.runner import notebooks, opened_stages, reproduce

NOTEBOOKS = notebooks(ROOT)


def _all_code_cells(nb):
    return [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]


def _code_cells(nb):
    """The notebook's own code cells: all but the Colab install cell (rendered by ehrlib.colab,
    checked in tests/test_colab.py)."""
    return [c for c in _all_code_cells(nb) if not colab.is_install_cell(c)]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_first_code_cell_and_only_it_is_the_colab_install_cell(nb):
    cells = _all_code_cells(nb)
    assert [colab.is_install_cell(c) for c in cells] == [True] + [False] * (len(cells) - 1), \
        f"{nb.name}: expected the Colab install cell first, before the parameters cell; run `{colab.SYNC_COMMAND}`"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_style_rules(nb):
    cells = _code_cells(nb)
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and cells[0] is tagged[0], \
        "the first code cell after the Colab install cell, and only it, is tagged 'parameters'"
    assert not any(c.get("outputs") for c in _all_code_cells(nb)), "committed outputs"
    source = "\n".join("".join(c["source"]) for c in cells[1:])
    assert not re.search(r"^\s*(def|class)\s", source, re.M), "functions belong in ehrlib"
    assert len(cells) <= 4, "parameters, the stage context, one or two library calls"
    assert not re.search(r"\.(csv|parquet|png|pdf|json|txt|md)\b", source), "file names belong in ehrlib"
    assert opened_stages(nb) == [nb.stem], "the notebook opens its own stage context (tests/test_stages.py)"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_parameter_is_used(nb):
    cells = _code_cells(nb)
    names = re.findall(r"^(\w+)\s*=", "".join(cells[0]["source"]), re.M)
    later = "\n".join("".join(c["source"]) for c in cells[1:])
    unused = [n for n in names if not re.search(rf"\b{n}\b", later)]
    assert not unused, f"parameters never used: {unused}"


@pytest.mark.slow
def test_a_normal_run_prints_no_kernel_or_papermill_warnings(smoke_build):
    html, run = smoke_build
    console = (run.parent.parent / CONSOLE).read_text(errors="replace")
    for noise in ("Unable to parse", "KeyboardInterrupt", "unencrypted", "Traceback", "[IPKernelApp]"):
        assert noise not in console, f"the console shows {noise!r}:\n{console[-2000:]}"


@pytest.mark.slow
def test_smoke_profile_runs_every_notebook_and_shows_every_artifact(smoke_build):
    html, run = smoke_build
    assert (html / "index.html").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    shown = 0
    for nb in NOTEBOOKS:
        page = html / "notebooks" / f"{nb.stem}.html"
        assert page.is_file(), page
        text = page.read_text()
        assert "Traceback" not in text, f"{page.name} shows a traceback"
        stage = manifest["stages"][nb.stem]
        assert stage["runner"]["status"] == "ok", stage["runner"]
        outputs = stage["outputs"]
        figures = [o.split("/")[-1][:-4] for o in outputs if o.startswith("figures/") and o.endswith(".png")]
        assert set(figures) <= set(stage["shown"]), f"{page.name}: figures saved but not shown"
        images = len(re.findall(r"<img [^>]*src=\"[^\"]*_images/", text))
        assert images >= len(figures), f"{page.name}: {len(figures)} figures saved, {images} images on the page"
        for fig_id in figures:
            assert book.caption(fig_id).split(".")[0] in text, f"{page.name}: no caption for {fig_id}"
            shown += 1
        shown_tables = [t for t in stage["shown"] if not book.is_figure(t)]
        for table_id in shown_tables:
            assert f"<code class=\"docutils literal notranslate\"><span class=\"pre\">{table_id}</span>" in text, \
                f"{page.name}: table {table_id} not shown under its id"
        if shown_tables:
            assert "<table" in text, f"{page.name}: tables saved but none on the page"
    paper_figures = {f"fig{i}" for i in range(2, 15)}
    saved = {p.stem for p in (run / "figures").glob("fig*.png")}
    assert paper_figures <= saved, f"paper figures never saved: {sorted(paper_figures - saved)}"
    assert shown >= len(paper_figures)


@pytest.mark.slow
def test_the_book_shows_learning_curves_stopping_and_floors(smoke_build):
    html, run = smoke_build
    stopping = (run / "tables" / "table_stopping.csv").read_text()
    for label in ("MedGAN", "CorGAN", "PromptEHR", "HALO", "GPT baseline"):
        assert label in stopping, f"table_stopping has no row for {label}"
    page = (html / "notebooks" / "18_learning_curves.html").read_text()
    assert "fig_learning" in page and "table_stopping" in page
    for nb in ("10_train_medgan", "13_train_halo", "14_train_gpt"):  # each training page says how it ended
        assert re.search(r"epochs, (fixed epochs|stopped by its criterion|ran to its cap)",
                         (html / "notebooks" / f"{nb}.html").read_text()), nb
    floors = (run / "tables" / "table_floors.csv").read_text()
    assert "meets floors" in floors and "CorGAN" in floors
    results = (html / "book" / "results.html").read_text()
    assert "Did the models learn?" in results and "fig_learning.png" in results


@pytest.mark.slow
def test_the_first_page_states_this_builds_verdicts(smoke_build):
    html, _ = smoke_build
    intro = (html / "book" / "intro.html").read_text()
    assert re.search(r"\(A\): \d+ claims: .*\(B\): \d+ claims tested", intro) and "verdicts of this build" not in intro


@pytest.mark.slow
def test_a_rerun_with_nothing_changed_skips_every_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    reproduce(ROOT, profile="smoke", run="ci", book=False, only=["00", "15", "30"])
    first = json.loads((tmp_path / "runs" / "ci" / "manifest.json").read_text())["stages"]
    reproduce(ROOT, profile="smoke", run="ci", book=False, only=["00", "15", "30"])
    second = json.loads((tmp_path / "runs" / "ci" / "manifest.json").read_text())["stages"]
    for name in ("00_data", "15_reference_generators", "30_prevalence"):
        assert second[name]["runner"]["finished"] == first[name]["runner"]["finished"], f"{name} ran again"
