"""The claims ledger: every claim quoted on its line, every rule deciding from measured values."""
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, SHARED_DATA
from ehrlib.claims import FAILS, HOLDS, NOT_RUN, UNTESTABLE, VERDICTS, decide, load_claims, misquoted, summary
from ehrlib.claims import checks, rules
from ehrlib.claims.ledger import COMPOSITE, counts
from ehrlib.claims.verdict import ARTIFACTS, DEGENERATE, NOT_REPRODUCED, PARTLY, REPRODUCED, RUN, UNDECIDABLE
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


def _evidence(tables: dict, data="simulated", profile="demo", view=None) -> Evidence:
    ev = Evidence(lambda t: tables.get(t), data, profile, paper_results())
    return ev.view(view) if view else ev


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
    assert all(c.rule in rules.RULES or c.rule == COMPOSITE for c in claims)
    assert all(not c.run_rule or c.run_rule in rules.RULES for c in claims)


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


def test_a_verdict_outside_the_two_vocabularies_is_refused():
    with pytest.raises(ConfigError):
        rules.Verdict("probably")
    assert set(VERDICTS) == {HOLDS, PARTLY, FAILS, UNDECIDABLE, UNTESTABLE, NOT_RUN, REPRODUCED, NOT_REPRODUCED}


# ---------------------------------------------------------------------------- rules on the run's Table 1
def test_ordered_groups_holds_is_undecidable_or_fails_by_the_intervals():
    base = dict([_disc("halo", 0.6), _disc("promptehr", 0.55), _disc("gpt", 0.58), _disc("medgan", 0.2),
                 _disc("corgan", 0.1)])
    ev = _evidence({"table1_tidy": _tidy(base)})
    assert rules.ordered_groups(ev, names.PAPER_DISC_SCORE).verdict == HOLDS
    ev = _evidence({"table1_tidy": _tidy(base, width=0.2)})
    v = rules.ordered_groups(ev, names.PAPER_DISC_SCORE)
    assert v.verdict == UNDECIDABLE and "not ordered" in v.note  # overlapping intervals order nothing
    flipped = dict([_disc("halo", 0.1), _disc("promptehr", 0.15), _disc("gpt", 0.12), _disc("medgan", 0.6),
                    _disc("corgan", 0.7)])
    v = rules.ordered_groups(_evidence({"table1_tidy": _tidy(flipped)}), names.PAPER_DISC_SCORE)
    assert v.verdict == FAILS and "corgan Disc. Score" in v.numbers
    base.update([_disc("corgan", 0.57)])  # inside the sequential models' range: not ordered
    assert rules.ordered_groups(_evidence({"table1_tidy": _tidy(base)}), names.PAPER_DISC_SCORE).verdict == UNDECIDABLE


def test_a_verdict_on_simulated_data_says_so_and_one_on_mimic3_does_not():
    t = _tidy({(m, names.MIA_ACCURACY): 0.5 for m in rules.PAPER_MODELS}, width=0.01)
    sim = rules.near(_evidence({"table1_tidy": t}), names.MIA_ACCURACY, 0.5, 0.05)
    real = rules.near(_evidence({"table1_tidy": t}, data="mimic3:/data/mimic3", profile="paper"),
                      names.MIA_ACCURACY, 0.5, 0.05)
    assert sim.verdict == real.verdict == HOLDS
    assert "simulated" in sim.source and "mimic3" in real.source


def test_a_rerun_with_other_numbers_recomputes_the_verdict():
    ok = _tidy({(m, names.NNAAR): 0.01 for m in rules.PAPER_MODELS}, width=0.005)
    leak = _tidy({**{(m, names.NNAAR): 0.01 for m in rules.PAPER_MODELS}, ("gpt", names.NNAAR): 0.3}, width=0.005)
    claim = [c for c in load_claims() if c.id == "nnaar-negligible"]
    on_run = lambda t: decide(claim, _evidence({"table1_tidy": t})).query("ledger == 'B'")["verdict"].item()  # noqa: E731
    assert on_run(ok) == REPRODUCED
    assert on_run(leak) == NOT_REPRODUCED


def test_the_papers_protocol_is_read_where_the_run_has_both():
    both = pd.concat([_tidy({("gpt", names.PREVALENCE_R2): 0.9}, protocol=names.PAPER),
                      _tidy({("gpt", names.PREVALENCE_R2): 0.1}, protocol=names.CORRECTED)])
    assert _evidence({"table1_tidy": both}).metric("gpt", names.PREVALENCE_R2).estimate == 0.9


