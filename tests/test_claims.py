"""The claims ledger: every claim quoted on its line, every rule deciding from measured values."""
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, SHARED_DATA
from ehrlib.claims import FAILS, HOLDS, NOT_RUN, QUALIFIED, UNTESTABLE, VERDICTS, decide, load_claims, misquoted, summary
from ehrlib.claims import rules
from ehrlib.claims.evidence import Evidence, Value, number
from ehrlib.errors import ConfigError
from ehrlib.metrics import names
from ehrlib.metrics.paper import paper_results
from ehrlib.runs import open_run

PAPER_TEXT = ROOT.parent / "shared" / "paper" / "synthetic-ehr-benchmark-paper.txt"
RELEASED = {  # the released samples' Table 12 as the paper prints it (rules compare the two)
    "medgan": (9622, 9622, 1.0, 12.52, 12.52, 2429), "corgan": (10000, 10000, 1.0, 12.56, 12.56, 1467),
    "promptehr": (10000, 12913, 1.29, 9.25, 11.73, 1772), "halo": (9989, 13216, 1.32, 8.17, 9.71, 3849),
    "gpt": (10000, 11583, 1.16, 9.15, 9.90, 2244),
}
T12 = ("patients", "visits", "visits_per_patient", "codes_per_visit", "codes_per_patient", "unique_codes")


def _evidence(tables: dict, data="simulated", profile="demo") -> Evidence:
    return Evidence(lambda t: tables.get(t), data, profile, paper_results())


def _released(changes=None) -> pd.DataFrame:
    rows = [dict(zip(("dataset",) + T12, (m,) + v)) for m, v in RELEASED.items()]
    frame = pd.DataFrame(rows)
    for (model, metric), value in (changes or {}).items():
        frame.loc[frame["dataset"] == model, metric] = value
    return frame


def _tidy(values: dict, width: float = 0.02, protocol=names.PAPER) -> pd.DataFrame:
    """Table 1 tidy rows from ``{(model, metric): estimate}`` with intervals ± ``width``."""
    return pd.DataFrame([{"model": m, "family": "x", "metric": k, "estimate": v, "ci_low": v - width,
                          "ci_high": v + width, "spread": np.nan, "protocol": protocol}
                         for (m, k), v in values.items()])


def _disc(model, score):
    return (model, names.disc_metric(names.paper_discriminator(model), "score")), score


# ---------------------------------------------------------------------------- the ledger file
def test_the_ledger_holds_at_least_fifteen_claims_each_with_a_known_rule():
    claims = load_claims()
    assert len(claims) >= 15
    assert len({c.id for c in claims}) == len(claims)
    assert all(c.rule in rules.RULES for c in claims)


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason="../shared/paper not present")
def test_every_quote_is_on_its_line_of_the_paper():
    assert misquoted(load_claims(), PAPER_TEXT.read_text()) == []


def test_a_quote_on_the_wrong_line_is_reported():
    claims = load_claims()[:1]
    text = "\n".join(["nothing here"] * (claims[0].line + 1))
    assert len(misquoted(claims, text)) == 1


