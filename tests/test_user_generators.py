"""Your own generator: names, entry points, the failure modes, and a smoke run through the stages."""
import json
import re
import textwrap

import pandas as pd
import pytest

from conftest import ROOT
from ehrlib.data import simulate
from ehrlib.errors import ConfigError, GeneratorError, RunError
from ehrlib.models import user

MARKOV = "examples.visit_markov:VisitMarkov"

BAD_GENERATORS = '''
import time


class Raises:
    def fit(self, train):
        raise ValueError("no convergence")

    def generate(self, n, seed=0):
        return None


class WrongType:
    def fit(self, train):
        return self

    def generate(self, n, seed=0):
        return [[["4019"]]] * n


class RealIds:
    def fit(self, train):
        self.train = train
        return self

    def generate(self, n, seed=0):
        return self.train.subset(self.train.subject_ids[:n])


class Slow:
    def fit(self, train):
        time.sleep(120)

    def generate(self, n, seed=0):
        return None

'''


@pytest.fixture
def bad_module(tmp_path, monkeypatch):
    """A module of misbehaving generators, importable here and in the processes that run them."""
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "bad_generators.py").write_text(textwrap.dedent(BAD_GENERATORS))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", f"{folder}:{ROOT}")
    return "bad_generators"


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    cohort = simulate(300, seed=0)
    path = tmp_path_factory.mktemp("train") / "train.parquet"
    cohort.save(path)
    return path, cohort


# ---------------------------------------------------------------------------- names
def test_generators_are_named_name_equals_module_colon_class():
    assert user.parse(f"markov={MARKOV}, other=pkg.mod:Gen") == [
        user.UserGenerator("markov", MARKOV, "--generator"), user.UserGenerator("other", "pkg.mod:Gen", "--generator")]
    assert user.parse("") == []


@pytest.mark.parametrize("text, message", [
    ("markov", "expected NAME=module:Class"),
    ("Markov=a:B", "lower-case letters"),
    ("halo=a:B", "built-in generator"),
    ("markov=a.b", "expected module:Class"),
])
def test_bad_generator_names_are_refused_saying_what_is_expected(text, message):
    with pytest.raises(ConfigError, match=message):
        user.parse(text)


def test_one_name_given_twice_on_the_command_line_is_refused():
    with pytest.raises(ConfigError, match="given twice"):
        user.named("a=m:A,a=m:B")


def test_user_cohorts_are_labelled_user_supplied_in_figures():
    from ehrlib.plots import model_label

    assert model_label("user_markov") == "markov (user-supplied)"
    assert model_label("halo") == "HALO"


def test_installed_entry_points_are_discovered(tmp_path, monkeypatch):
    dist = tmp_path / "site" / "my_generators-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-generators\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{user.ENTRY_POINT_GROUP}]\nmarkov2 = {MARKOV}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    found = {g.name: g for g in user.named("markov=" + MARKOV)}
    assert found["markov2"].spec == MARKOV and "my-generators" in found["markov2"].origin
    assert found["markov"].origin == "--generator"
    assert [g.spec for g in user.named("markov2=pkg.mod:Mine") if g.name == "markov2"] == ["pkg.mod:Mine"]


def test_a_malformed_entry_point_fails_alone_when_problems_are_collected(tmp_path, monkeypatch):
    dist = tmp_path / "site" / "broken-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{user.ENTRY_POINT_GROUP}]\nhalo = pkg:Gen\nfine = {MARKOV}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ConfigError, match="built-in generator"):
        user.named("")
    problems = {}
    assert [g.name for g in user.named("", problems=problems)] == ["fine"]
    assert "built-in generator" in problems["user_halo"]


# ---------------------------------------------------------------------------- running one
def test_the_example_generator_runs_in_its_own_process_and_is_deterministic(train_file):
    path, train = train_file
    g = user.UserGenerator("markov", MARKOV, "--generator")
    a = user.fit_and_generate(g, path, 50, 3, 120, real_ids=train.subject_ids)
    b = user.fit_and_generate(g, path, 50, 3, 120, real_ids=train.subject_ids)
    assert a.n_patients == 50 and a.checksum() == b.checksum()
    assert not set(a.subject_ids) & set(train.subject_ids)


@pytest.mark.parametrize("cls, message", [
    ("Raises", r"fit failed: ValueError: no convergence"),
    ("WrongType", r"generate failed: GeneratorError: returned a list, expected an ehrlib.Cohort"),
    ("RealIds", r"returns records with real subject ids"),
    ("NoSuchClass", r"import failed: .*has no 'NoSuchClass'"),
])
def test_a_misbehaving_generator_is_an_error_naming_it(bad_module, train_file, cls, message):
    path, train = train_file
    g = user.UserGenerator("bad", f"{bad_module}:{cls}", "--generator")
    with pytest.raises(GeneratorError, match=rf"^bad \({bad_module}:{cls}\): .*{message}"):
        user.fit_and_generate(g, path, 20, 0, 120, real_ids=train.subject_ids)


def test_a_generator_past_its_time_limit_is_stopped(bad_module, train_file):
    import time

    path, _ = train_file
    t0 = time.time()
    with pytest.raises(GeneratorError, match=r"slow .*did not finish fit and generate within 3 s; stopped"):
        user.fit_and_generate(user.UserGenerator("slow", f"{bad_module}:Slow", "x"), path, 20, 0, 3)
    assert time.time() - t0 < 30


