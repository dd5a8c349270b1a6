"""Every file a stage reads is its input, recorded by the stage context, not declared: a read that
found nothing, a read through plain ``open`` under the run or data folder, the data a ``--data``
source names (by content), and the notebooks of the stages it needs. So ``ehrbench fetch`` then a
rerun recomputes every stage whose evidence changed, and the pages agree.

The tiny pipelines here (one or two notebooks of a few lines) start their kernels in seconds; the
fetch-then-rerun test runs the book's own stages 00 and 50-52 on the smoke profile.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA, write_pipeline
from ehrlib import runner, runs
from ehrlib.cohort import Cohort
from ehrlib.data import registry
from ehrlib.runner import fingerprints

ROOT = Path(__file__).resolve().parents[1]
#: The open data (``../shared/data`` in CI; ``$EHRLIB_TEST_SHARED_DATA`` elsewhere, as test_calibration reads it).
DATA = Path(os.environ.get("EHRLIB_TEST_SHARED_DATA", SHARED_DATA))
MIMIC3_DEMO, MIMIC4_DEMO = DATA / "mimic-iii-demo", DATA / "mimic-iv-demo"
needs_data = pytest.mark.skipif(not MIMIC3_DEMO.is_dir() or not MIMIC4_DEMO.is_dir(), reason=f"{DATA} not present")
PARAMS = 'run = "r"\nprofile = "smoke"\nseed = 0\ndata = "simulated"\n'


def _pipeline(root: Path, stages: dict) -> Path:
    return write_pipeline(root, stages, PARAMS)


def _runner(name: str, run: str = "r") -> dict:
    return runs.open_run(run).manifest()["stages"][name]["runner"]


def _entry(name: str, run: str = "r") -> dict:
    return runs.open_run(run).manifest()["stages"][name]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("EHRLIB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    (tmp_path / "data").mkdir()
    return tmp_path


# ---------------------------------------------------------------- in-process: what the context records

def test_a_read_that_found_nothing_is_recorded_and_its_file_appearing_changes_the_fingerprint(env):
    st = runs.stage("52_x", run="r", profile="smoke")
    try:
        assert st.read_table("table_audit_copies") is None
        assert st.synthetic_cohort("nobody") is None
        assert st.glob("synthetic", "*.parquet") == []
    finally:
        st.close()
    inputs = _entry("52_x")["inputs"]
    assert {"tables/table_audit_copies.csv", "synthetic/nobody.parquet", "synthetic/*.parquet"} <= set(inputs)
    run = runs.open_run("r")
    before = {rel: runner.fingerprint(run.path / rel) for rel in inputs}
    assert before["tables/table_audit_copies.csv"] is None
    (run.path / "tables").mkdir()
    (run.path / "tables" / "table_audit_copies.csv").write_text("a\n1\n")
    (run.path / "synthetic").mkdir()
    Cohort.from_events(pd.DataFrame({"subject_id": ["1"], "visit_id": [0], "code": ["4019"]})).save(
        run.path / "synthetic" / "m.parquet")
    after = {rel: runner.fingerprint(run.path / rel) for rel in inputs}
    assert after["tables/table_audit_copies.csv"] is not None
    assert after["synthetic/*.parquet"] != before["synthetic/*.parquet"]  # a cohort appeared among those matched


def test_plain_opens_under_the_run_and_data_folders_are_recorded_and_others_are_not(env):
    (env / "data" / "x.csv").write_text("a\n1\n")
    (env / "elsewhere.txt").write_text("not data")
    st = runs.stage("10_y", run="r", profile="smoke")
    try:
        (st.run.path / "notes.txt").write_text("hello")  # a write is not an input
        pd.read_csv(env / "data" / "x.csv")
        open(st.run.path / "notes.txt").read()
        open(env / "elsewhere.txt").read()
        open(env / "data" / "absent.csv", "a").close()  # opened to append: not a read
        st.flush()
        inputs = _entry("10_y")["inputs"]
    finally:
        st.close()
    assert "notes.txt" in inputs and str(env / "data" / "x.csv") in inputs
    assert not any("elsewhere" in i or "absent" in i or "manifest" in i for i in inputs)
    after = runs.stage("10_z", run="r", profile="smoke")  # the closed context records no more
    after.close()
    open(env / "data" / "x.csv").read()
    assert _entry("10_y")["inputs"] == inputs


@pytest.mark.parametrize("source, expected", [
    ("long:d.csv", "long:{cwd}/d.csv"), ("meds:../m", "meds:{parent}/m"), ("mimic3:/abs/x", "mimic3:/abs/x"),
    ("simulated", "simulated"), ("mimic3-demo", "mimic3-demo"),
    ("markov=examples.visit_markov:VisitMarkov", "markov=examples.visit_markov:VisitMarkov"),
])
def test_a_relative_data_path_is_resolved_against_the_users_folder(source, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert registry.resolve_source(source) == expected.format(cwd=tmp_path, parent=tmp_path.parent)


def test_a_large_file_outside_the_run_touched_but_not_changed_is_the_same_and_changed_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprints, "HASH_LIMIT", 4)
    path = tmp_path / "big.csv"
    path.write_text("a,b\n1,2\n")
    recorded, content = fingerprints.fingerprint(path), fingerprints._sha256(path)
    assert recorded.startswith("size=")
    os.utime(path, ns=(1, 1))
    assert fingerprints.fingerprint(path) != recorded and fingerprints._same(path, recorded, content)
    path.write_text("a,b\n1,3\n")
    os.utime(path, ns=(1, 1))
    assert not fingerprints._same(path, recorded, content)


# ---------------------------------------------------------------- through the runner: reruns

READER = {
    "00_data": ([], """