def test_a_claim_naming_an_unknown_rule_is_refused(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text("- {id: x, section: '4', line: 1, quote: q, rule: no_such_rule}\n")
    with pytest.raises(ConfigError, match="no_such_rule"):
        load_claims(bad)


def test_a_quote_that_lost_a_symbol_is_shown_with_a_reading_that_only_adds_brackets():
    claims = load_claims()
    lost = [c for c in claims if "()" in c.quote or " an of " in c.quote]
    assert lost and all(c.reading and c.shown == c.reading for c in lost)
    assert all("()" not in c.shown for c in claims)
    ledger = decide(claims, _evidence({}))
    assert set(ledger["reading"]) == {c.shown for c in claims}


@pytest.mark.parametrize("reading", ["the model [R²] differs", "the model is [R²] good"])
def test_a_reading_that_changes_the_quote_beyond_brackets_is_refused(tmp_path, reading):
    bad = tmp_path / "claims.yaml"
    bad.write_text(f"- {{id: x, section: '4', line: 1, quote: the model is good, rule: {load_claims()[0].rule},\n"
                   f"   reading: '{reading}'}}\n")
    if reading == "the model is [R²] good":
        assert load_claims(bad)[0].shown == reading
    else:
        with pytest.raises(ConfigError, match="bracketed insertions"):
            load_claims(bad)


def test_a_verdict_outside_the_four_and_not_run_is_refused():
    with pytest.raises(ConfigError):
        rules.Verdict("probably")
    assert len(VERDICTS) == 5


# ---------------------------------------------------------------------------- rules on the run's Table 1
def test_ordered_groups_holds_qualifies_or_fails_by_the_intervals():
    base = dict([_disc("halo", 0.6), _disc("promptehr", 0.55), _disc("gpt", 0.58), _disc("medgan", 0.2),
                 _disc("corgan", 0.1)])
    ev = _evidence({"table1_tidy": _tidy(base)})
    assert rules.ordered_groups(ev, names.PAPER_DISC_SCORE).verdict == HOLDS
    ev = _evidence({"table1_tidy": _tidy(base, width=0.2)})
    assert rules.ordered_groups(ev, names.PAPER_DISC_SCORE).verdict == QUALIFIED
    base.update([_disc("corgan", 0.7)])
    v = rules.ordered_groups(_evidence({"table1_tidy": _tidy(base)}), names.PAPER_DISC_SCORE)
    assert v.verdict == FAILS and "corgan paper_disc_score" in v.numbers


def test_a_verdict_on_simulated_data_says_so_and_one_on_mimic3_does_not():
    t = _tidy({(m, names.MIA_ACCURACY): 0.5 for m in rules.PAPER_MODELS}, width=0.01)
    sim = rules.near(_evidence({"table1_tidy": t}), names.MIA_ACCURACY, 0.5, 0.05)
    real = rules.near(_evidence({"table1_tidy": t}, data="mimic3:/data/mimic3", profile="paper"),
                      names.MIA_ACCURACY, 0.5, 0.05)
    assert sim.verdict == real.verdict == HOLDS
    assert "simulated" in sim.source and "not on the paper's models" in sim.note
    assert "mimic3" in real.source and real.note == ""


def test_a_rerun_with_other_numbers_recomputes_the_verdict():
    ok = _tidy({(m, names.NNAAR): 0.01 for m in rules.PAPER_MODELS}, width=0.005)
    leak = _tidy({**{(m, names.NNAAR): 0.01 for m in rules.PAPER_MODELS}, ("gpt", names.NNAAR): 0.3}, width=0.005)
    claim = [c for c in load_claims() if c.id == "nnaar-negligible"]
    assert decide(claim, _evidence({"table1_tidy": ok}))["verdict"].item() == HOLDS
    assert decide(claim, _evidence({"table1_tidy": leak}))["verdict"].item() == FAILS


def test_the_papers_protocol_is_read_where_the_run_has_both():
    both = pd.concat([_tidy({("gpt", names.PREVALENCE_R2): 0.9}, protocol=names.PAPER),
                      _tidy({("gpt", names.PREVALENCE_R2): 0.1}, protocol=names.CORRECTED)])
    assert _evidence({"table1_tidy": both}).metric("gpt", names.PREVALENCE_R2).estimate == 0.9


def test_a_metric_with_only_a_spread_reads_as_two_spreads_either_side():
    v = Value.of(0.5, spread=0.01)
    assert (v.low, v.high) == pytest.approx((0.48, 0.52))


def test_trails_closely_needs_both_below_and_close():
    t = _tidy({("gpt", names.PREVALENCE_R2): 0.87, ("promptehr", names.PREVALENCE_R2): 0.9,
               ("halo", names.PREVALENCE_R2): 0.95})
    assert rules.trails_closely(_evidence({"table1_tidy": t}), names.PREVALENCE_R2, "gpt", ["promptehr", "halo"],
                                0.1).verdict == HOLDS
    assert rules.trails_closely(_evidence({"table1_tidy": t}), names.PREVALENCE_R2, "gpt", ["promptehr", "halo"],
                                0.05).verdict == QUALIFIED


def test_a_claim_whose_stage_did_not_run_says_which_notebook_would_decide_it():
    v = rules.ordered_groups(_evidence({}), names.PAPER_DISC_SCORE)
    assert v.verdict == NOT_RUN and "33_table1" in v.note


# ---------------------------------------------------------------------------- rules on Figure 3
def _fig3(series: dict) -> pd.DataFrame:
    rows = [{"model": m, "percentile": p, "metric": k, "estimate": e, "ci_low": np.nan, "ci_high": np.nan,
             "spread": np.nan, "protocol": names.PAPER}
            for (m, k), values in series.items() for p, e in zip((75.0, 90.0, 95.0, 97.5, 99.0), values)]
    return pd.DataFrame(rows)


def test_tail_rules_read_figure_3_by_percentile():
    ev = _evidence({"fig3_data": _fig3({
        ("halo", names.PREVALENCE_R2): (-0.2, 0.6, 0.7, 0.79, 0.83),
        ("promptehr", names.PREVALENCE_R2): (-7.8, 0.57, 0.69, 0.74, 0.79),
        ("corgan", names.PREVALENCE_R2): (-59.0, -23.7, -9.8, -4.0, -1.3),
        ("corgan", names.PREVALENCE_RMSE): (0.0029, 0.0038, 0.0043, 0.0045, 0.0050),
        ("gpt", names.PREVALENCE_R2): (0.1, 0.5, 0.7, 0.8, 0.4),
    })})
    assert rules.tail_increase(ev, ["halo", "promptehr"], names.PREVALENCE_R2, 0.8, 0.1).verdict == HOLDS
    assert rules.tail_flat(ev, "corgan", names.PREVALENCE_R2, 0.0, 0.1).verdict == FAILS
    spike = rules.tail_spike(ev, "corgan", names.PREVALENCE_RMSE, 2.0)
    assert spike.verdict == FAILS and "1.1" in spike.note
    assert rules.tail_drop_at_end(ev, "gpt", names.PREVALENCE_R2, 0.1).verdict == HOLDS


def test_mia_rising_for_all_but_one_model_holds_with_a_qualification():
    up, down = (0.45, 0.47, 0.49, 0.5, 0.52), (0.55, 0.55, 0.53, 0.52, 0.50)
    series = {(m, k): up for m in ("halo", "promptehr", "medgan") for k in (names.MIA_ACCURACY, names.MIA_F1)}
    series.update({("corgan", names.MIA_ACCURACY): down, ("corgan", names.MIA_F1): up})
    v = rules.tail_rise_for_most(_evidence({"fig3_data": _fig3(series)}), [names.MIA_ACCURACY, names.MIA_F1], 90.0, 99.0)
    assert v.verdict == QUALIFIED and "corgan mia_accuracy" in v.note
    series.update({("corgan", names.MIA_ACCURACY): up})
    four = ["halo", "promptehr", "medgan", "corgan"]
    clean = rules.tail_rise_for_most(_evidence({"fig3_data": _fig3(series)}), [names.MIA_ACCURACY, names.MIA_F1],
                                     90.0, 99.0, models=four)
    assert clean.verdict == HOLDS
    with_gpt = rules.tail_rise_for_most(_evidence({"fig3_data": _fig3(series)}), [names.MIA_ACCURACY, names.MIA_F1],
                                        90.0, 99.0)
    assert with_gpt.verdict == QUALIFIED and "gpt" in with_gpt.note
    at_chance = rules.tail_rise_for_most(_evidence({"fig3_data": _fig3(series)}), [names.MIA_ACCURACY, names.MIA_F1],
                                         90.0, 99.0, models=four, chance=0.5, margin=0.05)
    assert at_chance.verdict == QUALIFIED and "chance" in at_chance.note
    series.update({("corgan", names.MIA_ACCURACY): down})
    series.update({("halo", names.MIA_ACCURACY): down})
    v = rules.tail_rise_for_most(_evidence({"fig3_data": _fig3(series)}), [names.MIA_ACCURACY, names.MIA_F1], 90.0, 99.0)
    assert v.verdict == FAILS


# ---------------------------------------------------------------------------- the paper's artifacts
def test_released_values_that_differ_from_the_printed_table_are_a_finding():
    assert rules.released_matches_printed(_evidence({"table12_released": _released()}), "unique_codes",
                                          ["gpt"], table="13").verdict == HOLDS
    v = rules.released_matches_printed(_evidence({"table12_released": _released({("gpt", "unique_codes"): 2300})}),
                                       "unique_codes", ["gpt"], table="13")
    assert v.verdict == FAILS and "disagree" in v.note and v.stage == "50_paper_samples"


def test_closest_among_the_sequential_models_is_qualified_when_a_flat_one_is_closer():
    v = rules.released_closest(_evidence({"table12_released": _released()}), "codes_per_patient", "promptehr",
                               ["halo", "promptehr", "gpt"])
    assert v.verdict == QUALIFIED and "medgan" in v.note and "corgan" in v.note


def test_gpt_does_not_emit_fewer_codes_than_promptehr_in_the_released_samples():
    v = rules.released_fewer_than(_evidence({"table12_released": _released()}), "unique_codes", "gpt",
                                  ["halo", "promptehr"])
    assert v.verdict == FAILS and "promptehr" in v.note


def test_the_text_contradicting_its_own_table_13_is_the_verdict():
    v = rules.best_in_table(_evidence({}), "13", "halo", higher=["top10", "top50"], lower=["kl"], worst="corgan")
    assert v.verdict == FAILS and "own table" in v.note and "medgan" in v.note


def test_no_released_samples_is_not_computed_rather_than_a_verdict():
    assert rules.released_extreme(_evidence({}), "unique_codes", "corgan").verdict == NOT_RUN


def test_memorisation_is_decided_against_the_marginals_control():
    def audit(copied, control):
        rows = []
        for m in rules.PAPER_MODELS:
            for comparison, k in (("sample", copied.get(m, 0)), ("marginals", control)):
                rows.append({"synthetic": m, "comparison": comparison, "role": "train-list", "min_codes": 5,
                             "eligible": 80, "copied": k, "rate": k / 80, "ci_low": 0.0, "ci_high": 0.05,
                             "detectable_rate": 0.037})
        return pd.DataFrame(rows)

    clean = rules.no_memorisation(_evidence({"table_audit_copies": audit({}, 0)}))
    assert clean.verdict == QUALIFIED and "4%" in clean.note and clean.stage == "51_paper_audit"
    leaky = rules.no_memorisation(_evidence({"table_audit_copies": audit({"halo": 3}, 0)}))
    assert leaky.verdict == FAILS and "halo" in leaky.note


@pytest.mark.skipif(not (SHARED_DATA / "paper-samples").is_dir(), reason="../shared/data/paper-samples not present")
def test_the_released_samples_decide_the_table_12_claims():
    from ehrlib.data.registry import load_paper_samples
    from ehrlib.metrics.structure import summary_table

    with pytest.warns(UserWarning):  # the released files' nan codes and repeated codes are counted
        table = summary_table(load_paper_samples(SHARED_DATA))
    ledger = decide(load_claims(), _evidence({"table12_released": table}))
    verdict = dict(zip(ledger["claim"], ledger["verdict"]))
    assert verdict["table12-released-values"] == HOLDS
    assert verdict["gpt-emits-2244-codes"] == HOLDS
    assert verdict["gpt-fewer-codes-than-sequential"] == FAILS
    assert verdict["coverage-55-to-21-percent"] == QUALIFIED


# ---------------------------------------------------------------------------- the page
def test_the_summary_counts_every_verdict():
    ledger = pd.DataFrame({"verdict": [HOLDS, QUALIFIED, FAILS, UNTESTABLE, NOT_RUN]})
    assert summary(ledger) == ("5 claims: 2 hold (1 of them with a qualification), 1 do not hold, 1 cannot be tested "
                               "with open data, 1 were not computed in this run.")
    ledger = pd.DataFrame({"verdict": [HOLDS, NOT_RUN, NOT_RUN], "stage": ["33_table1", "50_paper_samples", "33_table1"]})
    assert summary(ledger) == ("3 claims: 1 hold (0 of them with a qualification), 0 do not hold, 0 cannot be tested "
                               "with open data, 2 were not computed in this run (1 of them need the open data this run "
                               "did not have: `ehrbench fetch paper-samples mimic3-demo`, then rerun).")


def test_numbers_are_printed_without_exponents_or_trailing_zeros():
    assert number(45517.0) == "45517"
    assert number(0.00001234) == "0.000012"
    assert number(0.35504) == "0.355"


def test_the_results_page_leads_with_the_verdicts_and_links_each_to_its_notebook(tmp_path):
    from ehrlib.report import results_page

    run = open_run("r", root=tmp_path / "runs")
    run.record("00_data", data="simulated", profile="demo", seed=0)
    tables = run.path / "tables"
    tables.mkdir()
    _released().to_csv(tables / "table12_released.csv", index=False)
    (tables / "table1_fidelity.md").write_text("| model | R² |\n|---|---|\n| halo | 0.9 |\n")
    page = results_page(run, tmp_path / "src").read_text()
    assert page.index("Which of the paper's claims hold") < page.index("## Table 1")
    assert f"{len(load_claims())} claims:" in page
    assert "{doc}`50_paper_samples <../notebooks/50_paper_samples>`" in page
    assert "gpt-fewer" not in page and "the GPT baseline also generates fewer unique codes" in page


# ---------------------------------------------------------------------------- the authors' results file
def _authors_file(tmp_path, series: dict):
    """A file in the format of the authors' long_tailed_ablation.csv, with made-up values."""
    from ehrlib.claims.evidence import AUTHORS_METRICS
    from ehrlib.data.registry import PAPER_SAMPLE_FILES

    rows = []
    for model, by_percentile in series.items():
        for p, values in by_percentile.items():
            row = {c: 0.5 for c in AUTHORS_METRICS}
            row.update(values)
            rows.append({**row, "method": PAPER_SAMPLE_FILES[model].removesuffix(".csv"), "long_tailed_percentile": p})
    path = tmp_path / "long_tailed_ablation.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_the_authors_results_file_decides_figure_3_claims_before_the_run(tmp_path):
    from ehrlib.claims.evidence import AUTHORS, read_authors_fig3

    ps = (75.0, 90.0, 95.0, 97.5, 99.0)
    corgan = {p: {"Prevalence_R2": r} for p, r in zip(ps, (-59.0, -23.7, -9.8, -4.0, -1.3))}
    gpt = {75.0: {"Prevalence_R2": -2.4}, 90.0: {"Prevalence_R2": 0.16}}  # no rows past 90
    authors = read_authors_fig3(_authors_file(tmp_path, {"corgan": corgan, "gpt": gpt}))
    run_fig3 = _fig3({("gpt", names.PREVALENCE_R2): (0.1, 0.5, 0.7, 0.8, 0.4)})
    ev = Evidence(lambda t: {"fig3_data": run_fig3}.get(t), "simulated", "demo", paper_results(), authors)
    flat = rules.tail_flat(ev, "corgan", names.PREVALENCE_R2, 0.0, 0.1)
    assert flat.verdict == FAILS and flat.source == AUTHORS
    drop = rules.tail_drop_at_end(ev, "gpt", names.PREVALENCE_R2, 0.1)
    assert drop.verdict == HOLDS and "simulated" in drop.source
    assert "authors' results file has no rows for gpt prevalence_r2 at 97.5, 99" in drop.note


def test_an_authors_file_without_a_needed_column_is_refused_by_name(tmp_path):
    from ehrlib.claims.evidence import read_authors_fig3
    from ehrlib.errors import MetricError

    path = tmp_path / "x.csv"
    pd.DataFrame({"method": ["synthetic_10k_halo"], "long_tailed_percentile": [75.0]}).to_csv(path, index=False)
    with pytest.raises(MetricError, match="Prevalence_R2"):
        read_authors_fig3(path)


def _table14(cosines: dict, width=0.005) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "cosine": c, "cosine_ci_low": c - width, "cosine_ci_high": c + width}
                         for m, c in cosines.items()])