def test_a_metric_with_only_a_spread_is_decided_on_two_spreads_and_shown_as_table_1_shows_it():
    v = Value.of(0.5, spread=0.01)
    assert (v.low, v.high) == pytest.approx((0.48, 0.52))
    assert v.text() == "0.5 ± 0.01"


def test_trails_closely_needs_both_below_and_close():
    t = _tidy({("gpt", names.PREVALENCE_R2): 0.87, ("promptehr", names.PREVALENCE_R2): 0.9,
               ("halo", names.PREVALENCE_R2): 0.95}, width=0.005)
    assert rules.trails_closely(_evidence({"table1_tidy": t}), names.PREVALENCE_R2, "gpt", ["promptehr", "halo"],
                                0.2).verdict == HOLDS
    assert rules.trails_closely(_evidence({"table1_tidy": t}), names.PREVALENCE_R2, "gpt", ["promptehr", "halo"],
                                0.01).verdict == FAILS
    assert rules.trails_closely(_evidence({"table1_tidy": t}), names.PREVALENCE_R2, "gpt", ["promptehr", "halo"],
                                0.05).verdict == UNDECIDABLE  # the gap's interval (0.02 to 0.09) straddles 0.05
    close = _tidy({("gpt", names.PREVALENCE_R2): 0.9535, ("promptehr", names.PREVALENCE_R2): 0.9521,
                   ("halo", names.PREVALENCE_R2): 0.99}, width=0.01)
    v = rules.trails_closely(_evidence({"table1_tidy": close}), names.PREVALENCE_R2, "gpt", ["promptehr", "halo"], 0.05)
    assert v.verdict == UNDECIDABLE and "not ordered" in v.note  # a reversal within the intervals is no reversal


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


def test_mia_rising_for_all_but_one_model_holds_and_a_model_without_values_leaves_it_undecided():
    up, down = (0.45, 0.47, 0.49, 0.5, 0.52), (0.55, 0.55, 0.53, 0.52, 0.50)
    series = {(m, k): up for m in ("halo", "promptehr", "medgan") for k in (names.MIA_ACCURACY, names.MIA_F1)}
    series.update({("corgan", names.MIA_ACCURACY): down, ("corgan", names.MIA_F1): up})
    four = ["halo", "promptehr", "medgan", "corgan"]
    v = rules.tail_rise_for_most(_evidence({"fig3_data": _fig3(series)}), [names.MIA_ACCURACY, names.MIA_F1], 90.0, 99.0,
                                 models=four)
    assert v.verdict == HOLDS and "corgan mia_accuracy" in v.note  # "nearly all": one exception allowed
    series.update({("corgan", names.MIA_ACCURACY): up})
    clean = rules.tail_rise_for_most(_evidence({"fig3_data": _fig3(series)}), [names.MIA_ACCURACY, names.MIA_F1],
                                     90.0, 99.0, models=four)
    assert clean.verdict == HOLDS
    with_gpt = rules.tail_rise_for_most(_evidence({"fig3_data": _fig3(series)}), [names.MIA_ACCURACY, names.MIA_F1],
                                        90.0, 99.0)
    assert with_gpt.verdict == UNDECIDABLE and "gpt" in with_gpt.note  # on the run: a model without values
    at_chance = rules.tail_rise_for_most(_evidence({"fig3_data": _fig3(series)}), [names.MIA_ACCURACY, names.MIA_F1],
                                         90.0, 99.0, models=four, chance=0.5, margin=0.05)
    assert at_chance.verdict == HOLDS and "chance" in at_chance.note
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
    assert v.verdict == PARTLY and "medgan" in v.note and "corgan" in v.note


def test_gpt_does_not_emit_fewer_codes_than_promptehr_in_the_released_samples():
    v = rules.released_fewer_than(_evidence({"table12_released": _released()}), "unique_codes", "gpt",
                                  ["halo", "promptehr"])
    assert v.verdict == FAILS and "promptehr" in v.note