import os, pandas as pd
from ehrlib import runs
from ehrlib.cohort import Cohort
st = runs.stage("00_data", run=run, profile=profile, seed=seed)
st.save_splits(train=Cohort.from_events(pd.DataFrame({"subject_id": ["a", "b"], "visit_id": [0, 0],
                                                      "code": ["4019", "0389"]})))
"""),
    # reads a note in the run folder and a file in the data folder through plain open: no helper declares them
    "10_reads": (["00_data"], """
import os
from ehrlib import runs
st = runs.stage("10_reads", run=run, profile=profile, seed=seed)
print(len(st.train.subject_ids), open(st.run.path / "note.txt").read(),
      open(os.path.join(os.environ["EHRLIB_DATA_DIR"], "codes.txt")).read())
"""),
}


def test_a_file_read_without_any_helper_is_an_input_and_its_change_reruns_the_stage(env):
    repo = _pipeline(env / "repo", READER)
    run = runs.open_run("r")
    (run.path / "note.txt").write_text("one")
    (env / "data" / "codes.txt").write_text("4019")
    runner.reproduce(repo, profile="smoke", run="r", book=False, jobs=1)
    inputs = _entry("10_reads")["inputs"]
    assert "note.txt" in inputs and str(env / "data" / "codes.txt") in inputs and "data/train.parquet" in inputs
    runner.reproduce(repo, profile="smoke", run="r", book=False, jobs=1)
    assert runs.open_run("r").manifest()["runner"]["skipped"] == 2  # nothing changed: nothing runs
    (env / "data" / "codes.txt").write_text("0389")  # the data folder's file
    runner.reproduce(repo, profile="smoke", run="r", book=False, jobs=1)
    assert runs.open_run("r").manifest()["runner"]["executed"] == 1 and _runner("10_reads")["status"] == "ok"
    (run.path / "note.txt").write_text("two")  # the run folder's file
    runner.reproduce(repo, profile="smoke", run="r", book=False, jobs=1)
    assert runs.open_run("r").manifest()["runner"]["executed"] == 1
    executed = json.loads((run.path / "executed" / "10_reads.ipynb").read_text())
    assert "2 two 0389" in json.dumps(executed["cells"][-1]["outputs"])


def test_editing_a_needed_notebook_reruns_the_stage_that_needs_it_even_under_only(env):
    repo = _pipeline(env / "repo", READER)
    (runs.open_run("r").path / "note.txt").write_text("one")
    (env / "data" / "codes.txt").write_text("4019")
    runner.reproduce(repo, profile="smoke", run="r", book=False, jobs=1)
    nb = repo / "notebooks" / "00_data.ipynb"
    cells = json.loads(nb.read_text())
    cells["cells"][-1]["source"] = "# a comment that changes no output\n" + "".join(cells["cells"][-1]["source"])
    nb.write_text(json.dumps(cells))
    runner.reproduce(repo, profile="smoke", run="r", only=["10"], book=False, jobs=1)
    assert runs.open_run("r").manifest()["runner"] == {**runs.open_run("r").manifest()["runner"], "executed": 1,
                                                       "skipped": 0}


# ---------------------------------------------------------------- every --data kind: new contents rerun 00 and after

DATA_STAGES = {
    "00_data": ([], """