def test_cooccurrence_claims_check_the_papers_own_table_then_the_runs():
    printed_only = rules.within_of_one(_evidence({}), "14", "cosine", ["halo", "medgan"], 0.03, run_table="table14")
    assert printed_only.verdict == QUALIFIED and "own Table 14 agrees" in printed_only.note
    close = _table14({"halo": 0.99, "medgan": 0.985})
    v = rules.within_of_one(_evidence({"table14": close}), "14", "cosine", ["halo", "medgan"], 0.03, run_table="table14")
    assert v.verdict == HOLDS and v.stage == "44_cooccurrence"
    order = _table14({"medgan": 0.99, "halo": 0.98, "gpt": 0.97, "corgan": 0.5, "promptehr": 0.4})
    top = rules.ranks_in_table(_evidence({"table14": order}), "14", "cosine", ["medgan", "halo"], ["corgan", "promptehr"],
                               run_table="table14")
    assert top.verdict == HOLDS
    swapped = _table14({"medgan": 0.99, "gpt": 0.98, "halo": 0.97, "corgan": 0.5, "promptehr": 0.4})
    assert rules.ranks_in_table(_evidence({"table14": swapped}), "14", "cosine", ["medgan", "halo"],
                                ["corgan", "promptehr"], run_table="table14").verdict == FAILS