def test_the_text_contradicting_its_own_table_13_is_the_verdict():
    v = rules.best_in_table(_evidence({}, view=ARTIFACTS), "13", "halo", higher=["top10", "top50"], lower=["kl"],
                            worst="corgan")
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
    assert clean.verdict == UNDECIDABLE and "4%" in clean.note and clean.stage == "51_paper_audit"
    leaky = rules.no_memorisation(_evidence({"table_audit_copies": audit({"halo": 3}, 0)}))
    assert leaky.verdict == FAILS and "halo" in leaky.note


@pytest.mark.skipif(not (SHARED_DATA / "paper-samples").is_dir(), reason="../shared/data/paper-samples not present")
def test_the_released_samples_decide_the_table_12_claims():
    from ehrlib.data.registry import load_paper_samples
    from ehrlib.metrics.structure import summary_table

    with pytest.warns(UserWarning):  # the released files' nan codes and repeated codes are counted
        table = summary_table(load_paper_samples(SHARED_DATA))
    ledger = decide(load_claims(), _evidence({"table12_released": table}))
    a = ledger[ledger["ledger"] == ARTIFACTS]
    verdict = dict(zip(a["claim"], a["verdict"]))
    assert verdict["table12-released-values"] == HOLDS
    assert verdict["gpt-emits-2244-codes"] == HOLDS
    assert verdict["gpt-fewer-codes-than-sequential"] == FAILS
    assert verdict["coverage-55-to-21-percent"] == HOLDS


# ---------------------------------------------------------------------------- the page
def test_each_ledger_has_its_own_headline_count_and_sub_claims_count_in_their_parent():
    ledger = pd.DataFrame({"verdict": [HOLDS, FAILS, NOT_RUN, REPRODUCED, NOT_REPRODUCED, UNDECIDABLE, HOLDS],
                           "ledger": [ARTIFACTS, ARTIFACTS, ARTIFACTS, RUN, RUN, RUN, ARTIFACTS],
                           "parent": ["", "", "", "", "", "", "x"],
                           "stage": ["", "", "50_paper_samples", "", "", "", ""]})
    assert counts(ledger, ARTIFACTS) == {HOLDS: 1, FAILS: 1, NOT_RUN: 1}
    assert counts(ledger, RUN) == {REPRODUCED: 1, NOT_REPRODUCED: 1, UNDECIDABLE: 1}
    text = summary(ledger)
    assert text.index("(A): 3 claims: 1 holds, 1 does not hold") < text.index("(B): 3 claims tested: 1 reproduced")
    assert "1 need the open data" in text and "1 parts inside" in text


def test_numbers_are_printed_without_exponents_or_trailing_zeros():
    assert number(45517.0) == "45517"
    assert number(0.00001234) == "0.00001234"
    assert number(0.3551) == "0.3551" and number(0.355) == "0.355"
    assert number(0.94995) != "0.95" and float(number(0.94995)) < 0.95  # rounding never hides a bound's miss
    assert number(0.35504) == "0.35504"


