"""Stage names are spelled once (ehrlib.stages): the table is the notebooks folder, every notebook
opens the stage of its own name with its constant, the metadata needs name stages of the table,
and the library reads other stages' records by constant, never by a literal."""
import ast
import json
import re
from pathlib import Path

import pytest

from ehrlib import stages
from ehrlib.book import notebooks
from ehrlib.runner import NEEDS_KEY, opened_stages

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebooks(ROOT)
CONSTANTS = {k: v for k, v in vars(stages).items() if k.isupper() and isinstance(v, str)}


def test_the_table_of_stage_names_is_the_notebooks_folder():
    assert stages.NAMES == tuple(nb.stem for nb in NOTEBOOKS), \
        "a notebook was added, renamed or removed: make ehrlib/stages.py name exactly the notebooks/ stems"
    assert sorted(CONSTANTS.values()) == list(stages.NAMES), "one constant per stage"
    assert set(stages.TRAINING.values()) <= set(stages.NAMES)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_opens_its_own_stage_by_its_constant(nb):
    assert opened_stages(nb) == [nb.stem], f"{nb.name}: one runs.stage(...) call, with its own name"
    source = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
    const = re.search(r"runs\.stage\(stages\.(\w+)", source)
    assert const and CONSTANTS.get(const.group(1)) == nb.stem, f"{nb.name}: runs.stage(stages.NAME, ...)"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_metadata_needs_name_earlier_stages_of_the_table(nb):
    needs = json.loads(nb.read_text())["metadata"][NEEDS_KEY]["needs"]
    earlier = stages.NAMES[:stages.NAMES.index(nb.stem)]
    assert [n for n in needs if n not in earlier] == [], f"{nb.name}: {NEEDS_KEY}.needs names no stage of ehrlib.stages"


def _strings(tree):
    """Every string constant of a module that is not a docstring (f-string parts included)."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            yield n


def test_no_library_module_spells_a_stage_name():
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, stages.NAMES)) + r")\b")
    found = []
    for path in sorted((ROOT / "ehrlib").rglob("*.py")):
        if path.name == "stages.py" and path.parent.name == "ehrlib":
            continue
        for n in _strings(ast.parse(path.read_text())):
            if pattern.search(n.value):
                found.append(f"{path.relative_to(ROOT)}:{n.lineno}: {pattern.search(n.value).group(0)}")
    assert found == [], "use the constants of ehrlib.stages:\n" + "\n".join(found)


def test_a_stage_name_the_runner_cannot_read_or_another_notebooks_name_is_a_problem(tmp_path):
    from ehrlib.runner import stage_name_problems

    def nb(name, code):
        path = tmp_path / f"{name}.ipynb"
        path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": [code], "metadata": {}}], "metadata": {}}))
        return path

    good = nb("33_table1", "stage = runs.stage(stages.TABLE1, run=run)")
    copied = nb("60_mine", "stage = runs.stage(stages.TABLE1, run=run)")
    unread = nb("61_other", "name = '61_other'\nstage = runs.stage(name, run=run)")
    assert stage_name_problems([good]) == []
    (copy_problem,), (unread_problem,) = stage_name_problems([copied]), stage_name_problems([unread])
    assert "60_mine.ipynb opens stage '33_table1', not its own name '60_mine'" in copy_problem
    assert "61_other.ipynb" in unread_problem and "cannot read" in unread_problem
