"""What a reader sees on a page: no stderr, no six-decimal floats, no unflagged estimate outside its
interval, paper names as headers. The browser test applies :func:`page_defects` to the built book;
these tests apply it (and the helpers behind the pages) to crafted input, without a browser."""
import warnings

import numpy as np
import pandas as pd

from ehrlib.metrics import names
from ehrlib.metrics.display import OUTSIDE_FLAG, interval_cell, plain_number
from ehrlib.metrics.paper import compare, shown_beside, tidy
from ehrlib.runs import open_run
from test_browser import page_defects


def test_page_defects_catches_stderr_six_zeros_unflagged_intervals_and_cut_tables():
    assert page_defects({"text": "R² 0.968‡ [0.981, 1.000] and 0.97 [0.95, 0.99]", "stderr": 0, "cut": []}) == []
    found = page_defects({"text": "patients 45517.000000; R² 0.968 [0.981, 1.000]", "stderr": 2, "cut": [1900]})
    assert len(found) == 4
    assert any("stderr" in f for f in found) and any("45517.000000" in f for f in found)
    assert any("0.968 [0.981, 1.000]" in f for f in found) and any("1900" in f for f in found)


def test_page_defects_catches_a_claims_ledger_that_needs_a_sideways_scroll():
    assert page_defects({"text": "", "ledger_scroll": []}) == []
    assert page_defects({"text": "", "ledger_scroll": [832]}) == ["the claims ledger needs a sideways scroll (832 px of content)"]


def test_page_defects_catches_a_python_repr_left_as_an_output():
    found = page_defects({"text": "Figure 12 PosixPath('/tmp/x/runs/demo/figures/fig12.png') and <pandas.io.X object at 0x7f3a>"})
    assert len(found) == 2 and all("repr" in f for f in found)
    assert page_defects({"text": "the figure is saved as runs/demo/figures/fig12.png"}) == []


def test_an_estimate_outside_its_interval_is_flagged_as_rounded():
    assert interval_cell(0.968, 0.981, 1.0) == f"0.968{OUTSIDE_FLAG} [0.981, 1.000]"
    assert OUTSIDE_FLAG not in interval_cell(0.7123, 0.6801, 0.7482)
    assert page_defects({"text": interval_cell(0.968, 0.981, 1.0)}) == []


def test_whole_floats_show_without_decimals_and_others_to_four_digits():
    assert plain_number(45517.0) == "45517"
    assert plain_number(0.355049) == "0.355"
    assert plain_number(np.nan) == "" and plain_number("x") == "x"


def test_the_paper_beside_ours_shows_the_printed_string_and_rounds_ours_like_it():
    ours = tidy(pd.DataFrame({"dataset": ["train"], "patients": [45517.0], "codes_per_visit": [11.0412]}), "dataset")
    shown = shown_beside(compare(ours, data="a test run", tables=["12"]))
    row = shown[(shown["row"] == "Real (train)") & (shown["column"] == "Patients")].iloc[0]
    assert (row["paper"], row["ours"]) == ("45,517", "45517")
    cpv = shown[(shown["row"] == "Real (train)") & (shown["column"] == "Codes/visit")].iloc[0]
    assert cpv["ours"] == "11.04"
    assert "not computed" in set(shown["ours"])
    assert page_defects({"text": shown.to_string()}) == []


def test_table1_headers_are_the_papers_names():
    assert names.header(names.PREVALENCE_R2) == "Prev. R²"
    assert names.header(names.PAPER_DISC_SCORE) == "Disc. Score"
    assert names.header("a_metric_without_a_name") == "a_metric_without_a_name"


def test_the_figure_3_sentence_counts_non_finite_replicates_and_missing_values():
    from ehrlib.metrics.bootstrap import basic_interval
    from ehrlib.pipeline import longtail_note

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        basic_interval(0.5, np.array([0.4, np.nan, np.inf, 0.6]))
        basic_interval(0.5, np.array([0.4, np.nan, 0.5, 0.6]))
    data = pd.DataFrame({"percentile": [75.0, 99.0, 99.0], "estimate": [np.nan, 0.3, 0.4]})
    note = longtail_note(data, caught, n_bootstrap=4)
    assert "1 of 3 values could not be computed" in note and "p75" in note
    assert "2 interval(s)" in note and "3 replicates" in note


def test_the_results_page_heads_table1_with_paper_names_and_explains_flags(tmp_path):
    from ehrlib.report import results_page

    run = open_run("r", root=tmp_path / "runs")
    run.record("00_data", data="simulated", profile="demo", seed=0)
    tables = run.path / "tables"
    tables.mkdir()
    cell = interval_cell(0.968, 0.981, 1.0)
    pd.DataFrame({"model": ["halo", "holdout"], "protocol": ["paper", "paper"],
                  "prevalence_r2": [cell, interval_cell(0.99, 0.98, 1.0)]}).to_csv(tables / "table1.csv", index=False)
    page = results_page(run, tmp_path / "src").read_text()
    assert "Prev. R²: <code>prevalence_r2</code>" in page
    assert "outside its interval" in page and "holdout" in page
    table = page.split("## Table 1")[1]
    assert table.index("| holdout") < table.index("| halo")  # the reference rows on top


def test_no_notebook_cell_leaves_a_saved_files_path_as_its_output():
    """``Stage.save_table``/``save_figure`` return the file's path: a cell ending on one without ``;``
    would print the build machine's path under the table or figure (the browser test catches the
    rendered repr; this catches the cause, without building the book)."""
    import ast
    import json

    from conftest import ROOT

    leaks = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            src = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
            try:
                body = ast.parse(src).body
            except SyntaxError:
                continue
            if body and isinstance(body[-1], ast.Expr) and not src.rstrip().endswith(";"):
                call = body[-1].value
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and \
                        call.func.attr in ("save_table", "save_figure", "save_metrics", "save_synthetic"):
                    leaks.append(f"{path.name} cell {i}")
    assert not leaks, f"cells ending on a save call without ';': {leaks}"