def test_a_runs_evidence_reads_the_authors_results_file_shipped_with_ehrlib(tmp_path):
    """The shipped file (the authors' results/long_tailed_ablation.csv) decides the Figure 3 claims
    it covers on any run, even one without a Figure 3; the GPT rows stop at 90, so a GPT claim at
    97.5 and 99 is left to the run and says why."""
    from ehrlib.claims.evidence import AUTHORS
    from ehrlib.data.registry import AUTHORS_FIG3

    ev = Evidence.of_run(open_run("run", tmp_path))
    assert ev.authors_fig3 is not None
    assert set(ev.authors_fig3["model"]) == {"medgan", "corgan", "promptehr", "halo", "gpt"}
    assert sorted(ev.authors("gpt", names.PREVALENCE_R2)) == [75.0, 90.0]
    raw = pd.read_csv(AUTHORS_FIG3)
    halo = raw[raw["method"] == "synthetic_10k_halo"].set_index("long_tailed_percentile")["Prevalence_R2"]
    assert ev.authors("halo", names.PREVALENCE_R2)[99.0].estimate == halo[99.0]
    rise = rules.tail_increase(ev, ["halo", "promptehr"], names.PREVALENCE_R2, 0.8, 0.1)
    assert rise.source == AUTHORS and rise.verdict in VERDICTS and rise.verdict != NOT_RUN
    gpt = rules.tail_drop_at_end(ev, "gpt", names.PREVALENCE_R2, 0.1)
    assert gpt.verdict == NOT_RUN and "no rows for gpt" in gpt.note
