"""The book's front page of results, written from a run folder at build time.

Everything on the page is read from the run that the book is built from: the manifest (data,
profile, seed, commit, stage times) and the saved tables and figures. Nothing is typed in.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from ehrlib import book, stages
from ehrlib.metrics.display import OUTSIDE_FLAG, OUTSIDE_NOTE
from ehrlib.metrics.names import TABLE1_GROUPS, header
from ehrlib.runs import Run

#: The figures shown on the results page, and the notebook (stage) that makes each.
HEADLINE_FIGURES = {"fig_learning": stages.LEARNING_CURVES, "fig3": stages.LONGTAIL_PERCENTILES,
                    "fig5": stages.LONGTAIL_MARGINALS, "fig12": stages.CHAPTERS, "fig13": stages.COOCCURRENCE}
PAGE = "book/results.md"


def _stage_table(manifest: dict) -> pd.DataFrame:
    rows = []
    for name, entry in sorted(manifest.get("stages", {}).items()):
        r = entry.get("runner")
        if r:
            rows.append({"stage": f"{{doc}}`{name} <../notebooks/{name}>`", "status": r.get("status", ""),
                         "seconds": r.get("seconds", float("nan")),
                         "threads, OpenMP wait: why": _short_plan(r.get("threads", "")) or r.get("error", ""),
                         "finished": r.get("finished", "")[:16].replace("T", " ")})
    return pd.DataFrame(rows)


def _short_plan(plan: str) -> str:
    """A thread plan as the runner prints it, shortened for the page: ``1 thread(s),
    OMP_WAIT_POLICY=ACTIVE (why)`` becomes ``1, ACTIVE: why``."""
    import re

    m = re.fullmatch(r"(\d+) thread\(s\), OMP_WAIT_POLICY=(\w+) \((.*)\)", plan)
    return f"{m.group(1)}, {m.group(2)}: {m.group(3)}" if m else plan


def _last_invocation(runner: dict) -> str:
    """One sentence on the last ``ehrbench reproduce`` of the run (how many stages it executed, how
    many at a time, its wall time), or nothing when the manifest does not say."""
    if "wall_seconds" not in runner:
        return ""
    executed, skipped = runner.get("executed"), runner.get("skipped", 0)
    if executed == 0:
        return f" The last `ehrbench reproduce` on this run found all {skipped} stages up to date ({runner['wall_seconds']:.0f} s)."
    at_once = f", up to {runner['jobs']} at a time" if runner.get("jobs", 1) > 1 else ""
    count = f"{executed} stages" if executed is not None else "its stages"
    return (f" The last `ehrbench reproduce` on this run executed {count}{at_once} (each once the stages it needs were "
            f"done) in {runner['wall_seconds']:.0f} s of wall time; {skipped} were up to date.")


def _plug_in_footnote(run: Run) -> list[str]:
    """The footnote under Table 1: where a cell shows a bias-corrected estimate, the plug-in value
    and the bias (from ``table1_tidy``)."""
    from ehrlib.claims.evidence import number

    path = run.path / book.TABLES_DIR / "table1_tidy.csv"
    if not path.is_file():
        return []
    t = pd.read_csv(path)
    if "bias" not in t.columns:
        return []
    t = t[t["bias"].notna()].drop_duplicates(["model", "metric"])
    if t.empty:
        return []
    cells = "; ".join(f"{r.model} {header(r.metric)} {number(r.estimate)} (bias {number(r.bias)})"
                      for r in t.itertuples())
    return ["<small>Cells with a bootstrap bias show the bias-corrected estimate 2θ̂ − mean(θ*), the quantity its "
            "basic interval is for (the methods page shows why). Plug-in values θ̂ and the bias mean(θ*) − θ̂: "
            f"{cells}.</small>", ""]


def _notebook_link(stage: str) -> str:
    return f"{{doc}}`{stage} <../notebooks/{stage}>`"


def claims_section(run: Run) -> list[str]:
    """The verdicts, first: the summary line and the claims ledger (:mod:`ehrlib.claims`), decided
    now from the run's saved tables, each claim linked to the notebook that computes its evidence."""
    from ehrlib.claims import ledger_of_run, summary
    from ehrlib.claims.ledger import display_table

    from ehrlib.claims.evidence import AUTHORS_RESULTS, read_authors_fig3
    from ehrlib.errors import MetricError

    try:
        ledger = ledger_of_run(run)
    except MetricError as exc:  # the paper's printed numbers live in the repository, not the package
        return ["## Which of the paper's claims hold", "", f"*The claims could not be decided here: {exc}.*", ""]
    table = display_table(ledger, link=_notebook_link).to_markdown(index=False)
    last = read_authors_fig3(AUTHORS_RESULTS).groupby("model")["percentile"].max()
    short = "; ".join(f"for {m} it stops at percentile {p:g}" for m, p in last[last < last.max()].items())
    authors = (" The Figure 3 claims are decided first on the authors' own results file "
               "(`results/long_tailed_ablation.csv` of their repository, MIT, shipped with ehrlib) where it holds every "
               "percentile a claim names, else on this run's Figure 3, and the verdict names which"
               + (f" ({short})." if short else "."))
    return ["## Which of the paper's claims hold", "", f"**{summary(ledger)}**", "",
            "Each claim of the paper's sections 4–4.1 and appendix G is quoted with its line in the paper's text "
            "and decided by a rule in code (`ehrlib.claims.rules`) from measured values and their intervals, using "
            "the strongest evidence available: the paper's own artifacts (its released samples, its printed "
            "tables), then the open MIMIC-III demo's paper-training patients, then this run's own cohort and "
            "profile; a verdict on this run's data says so. *Not computed in this run*: open data would decide the "
            "claim, but this run lacks the notebook named or the data it reads. Each rule's thresholds are in "
            "`ehrlib/claims/claims.yaml`; "
            f"{_notebook_link(stages.PAPER_VS_OURS)} shows the same ledger beside the paper's printed numbers.{authors}", "",
            table, ""] + ([OUTSIDE_NOTE, ""] if OUTSIDE_FLAG in table else [])


