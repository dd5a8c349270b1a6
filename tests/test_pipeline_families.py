"""The evaluation stages compute utility and attribute inference from one context and Table 1 shows them."""
import pandas as pd
import pytest

from ehrlib import pipeline, runs
from ehrlib.data import simulate
from ehrlib.metrics import names


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EHRLIB_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    mp.setenv("TQDM_DISABLE", "1")
    pipeline.split_cohort(runs.stage("00_data", run="t", profile="smoke", seed=0), simulate(600, seed=0))
    pipeline.reference_generators(runs.stage("15_reference_generators", run="t", profile="smoke", seed=0))
    pipeline.evaluate(runs.stage("31_discriminator", run="t", profile="smoke", seed=0), "discriminator", "utility",
                      lstm="no")
    pipeline.evaluate(runs.stage("32_privacy", run="t", profile="smoke", seed=0), "privacy", "attribute_inference")
    stage = runs.stage("33_table1", run="t", profile="smoke", seed=0)
    pipeline.table1(stage)
    yield stage.run.path
    mp.undo()


def test_each_family_is_saved_in_both_protocols_and_the_paper_rows_say_it_has_none(run):
    for family in (names.UTILITY, names.ATTRIBUTE_INFERENCE):
        df = pd.read_csv(run / "metrics" / f"{family}.csv")
        assert set(df.protocol) == set(names.PROTOCOLS)
        paper = df[df.protocol == names.PAPER]
        assert list(paper.metric.unique()) == [names.SUMMARY_METRICS[family]]
        assert paper.estimate.isna().all() and paper.note.str.contains("paper protocol has no").all()
        corrected = df[df.protocol == names.CORRECTED]
        assert {"holdout", "marginals", "memorizer"} == set(corrected.model)
        assert corrected[corrected.metric == names.SUMMARY_METRICS[family]].estimate.notna().all()


def test_table1_gains_a_utility_and_an_attribute_inference_group_in_the_corrected_protocol(run):
    for group, summary in (("utility_tstr", names.UTILITY_RATIO), ("attribute_inference", names.ATTRIBUTE_ADVANTAGE)):
        table = pd.read_csv(run / "tables" / f"table1_{group}.csv")
        assert names.header(summary) in table
        assert "protocol" not in table or set(table.protocol) == {names.CORRECTED}
    wide = pd.read_csv(run / "tables" / "table1.csv")
    assert {names.UTILITY_RATIO, names.ATTRIBUTE_ADVANTAGE} <= set(wide.columns)


def test_the_utility_figure_is_saved_under_its_id(run):
    assert (run / "figures" / "fig_utility.png").is_file() and (run / "figures" / "fig_utility.pdf").is_file()