from ehrlib import runs
from ehrlib.data import load
st = runs.stage("00_data", run=run, profile=profile, seed=seed, data=data)
cohort = load(data)
st.record(checksum=cohort.checksum())
st.save_splits(train=cohort)
"""),
    "10_count": (["00_data"], """
from ehrlib import runs
st = runs.stage("10_count", run=run, profile=profile, seed=seed)
print("patients:", st.train.n_patients)
"""),
}


def _long(path: Path, n: int) -> None:
    pd.DataFrame({"subject_id": [str(i) for i in range(n)], "visit_id": [0] * n,
                  "code": ["4019"] * n}).to_csv(path, index=False)


def _meds(path: Path, n: int) -> None:
    from ehrlib.data.medsformat import write_meds
    from ehrlib.data.simulate import simulate

    if path.exists():
        shutil.rmtree(path)
    write_meds(simulate(n, seed=n), path)


def _drop_last_patient(table: Path) -> None:
    """New contents for a copied MIMIC table: the rows of its last patient removed."""
    import gzip

    opener = gzip.open if table.suffix == ".gz" else open
    with opener(table, "rt") as f:
        lines = f.read().splitlines(True)
    col = [c.strip('"').lower() for c in lines[0].rstrip("\n").split(",")].index("subject_id")
    last = lines[-1].split(",")[col]
    with opener(table, "wt") as f:
        f.writelines([lines[0]] + [line for line in lines[1:] if line.split(",")[col] != last])


def _mimic3(path: Path, n: int) -> None:
    if not path.exists():
        shutil.copytree(MIMIC3_DEMO, path, ignore=shutil.ignore_patterns("*.txt", "D_ICD*"))
    else:
        _drop_last_patient(path / "DIAGNOSES_ICD.csv")


MIMIC4_TABLES = ("patients.csv.gz", "admissions.csv.gz", "diagnoses_icd.csv.gz")


def _mimic4(path: Path, n: int) -> None:
    if not path.exists():
        shutil.copytree(MIMIC4_DEMO / "hosp", path / "hosp",
                        ignore=lambda d, names: [x for x in names if x not in MIMIC4_TABLES])
    else:
        _drop_last_patient(path / "hosp" / "diagnoses_icd.csv.gz")


def test_new_contents_at_the_same_long_path_rerun_the_data_stage_and_every_stage_after(env, monkeypatch):
    repo = _pipeline(env / "repo", DATA_STAGES)
    user = env / "user"
    user.mkdir()
    monkeypatch.chdir(user)  # the user's folder, not the repository's: the path is relative to it
    (repo / "d.csv").write_text("subject_id,visit_id,code\nrepo,0,4019\n")  # never read
    _long(user / "d.csv", 30)
    runner.reproduce(repo, profile="smoke", run="r", data="long:d.csv", book=False, jobs=1)
    first = _entry("00_data")["results"]["checksum"]
    assert _entry("00_data")["params"]["data"] == f"long:{user / 'd.csv'}"
    assert first == registry.load(f"long:{user / 'd.csv'}").checksum()
    runner.reproduce(repo, profile="smoke", run="r", data="long:d.csv", book=False, jobs=1)
    assert runs.open_run("r").manifest()["runner"]["skipped"] == 2
    _long(user / "d.csv", 20)  # new contents, same path
    runner.reproduce(repo, profile="smoke", run="r", data="long:d.csv", book=False, jobs=1)
    assert runs.open_run("r").manifest()["runner"]["executed"] == 2  # the data stage and the one after it
    now = _entry("00_data")["results"]["checksum"]
    assert now != first and now == registry.load(f"long:{user / 'd.csv'}").checksum()


@pytest.mark.parametrize("kind, make", [
    ("long", _long), ("meds", _meds),
    pytest.param("mimic3", _mimic3, marks=needs_data), pytest.param("mimic4", _mimic4, marks=needs_data),
])
def test_every_data_kind_is_fingerprinted_by_content_and_new_contents_make_the_stage_out_of_date(kind, make, env):
    """The data stage's own check, in this process: the stage context records what ``load`` read."""
    from ehrlib.data import load
    from ehrlib.runner.kernels import StageResult

    repo = _pipeline(env / "repo", {"00_data": DATA_STAGES["00_data"]})
    nb = repo / "notebooks" / "00_data.ipynb"
    src = env / ("src.csv" if kind == "long" else "src")
    source = f"{kind}:{src}"
    make(src, 30)
    run = runs.open_run("r")
    params, code = {"data": source}, "code"

    def execute():
        with runs.stage("00_data", run="r", profile="smoke", data=source) as st:
            st.save_splits(train=load(source))
        (run.path / "executed").mkdir(exist_ok=True)
        shutil.copy2(nb, run.path / "executed" / nb.name)
        fingerprints.record_result(run, nb, StageResult("00_data", "ok"), params, code)

    execute()
    inputs = _entry("00_data")["inputs"]
    assert inputs and all(i.startswith(str(src)) for i in inputs if not i.startswith("data/"))
    assert fingerprints.up_to_date(run, nb, params, code)
    make(src, 20)  # new contents at the same path
    assert not fingerprints.up_to_date(run, nb, params, code)
    execute()
    assert fingerprints.up_to_date(run, nb, params, code)