#: The training notebook of each generated model, by its saved name (for the floors section's links).
TRAINING_STAGES = {**stages.TRAINING, "medgan_count": stages.TRAIN_MEDGAN}


def _floors_section(run: Run) -> list[str]:
    """Did the models learn? The convergence floors table of stage 20 and, by name, each model
    that misses a floor, with its training page (where its learning curve shows why)."""
    path = run.path / book.TABLES_DIR / "table_floors.csv"
    if not path.is_file():
        return []
    try:
        floors = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # no neural model was generated (a run of user generators only)
        return []
    lines = ["### Did the models learn?", "", f"{book.caption('table_floors')} From {_notebook_link(stages.GENERATE)}; "
             f"the learning curves are in {_notebook_link(stages.LEARNING_CURVES)}. The floors are set for the `demo` "
             "profile; on another profile they are a reference only.", "",
             (run.path / book.TABLES_DIR / "table_floors.md").read_text(), ""]
    missed = floors[(floors["status"] == "ok") & (floors["meets floors"] == "no")]
    for row in missed.to_dict("records"):
        why = []
        r2_floor = None if row["R² floor"] == "–" else float(row["R² floor"])
        if r2_floor is not None and row["prevalence R² vs train"] < r2_floor:
            why.append(f"prevalence R² {row['prevalence R² vs train']:.3f} < {r2_floor:.2f}")
        distinct = row["distinct codes / holdout's"]
        if distinct < row["distinct floor"]:
            why.append(f"distinct codes {distinct:.0%} of the holdout's < {row['distinct floor']:.0%}")
        if row["empty drawn"] > row["empty ceiling"]:
            why.append(f"{row['empty drawn']:.1%} empty records drawn > {row['empty ceiling']:.0%}")
        stage = TRAINING_STAGES.get(row["id"])
        where = f"; its curve: {_notebook_link(stage)}" if stage else ""
        lines += [f"* **{row['model']}** misses a floor: {', '.join(why)} (phases ended by: "
                  f"{row['phases ended by']}){where}."]
    return lines + ([""] if len(missed) else [])


INTRO = "book/intro.md"
#: The line of the intro page that this build's verdicts replace (the book's first page).
VERDICTS_MARK = "<!-- verdicts of this build -->"


def intro_verdicts(run: Run, dest: Path) -> None:
    """Put this run's verdicts on the book's first page: in the build copy of the intro page, the
    line :data:`VERDICTS_MARK` becomes the ledger's summary and one row per claim (its verdict and
    the start of its quote), each detailed on the results page."""
    from ehrlib.claims import ledger_of_run, summary
    from ehrlib.claims.ledger import shown_quote
    from ehrlib.errors import MetricError

    page = dest / INTRO
    if not page.is_file() or VERDICTS_MARK not in page.read_text():
        return
    try:
        ledger = ledger_of_run(run)
    except MetricError as exc:
        block = f"*The claims could not be decided in this build: {exc}.*"
    else:
        rows = [{"verdict": f"**{r.verdict}**",
                 "claim": f"“{shown[:110]}{'…' if len(shown) > 110 else ''}” (§{r.section}, line {r.line})"}
                for r in ledger.itertuples() for shown in [shown_quote(r)]]
        block = "\n".join([f"**This build's verdicts.** {summary(ledger)} Each is decided, with its numbers and its "
                           "evidence, on the [Results](results) page.", "",
                           pd.DataFrame(rows).to_markdown(index=False)])
    page.write_text(page.read_text().replace(VERDICTS_MARK, block))