def test_the_results_page_leads_with_the_verdicts_and_links_each_to_its_notebook(tmp_path):
    from ehrlib.report import results_page

    run = open_run("r", root=tmp_path / "runs")
    run.record("00_data", data="simulated", profile="demo", seed=0)
    tables = run.path / "tables"
    tables.mkdir()
    _released().to_csv(tables / "table12_released.csv", index=False)
    (tables / "table1_fidelity.md").write_text("| model | R² |\n|---|---|\n| halo | 0.9 |\n")
    page = results_page(run, tmp_path / "src").read_text()
    assert page.index("## Findings") < page.index("Which of the paper's claims hold") < page.index("Ledger B") \
        < page.index("## Table 1")
    top = [c for c in load_claims() if not c.parent]
    assert f"{len(top)} claims:" in page
    assert 'href="../notebooks/50_paper_samples.html"' in page and '<details class="claim">' in page
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
    flat = rules.tail_flat(ev.view(ARTIFACTS), "corgan", names.PREVALENCE_R2, 0.0, 0.1)
    assert flat.verdict == FAILS and flat.source == AUTHORS
    gap = rules.tail_drop_at_end(ev.view(ARTIFACTS), "gpt", names.PREVALENCE_R2, 0.1)
    assert gap.verdict == UNDECIDABLE and "authors' results file has no rows for gpt prevalence_r2 at 97.5, 99" in gap.note
    drop = rules.tail_drop_at_end(ev.view(RUN), "gpt", names.PREVALENCE_R2, 0.1)
    assert drop.verdict == HOLDS and "simulated" in drop.source


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
    printed_only = rules.within_of_one(_evidence({}, view=ARTIFACTS), "14", "cosine", ["halo", "medgan"], 0.03,
                                       run_table="table14")
    assert printed_only.verdict == UNDECIDABLE and "own Table 14 agrees" in printed_only.note
    close = _table14({"halo": 0.99, "medgan": 0.985})
    v = rules.within_of_one(_evidence({"table14": close}, view=RUN), "14", "cosine", ["halo", "medgan"], 0.03,
                            run_table="table14")
    assert v.verdict == HOLDS and v.stage == "44_cooccurrence"
    order = _table14({"medgan": 0.99, "halo": 0.98, "gpt": 0.97, "corgan": 0.5, "promptehr": 0.4}, width=0.002)
    top = rules.ranks_in_table(_evidence({"table14": order}, view=RUN), "14", "cosine", ["medgan", "halo"],
                               ["corgan", "promptehr"], run_table="table14")
    assert top.verdict == HOLDS
    swapped = _table14({"medgan": 0.99, "gpt": 0.98, "halo": 0.97, "corgan": 0.5, "promptehr": 0.4})
    assert rules.ranks_in_table(_evidence({"table14": swapped}, view=RUN), "14", "cosine", ["medgan", "halo"],
                                ["corgan", "promptehr"], run_table="table14").verdict == UNDECIDABLE  # gpt overlaps halo


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
    rise = rules.tail_increase(ev.view(ARTIFACTS), ["halo", "promptehr"], names.PREVALENCE_R2, 0.8, 0.1)
    assert rise.source == AUTHORS and rise.verdict in VERDICTS and rise.verdict != NOT_RUN
    gpt = rules.tail_drop_at_end(ev.view(ARTIFACTS), "gpt", names.PREVALENCE_R2, 0.1)
    assert gpt.verdict == UNDECIDABLE and "no rows for gpt" in gpt.note


# ---------------------------------------------------------------------------- sub-claims, interval logic, degeneracy
def test_composite_claims_are_split_into_sub_claims_each_decided_in_both_ledgers():
    claims = {c.id: c for c in load_claims()}
    composite = [c for c in claims.values() if c.rule == COMPOSITE]
    assert {c.id for c in composite} >= {"flat-match-marginals-but-fail-discriminator",
                                         "halo-strongest-head-overlap-lowest-kl"}
    for c in composite:
        assert len(c.parts) >= 2 and all(claims[p].parent == c.id for p in c.parts)
    ledger = decide(list(claims.values()), _evidence({}))
    parent = ledger[(ledger["ledger"] == ARTIFACTS) & (ledger["claim"] == "halo-strongest-head-overlap-lowest-kl")]
    # the printed Table 13: HALO has the lowest KL, MedGAN (not HALO) the best top-10 overlap
    assert parent["verdict"].item() == PARTLY
    assert "kl: holds" in parent["note"].item() and "head-overlap: does not hold" in parent["note"].item()
    assert set(ledger.loc[ledger["parent"] != "", "claim"]) == {p for c in composite for p in c.parts}


def test_order_is_decided_on_intervals_overlap_is_not_ordered_and_a_tie_is_a_tie():
    a, b = Value(0.9, 0.88, 0.92), Value(0.5, 0.48, 0.52)
    assert checks.order(a, b) == checks.ABOVE and checks.order(b, a) == checks.BELOW
    assert checks.order(Value(0.9535, 0.94, 0.96), Value(0.9521, 0.94, 0.96)) == checks.NOT_ORDERED
    assert checks.order(Value(0.455, 0.44, 0.47), Value(0.455, 0.44, 0.47)) == checks.TIE


def test_a_value_outside_its_own_interval_is_decided_on_the_interval_not_the_plug_in():
    v = Value(0.885, 0.896, 0.926)  # Table 14's HALO cosine: the plug-in lies below its basic interval
    assert v.outside and v.decided == pytest.approx(0.911)
    assert checks.order(v, Value(0.89, 0.889, 0.891)) == checks.ABOVE
    assert "midpoint" in v.text() and "plug-in 0.885" in v.text()