# ---------------------------------------------------------------- ehrbench fetch, then the main command again

def _page_summary(nb: Path) -> str:
    """The claims summary stage 52 showed (its bold note)."""
    outputs = [o for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", [])]
    text = " ".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    return text


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "paper-samples").is_dir() or not MIMIC3_DEMO.is_dir(),
                    reason=f"{DATA} (paper samples, MIMIC-III demo) not present")
def test_fetch_then_rerun_recomputes_the_paper_stages_and_every_page_shows_the_same_ledger(env):
    from ehrlib.claims import ledger_of_run, summary
    from ehrlib.report import results_page

    only = ["00", "50", "51", "52"]
    runner.reproduce(ROOT, profile="smoke", only=only, book=False, jobs=1)
    run = runs.open_run("smoke")
    before = summary(ledger_of_run(run))
    assert before in _page_summary(run.path / "executed" / "52_paper_vs_ours.ipynb")
    for folder in ("paper-samples", "mimic-iii-demo"):  # what `ehrbench fetch mimic3-demo paper-samples` puts there
        (env / "data" / folder).symlink_to(DATA / folder, target_is_directory=True)
    runner.reproduce(ROOT, profile="smoke", only=only, book=False, jobs=1)
    m = run.manifest()
    assert {k: m["stages"][k]["runner"]["status"] for k in ("00_data", "50_paper_samples", "51_paper_audit",
                                                           "52_paper_vs_ours")} == {
        "00_data": "ok", "50_paper_samples": "ok", "51_paper_audit": "ok", "52_paper_vs_ours": "ok"}
    assert m["runner"]["executed"] == 3 and m["runner"]["skipped"] == 1  # 50-52 ran again, 00 did not
    after = summary(ledger_of_run(run))
    assert after != before  # the released samples and the demo decided claims that were not computed
    assert after in _page_summary(run.path / "executed" / "52_paper_vs_ours.ipynb")  # page 52
    src = env / "src"
    shutil.copytree(ROOT / "book", src / "book")
    from ehrlib.claims.ledger import ARTIFACTS, RUN, ledger_summary

    page, ledger = results_page(run, src).read_text(), ledger_of_run(run)
    for which in (ARTIFACTS, RUN):  # the results page heads each ledger with its own count
        assert ledger_summary(ledger, which) in page and ledger_summary(ledger, which) in after
    assert after in (src / "book" / "intro.md").read_text()  # the first page
    runner.reproduce(ROOT, profile="smoke", only=only, book=False, jobs=1)
    assert run.manifest()["runner"]["skipped"] == 4  # and then nothing is out of date


def test_the_published_workflow_fetches_the_open_data_before_it_builds_the_book():
    import yaml

    steps = [s.get("run", "") for s in yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())[
        "jobs"]["build"]["steps"]]
    fetch = next(i for i, s in enumerate(steps) if "ehrbench fetch" in s)
    build = next(i for i, s in enumerate(steps) if "ehrbench reproduce" in s)
    names = steps[fetch].split("ehrbench fetch", 1)[1].split()
    assert fetch < build and {"mimic3-demo", "paper-samples"} <= set(names) <= set(registry.DATASETS)