# ---------------------------------------------------------------------------- the smoke run
@pytest.mark.slow
def test_user_generators_go_through_the_stages_and_failures_are_reported_by_name(tmp_path, monkeypatch,
                                                                                 bad_module):
    """A smoke run of the stages a user generator passes through (00, 15, 17, 20, the metrics,
    Table 1, the structure, chapter, co-occurrence and long-tail figures): the example is in
    every table and figure's data; a raising generator is a failed stage by name, in Table 1 and
    on the results page, and the rest of the run goes on."""
    from ehrlib import book
    from ehrlib.report import results_page
    from ehrlib.runner import reproduce
    from ehrlib.runs import open_run

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    generators = f"markov={MARKOV},boom={bad_module}:Raises"
    with pytest.raises(RunError, match=r"user_boom: boom \(bad_generators:Raises\): fit failed"):
        reproduce(ROOT, profile="smoke", run="user", book=False, settings={"generators": generators},
                  only=["00", "15", "17", "20", "30", "31", "32", "33", "40", "41", "42", "43", "44"])
    run = open_run("user")
    stages = run.manifest()["stages"]
    assert all(stages[s]["runner"]["status"] == "ok" for s in stages if "runner" in stages[s]), \
        {s: stages[s]["runner"]["error"] for s in stages if stages[s].get("runner", {}).get("status") != "ok"}
    assert sorted(run.synthetic()) == ["holdout", "marginals", "memorizer", "user_markov"]
    tables = run.path / book.TABLES_DIR
    table1 = pd.read_csv(tables / "table1.csv")
    assert "user_markov" in set(table1["model"])
    assert table1.loc[table1["model"] == "user_boom", "status"].str.contains("fit failed").all()
    for table_id, column in (("table12", None), ("table13", "model"), ("table14", "model"), ("fig3_data", "model"),
                             ("fig8_data", "model"), ("fig12_data", None)):
        frame = pd.read_csv(tables / f"{table_id}.csv")
        assert frame.astype(str).apply(lambda c: c.str.contains("user_markov")).any().any(), table_id
    figures = {p.stem for p in (run.path / book.FIGURES_DIR).glob("*.png")}
    assert {"fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9", "fig10", "fig11", "fig12", "fig13"} <= figures
    page = results_page(run, tmp_path / "src").read_text()
    assert "`user_markov`: `examples.visit_markov:VisitMarkov`" in page and "`user_boom`" in page
    assert "user_markov" in page.split("## Table 1")[1].split("## ")[0]
    # the run exports valid MEDS: every synthetic cohort but the real-record ones, and the real splits
    import meds
    import pyarrow.parquet as pq

    from ehrlib.export import export_run

    written = export_run(run, tmp_path / "meds")
    assert sorted(p.name for p in written) == ["marginals", "user_markov"]
    written += export_run(run, tmp_path / "meds" / "real", what="real")
    for root in written:
        for shard in (root / "data").glob("*.parquet"):
            meds.DataSchema.validate(pq.read_table(shard))
        meds.CodeMetadataSchema.validate(pq.read_table(root / meds.code_metadata_filepath))
        meds.SubjectSplitSchema.validate(pq.read_table(root / meds.subject_splits_filepath))
    info = json.loads((tmp_path / "meds" / "user_markov" / meds.dataset_metadata_filepath).read_text())["ehrlib"]
    assert (info["generator"], info["profile"], info["seed"]) == ("user_markov", "smoke", 0)


@pytest.mark.slow
def test_the_smoke_book_shows_the_user_generator_in_table1_the_figures_and_the_results_page(smoke_build):
    """The smoke book is built with ``--generator markov=...`` (conftest.SMOKE_GENERATORS). Only the
    built pages are read: later tests (nbmake) rerun the notebooks in the same run folder."""
    html, _ = smoke_build
    page = (html / "notebooks" / "17_user_generators.html").read_text()
    assert re.search(r">user_markov</td>\s*<td[^>]*>examples\.visit_markov:VisitMarkov</td>\s*<td[^>]*>ok</td>", page)
    for name in ("33_table1", "41_longtail_marginals", "42_structure", "44_cooccurrence"):
        assert "user_markov" in (html / "notebooks" / f"{name}.html").read_text(), name
    assert "user_markov" in (html / "book" / "results.html").read_text()


def test_the_command_line_passes_every_generator_to_the_stage(monkeypatch):
    from ehrlib import cli

    seen = {}
    monkeypatch.setattr(cli, "reproduce", lambda *a, **kw: seen.update(kw))
    assert cli.main(["reproduce", "--root", str(ROOT), "--no-book", "--generator", f"markov={MARKOV}",
                     "--generator", "other=pkg.mod:Gen"]) == 0
    assert seen["settings"]["generators"] == f"markov={MARKOV},other=pkg.mod:Gen"


def test_a_malformed_generator_option_is_refused_by_the_parser(capsys):
    from ehrlib import cli

    with pytest.raises(SystemExit):
        cli.parser().parse_args(["reproduce", "--generator", "markov"])
    assert "expected NAME=module:Class" in capsys.readouterr().err


def test_what_a_generator_prints_is_shown_on_the_page_not_lost(bad_module, train_file, capsys, tmp_path,
                                                               monkeypatch):
    path, _ = train_file
    folder = tmp_path / "talk"
    folder.mkdir()
    (folder / "talkative.py").write_text(textwrap.dedent(f"""
        import sys
        from {MARKOV.split(':')[0]} import VisitMarkov


        class Talkative(VisitMarkov):
            def _fit(self, train, options):
                print("epoch 1 of 1")
                print("a warning", file=sys.stderr)
                super()._fit(train, options)
    """))
    monkeypatch.syspath_prepend(str(folder))
    user.fit_and_generate(user.UserGenerator("talk", "talkative:Talkative", "x"), path, 10, 0, 120)
    out = capsys.readouterr().out
    assert "talk printed:" in out and "epoch 1 of 1" in out and "a warning" in out