def test_a_constant_classifier_is_refused_and_a_real_one_is_not():
    assert checks.degenerate_classifier({"gpt": 0.8225}, 45520 / 55520, 11104)
    assert not checks.degenerate_classifier({"gpt": 0.70}, 45520 / 55520, 11104)
    same = {m: Value(0.455, 0.44, 0.47) for m in ("halo", "gpt")}
    refs = {r: Value(0.454, 0.44, 0.47) for r in ("holdout", "marginals", "memorizer")}
    assert checks.tied_with_references(same, refs, tolerance=0.01)
    refs["marginals"] = Value(0.2, 0.19, 0.21)  # the floor is told apart: the score measures something
    assert not checks.tied_with_references(same, refs, tolerance=0.01)
    assert checks.zero_spread({m: Value(0.0, 0.0, 0.0) for m in ("halo", "corgan")})
    assert not checks.zero_spread({"halo": Value(0.0, 0.0, 0.0), "corgan": Value(0.1, 0.05, 0.15)})


def _disc_rows(model, acc, auc, protocol):
    kind = names.paper_discriminator(model)
    return {(model, names.disc_metric(kind, "accuracy")): acc, (model, names.disc_metric(kind, "score")): 1 - 2 * abs(acc - 0.5),
            (model, names.disc_metric(kind, "auc")): auc}


def test_a_discriminator_answering_real_for_everyone_is_refused_and_the_auc_decides():
    const = {}
    for m in (*rules.PAPER_MODELS, "holdout", "marginals", "memorizer"):
        const.update(_disc_rows(m, 0.772, 0.5, names.PAPER))
        if m not in rules.PAPER_MODELS:  # the reference rows have both discriminators
            kind = {names.RF, names.LSTM} - {names.paper_discriminator(m)}
            const.update({(m, names.disc_metric(k, s)): v for k in kind
                          for s, v in (("accuracy", 0.772), ("score", 0.456), ("auc", 0.5))})
    tidy = _tidy(const, width=0.01)
    auc = {(m, names.disc_metric(names.paper_discriminator(m), "auc")): v
           for m, v in {"halo": 0.55, "promptehr": 0.56, "gpt": 0.54, "medgan": 0.9, "corgan": 0.95}.items()}
    auc.update({("holdout", names.disc_metric(k, "auc")): 0.5 for k in (names.RF, names.LSTM)})
    both = pd.concat([tidy, _tidy(auc, width=0.01, protocol=names.CORRECTED)])
    v = rules.ordered_groups(_evidence({"table1_tidy": both}), names.PAPER_DISC_SCORE)
    assert v.verdict == HOLDS and DEGENERATE in v.note and "AUC" in v.note
    assert any("holdout" in k for k in v.numbers)
    alone = rules.ordered_groups(_evidence({"table1_tidy": tidy}), names.PAPER_DISC_SCORE)
    assert alone.verdict == UNDECIDABLE and DEGENERATE in alone.note  # the fallback ties too: no verdict on the constant


def test_the_papers_printed_gpt_score_is_at_the_constant_classifiers_for_the_class_sizes_it_states():
    claim = {c.id: c for c in load_claims()}["gpt-highest-sequential-discriminator"]
    v = rules.RULES[claim.rule](_evidence({}, view=ARTIFACTS), **claim.params)
    assert v.verdict == UNDECIDABLE and DEGENERATE in v.note
    assert v.numbers["its Disc. Score"] == "0.3602"  # 1 - 2|45520/55520 - 0.5|
    fine = rules.printed_disc_degenerate(_evidence({}, view=ARTIFACTS), "gpt", 0.8, 45520, 10000, 0.2)
    assert DEGENERATE not in fine.note


def test_nnaar_at_zero_for_every_row_under_self_match_is_refused_for_the_corrected_protocol():
    rows = (*rules.PAPER_MODELS, "holdout", "marginals", "memorizer")
    paper = _tidy({(m, names.NNAAR): 0.0 for m in rows}, width=0.0)
    corrected = _tidy({**{(m, names.NNAAR): 0.01 for m in rows}, ("memorizer", names.NNAAR): 0.5}, width=0.005,
                      protocol=names.CORRECTED)
    v = rules.near(_evidence({"table1_tidy": pd.concat([paper, corrected])}), names.NNAAR, 0.0, 0.05)
    assert v.verdict == HOLDS and DEGENERATE in v.note and "corrected" in v.note
    only_paper = rules.near(_evidence({"table1_tidy": paper}), names.NNAAR, 0.0, 0.05)
    assert only_paper.verdict == UNDECIDABLE and DEGENERATE in only_paper.note