def results_page(run: Run, dest: Path) -> Path:
    """Write the results page of ``run`` into the book source folder ``dest`` (and copy its figures),
    and this run's verdicts onto the intro page there (:func:`intro_verdicts`)."""
    intro_verdicts(run, dest)
    m = run.manifest()
    data_stage = m.get("stages", {}).get(stages.DATA, {})
    params = data_stage.get("params", {})
    lines = ["# Results", "",
             "Every number and figure on this page was computed by the run the book was built from; "
             "each links to the notebook that made it.", ""]
    lines += claims_section(run)
    lines += ["## This run", "",
             "| | |", "|---|---|",
             f"| data | `{params.get('data', 'unknown')}` |",
             f"| profile | `{params.get('profile', 'unknown')}` |",
             f"| seed | {params.get('seed', 'unknown')} |",
             f"| patients | {data_stage.get('results', {}).get('n_patients', 'unknown')} |",
             f"| commit | `{m.get('git_commit') or 'unknown'}` |",
             f"| run folder | `{run.name}` |", ""]
    lines += ["## Table 1", "", f"{book.caption('table1')} From {_notebook_link(stages.TABLE1)}; "
              "`[a, b]` is a 95% basic bootstrap interval, `± s` the spread over repeated subsamples. The `holdout` "
              "row holds real records no generator saw, scored like a generator: it is the ceiling this sample size "
              "allows, so a model is as good as real data when it reaches the holdout row, not when it reaches the "
              "metric's ideal value (R² = 1, RMSE = 0).", ""]
    groups = {g: p for g in TABLE1_GROUPS if (p := run.path / book.TABLES_DIR / f"table1_{g}.md").is_file()}
    if not groups:
        lines += ["*Table 1 was not computed in this run.*", ""]
    flagged = False
    for group, path in groups.items():
        text = path.read_text()
        flagged |= OUTSIDE_FLAG in text
        ids = [f"{header(c)}: `{c}`" for c in TABLE1_GROUPS[group] if header(c) != c]
        lines += [f"**{book.caption(path.stem)}**", "", text, ""]
        if ids:
            lines += [f"<small>Metric ids (in `table1.csv` and `ehrlib.metrics.names`): {'; '.join(ids)}.</small>", ""]
    lines += _plug_in_footnote(run)
    if flagged:
        lines += [OUTSIDE_NOTE, ""]
    lines += _floors_section(run)
    seeds = run.path / book.TABLES_DIR / "table1_seeds.md"
    if seeds.is_file():
        lines += ["### Across seeds", "", book.caption("table1_seeds") + " `sd_across_seeds` is the spread "
                  "between whole reruns; `mean_ci_width_within_run` the mean width of the intervals of one run.", "",
                  seeds.read_text(), ""]
    from ehrlib.runs import failed_generators

    failed = failed_generators(m)
    if failed:
        lines += [f"**Failed generators** (recorded by `{stages.USER_GENERATORS}` and `{stages.GENERATE}`, absent from "
                  "Table 1):", ""]
        lines += [f"* `{k}`: {v}" for k, v in failed.items()] + [""]
    supplied = m.get("stages", {}).get(stages.USER_GENERATORS, {}).get("results", {}).get("user_generators", {})
    if supplied:
        lines += [f"**User-supplied generators** (stage {_notebook_link(stages.USER_GENERATORS)}; "
                  "rows `user_<name>` in the tables, `<name> (user-supplied)` in the figures):", ""]
        lines += [f"* `{k}`: `{v}`" + (" (failed)" if k in failed else "") for k, v in supplied.items()] + [""]
    fig_dir = dest / "book" / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    lines += ["## Headline figures", ""]
    for fig_id, stage in HEADLINE_FIGURES.items():
        png = run.path / book.FIGURES_DIR / f"{fig_id}.png"
        if not png.is_file():
            continue
        shutil.copy2(png, fig_dir / png.name)
        note = m.get("stages", {}).get(stage, {}).get("results", {}).get("note", "")  # e.g. Figure 3's counts
        lines += [f"```{{figure}} figures/{png.name}", f":name: results-{fig_id}", "",
                  f"{book.caption(fig_id)} From {_notebook_link(stage)}.", "```", ""]
        lines += [note, ""] if note else []
    times = _stage_table(m)
    if not times.empty:
        total = times["seconds"].sum()
        side = _last_invocation(m.get("runner", {}))
        lines += ["## Where the time went", "", f"Wall time of each stage in this run ({total:.0f} s in all; "
                  f"`skipped` stages were up to date and reused).{side}", "", times.to_markdown(index=False), ""]
    page = dest / PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines))
    return page