def test_an_attack_that_misses_the_memorizer_decides_nothing():
    rows = {(m, names.MIA_ACCURACY): 0.5 for m in (*rules.PAPER_MODELS, "holdout", "marginals", "memorizer")}
    v = rules.near(_evidence({"table1_tidy": _tidy(rows, width=0.01)}), names.MIA_ACCURACY, 0.5, 0.05)
    assert v.verdict == UNDECIDABLE and "positive control" in v.note
    rows[("memorizer", names.MIA_ACCURACY)] = 0.9
    assert rules.near(_evidence({"table1_tidy": _tidy(rows, width=0.01)}), names.MIA_ACCURACY, 0.5, 0.05).verdict == HOLDS


def test_near_perfect_prevalence_is_judged_against_the_holdout_ceiling_not_a_fixed_number():
    t = _tidy({("medgan", names.PREVALENCE_R2): 0.962, ("holdout", names.PREVALENCE_R2): 0.999,
               ("marginals", names.PREVALENCE_R2): 0.99}, width=0.012)
    v = rules.at_least(_evidence({"table1_tidy": t}), names.PREVALENCE_R2, ["medgan"], 0.95)
    assert v.verdict == FAILS and "holdout" in v.note  # above 0.95, yet wholly below real records
    t = _tidy({("medgan", names.PREVALENCE_R2): 0.80, ("holdout", names.PREVALENCE_R2): 0.81}, width=0.02)
    assert rules.at_least(_evidence({"table1_tidy": t}), names.PREVALENCE_R2, ["medgan"], 0.95).verdict == HOLDS


def test_the_privacy_rule_says_what_copy_rate_would_have_been_detected_or_that_power_is_unknown():
    t = _tidy({(m, names.MIA_F1): 0.5 for m in (*rules.PAPER_MODELS, "holdout")}, width=0.01)
    unknown = rules.privacy_power(_evidence({"table1_tidy": t}), metric=names.MIA_F1)
    assert unknown.verdict == UNDECIDABLE and "power is unknown" in unknown.note
    detection = pd.DataFrame({"attack": ["distance", "shadow"], "min_detected_copy_rate": [0.05, 0.02]})
    known = rules.privacy_power(_evidence({"table1_tidy": t, "table_privacy_detection": detection}), metric=names.MIA_F1)
    assert known.verdict == HOLDS and "shadow" in known.note and "2.0%" in known.note


def test_the_audits_copies_decide_the_privacy_claims_on_the_artifacts():
    rows = [{"synthetic": m, "comparison": comparison, "role": "train-list", "min_codes": 5, "eligible": 80,
             "copied": 3 if (m == "halo" and comparison == "sample") else 0, "rate": 0.0375, "ci_low": 0.01,
             "ci_high": 0.1, "detectable_rate": 0.037} for m in rules.PAPER_MODELS for comparison in ("sample", "marginals")]
    ledger = decide(load_claims(), _evidence({"table_audit_copies": pd.DataFrame(rows)}))
    a = ledger[ledger["ledger"] == ARTIFACTS].set_index("claim")["verdict"]
    assert a["no-memorisation"] == FAILS and a["all-models-conservative-on-privacy"] == FAILS


def test_a_seed_sweep_that_does_not_separate_two_models_leaves_the_order_undecided():
    t = _tidy({("gpt", names.PREVALENCE_R2): 0.9, ("halo", names.PREVALENCE_R2): 0.8}, width=0.01)
    seeds = pd.DataFrame([{"model": m, "family": "prevalence", "metric": names.PREVALENCE_R2, "mean": mu,
                           "sd_across_seeds": 0.08, "seeds": 3, "mean_ci_width_within_run": 0.02}
                          for m, mu in (("gpt", 0.88), ("halo", 0.82))])
    assert rules.highest_among(_evidence({"table1_tidy": t}), names.PREVALENCE_R2, "gpt", ["halo"]).verdict == HOLDS
    v = rules.highest_among(_evidence({"table1_tidy": t, "table1_seeds": seeds}), names.PREVALENCE_R2, "gpt", ["halo"])
    assert v.verdict == UNDECIDABLE and "across 3 training seeds" in v.note
