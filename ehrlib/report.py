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
from ehrlib.metrics.names import header
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
    return ["<details class=\"footnote\"><summary><small>Cells with a bootstrap bias show the bias-corrected estimate "
            "2θ̂ − mean(θ*), the quantity its basic interval is for (the methods page shows why); open for the plug-in "
            "values.</small></summary><small>Plug-in values θ̂ and the bias mean(θ*) − θ̂: "
            f"{cells}.</small></details>", ""]


def _notebook_link(stage: str) -> str:
    return f"{{doc}}`{stage} <../notebooks/{stage}>`"


def _ledger(run: Run):
    from ehrlib.claims import ledger_of_run

    return ledger_of_run(run)


def findings(ledger: pd.DataFrame, run: Run) -> list[str]:
    """Three to five findings computed from the two ledgers (and the run's floors), one sentence
    each with its number and a link to where it is decided."""
    from ehrlib.claims.ledger import ARTIFACTS, RUN, counts
    from ehrlib.claims.verdict import DEGENERATE, FAILS, HOLDS, NOT_REPRODUCED, PARTLY, REPRODUCED

    out = []
    a = counts(ledger, ARTIFACTS)
    n_a = sum(a.values())
    rest = n_a - a.get(HOLDS, 0) - a.get(PARTLY, 0) - a.get(FAILS, 0)
    out.append(f"Of the paper's {n_a} checkable claims, {a.get(HOLDS, 0)} hold on its own artifacts, "
               f"{a.get(PARTLY, 0)} hold in part, {a.get(FAILS, 0)} do not, and {rest} the artifacts cannot decide "
               "([ledger A](#ledger-a)).")
    priv = ledger[(ledger["ledger"] == ARTIFACTS) & (ledger["claim"] == "no-memorisation")]
    if len(priv) and priv.iloc[0]["verdict"] == FAILS:
        copies = [f"{k.split()[0]} {v.split(' (')[0]}" for k, v in priv.iloc[0]["numbers"].items() if k.endswith("copies")
                  and not v.startswith("0/")]
        out.append(f"The released samples hold verbatim records of paper-training patients of the open demo "
                   f"({', '.join(copies)}), so the paper's no-memorisation and privacy claims cannot hold on them "
                   f"({_notebook_link(stages.PAPER_AUDIT)}).")
    degenerate = ledger[ledger["note"].str.contains(DEGENERATE, regex=False)]
    if len(degenerate):
        printed = degenerate[degenerate["ledger"] == ARTIFACTS]
        example = ""
        if len(printed):
            nums = printed.iloc[0]["numbers"]
            score = next((v for k, v in nums.items() if k.endswith("(printed)")), "")
            const = nums.get("its Disc. Score", "")
            example = (f"{', among them' if len(degenerate) > 1 else ':'} the paper's own printed score {score}, within "
                       f"noise of the {const} a discriminator answering \"real\" for every record scores at the "
                       "paper's class sizes")
        out.append(f"{len(degenerate)} verdict{'s were' if len(degenerate) != 1 else ' was'} refused on a degenerate "
                   f"measurement{example} ([ledger A](#ledger-a), [ledger B](#ledger-b)).")
    b = counts(ledger, RUN)
    if b:
        out.append(f"On this run, ehrlib's reimplementation reproduces {b.get(REPRODUCED, 0)} of the {sum(b.values())} "
                   f"claims it can test, does not reproduce {b.get(NOT_REPRODUCED, 0)}, and cannot decide "
                   f"{b.get('undecidable', 0)} ([ledger B](#ledger-b)).")
    path = run.path / book.TABLES_DIR / "table_floors.csv"
    if path.is_file():
        try:
            floors = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            floors = pd.DataFrame()
        if {"status", "meets floors"} <= set(floors.columns):
            ok = floors[floors["status"] == "ok"]
            missed = ok[ok["meets floors"] == "no"]
            out.append(f"{len(missed)} of the run's {len(ok)} trained models miss a convergence floor"
                       + (f" ({', '.join(missed['model'].astype(str))})" if len(missed) else "")
                       + "; a verdict resting on one says so ([did the models learn?](#did-the-models-learn)).")
    return [f"{i}. {x}" for i, x in enumerate(out[:5], 1)]


def claims_section(run: Run) -> list[str]:
    """The verdicts, first: the findings, then ledger A (the paper's claims on its artifacts,
    grouped by topic) and ledger B (this reimplementation on the run), each with its own headline
    count and its scope stated once, each claim a closed dropdown (:mod:`ehrlib.claims`)."""
    from ehrlib.claims.ledger import ARTIFACTS, RUN, SCOPE, ledger_html, ledger_summary
    from ehrlib.errors import MetricError

    try:
        ledger = _ledger(run)
    except MetricError as exc:  # the paper's printed numbers live in the repository, not the package
        return ["## Which of the paper's claims hold", "", f"*The claims could not be decided here: {exc}.*", ""]
    params = run.manifest().get("stages", {}).get(stages.DATA, {}).get("params", {})
    where = f" (data `{params.get('data', 'unknown')}`, profile `{params.get('profile', 'unknown')}`)"
    lines = ["## Findings", ""] + findings(ledger, run) + [""]
    lines += ["## Which of the paper's claims hold", "", "(ledger-a)=", "### Ledger A: the paper's claims on its artifacts",
              "", f"**{ledger_summary(ledger, ARTIFACTS)}**", "",
              SCOPE[ARTIFACTS] + " Each verdict is a rule of `ehrlib.claims.rules` (thresholds in `claims.yaml`); "
              f"open a row for its numbers and evidence. {_notebook_link(stages.PAPER_VS_OURS)} shows both ledgers "
              "beside the paper's numbers.", ""]
    a = ledger[ledger["ledger"] == ARTIFACTS]
    for topic in dict.fromkeys(a["topic"]):
        lines += [f"**{str(topic).capitalize() if topic else 'Other'}**", "", ledger_html(ledger, ARTIFACTS, topic=topic),
                  ""]
    lines += ["(ledger-b)=", "## Ledger B: what this reimplementation shows", "", f"**{ledger_summary(ledger, RUN)}**", "",
              SCOPE[RUN].format(where=where), "", ledger_html(ledger, RUN), ""]
    return lines


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
             "profile; on another profile they are a reference only. Its R² is another estimator than Table 1's: the plug-in "
             "R² of every generated record, not the bias-corrected one.", "",
             "<details class=\"footnote\"><summary>Each model against its floors: open for the numbers.</summary>", "",
             (run.path / book.TABLES_DIR / "table_floors.md").read_text(), "", "</details>", ""]
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
        where = f'; its curve: <a href="../notebooks/{stage}.html">{stage}</a>' if stage else ""
        lines += [f"<li><b>{row['model']}</b> misses a floor: {', '.join(why)} (phases ended by: "
                  f"{row['phases ended by']}){where}.</li>"]
    if len(missed):  # folded: the findings above name them, the table shows the numbers
        head = len(lines) - len(missed)
        lines[head:] = [f"<details class=\"footnote\"><summary>{len(missed)} model{'s miss' if len(missed) != 1 else ' misses'} "
                        "a floor: open for which and why.</summary><ul>"] + lines[head:] + ["</ul></details>", ""]
    return lines


INTRO = "book/intro.md"
#: The line of the intro page that this build's verdicts replace (the book's first page).
VERDICTS_MARK = "<!-- verdicts of this build -->"


def intro_verdicts(run: Run, dest: Path) -> None:
    """Put this run's verdicts on the book's first page: in the build copy of the intro page, the
    line :data:`VERDICTS_MARK` becomes the ledger's summary and one row per claim (its verdict and
    the start of its quote), each detailed on the results page."""
    from ehrlib.claims import ledger_of_run, summary
    from ehrlib.errors import MetricError

    page = dest / INTRO
    if not page.is_file() or VERDICTS_MARK not in page.read_text():
        return
    try:
        ledger = ledger_of_run(run)
    except MetricError as exc:
        block = f"*The claims could not be decided in this build: {exc}.*"
    else:
        block = (f"**This build's verdicts.** {summary(ledger)} Each is decided, with its rule, numbers and evidence, "
                 "on the [Results](results) page.")
    page.write_text(page.read_text().replace(VERDICTS_MARK, block))


REFERENCE_ROWS = ("holdout", "marginals", "memorizer")
"""The reference rows, shown first in each Table 1 (the ceiling, the floor, the positive control)."""


def table1_section(run: Run) -> list[str]:
    """Table 1 as the paper prints it, once per protocol (the paper's, then the corrected one), the
    reference rows on top; the columns this project adds are on its notebook's page."""
    from ehrlib.metrics.names import CORRECTED, PAPER, PAPER_DISC_KIND, PREVALENCE_PEARSON, TABLE1_PAPER_COLUMNS

    lines = ["## Table 1", ""]
    path = run.path / book.TABLES_DIR / "table1.csv"
    if not path.is_file():
        return lines + ["*Table 1 was not computed in this run.*", ""]
    wide = pd.read_csv(path, dtype=str).fillna("–")
    lines += [f"{book.caption('table1')} From {_notebook_link(stages.TABLE1)}, with the columns this project adds and "
              "the metric ids. `[a, b]`: 95% basic bootstrap interval (bias-corrected estimate where the metric has a "
              "bias); `± s`: one standard deviation over repeated subsamples (the ledgers decide on ± 2 s). Reference "
              "rows first: `holdout` (the ceiling at this sample size), `marginals` (the floor), `memorizer` (the "
              "positive control).", ""]
    # the columns of the paper's own Table 1 (Pearson r and the added metrics are on the notebook's page)
    cols = [c for c in (*TABLE1_PAPER_COLUMNS, PAPER_DISC_KIND) if c in wide.columns and c != PREVALENCE_PEARSON]
    protocols = [p for p in (PAPER, CORRECTED) if "protocol" in wide.columns and (wide["protocol"] == p).any()] or [None]
    flagged = False
    for protocol in protocols:
        rows = wide if protocol is None else wide[wide["protocol"] == protocol]
        order = [m for m in REFERENCE_ROWS if m in set(rows["model"])] + \
            [m for m in rows["model"] if m not in REFERENCE_ROWS]
        rows = rows.set_index("model").loc[list(dict.fromkeys(order))].reset_index()
        shown = rows[["model", *cols]].rename(columns={c: header(c) for c in cols})
        text = shown.to_markdown(index=False)
        flagged |= OUTSIDE_FLAG in text
        title = {PAPER: "the paper's protocol", CORRECTED: "the corrected protocol"}.get(protocol, "")
        lines += [f"**Table 1{', ' + title if title else ''}.**", "", text, ""]
    ids = [f"{header(c)}: <code>{c}</code>" for c in cols if header(c) != c]
    if ids:
        lines += ["<details class=\"footnote\"><summary><small>Metric ids</small></summary><small>In "
                  f"<code>table1.csv</code> and <code>ehrlib.metrics.names</code>: {'; '.join(ids)}.</small></details>", ""]
    lines += _plug_in_footnote(run)
    if flagged:
        lines += [OUTSIDE_NOTE, ""]
    return lines


REPRODUCING = "book/reproducing.md"
#: The line of the reproducing page that this build's stage timings replace.
TIMINGS_MARK = "<!-- stage timings of this build -->"


def timings_on_reproducing(run: Run, dest: Path) -> None:
    """Put this run's stage timings (threads and OpenMP wait policy of each) on the reproducing
    page of the build copy, at :data:`TIMINGS_MARK`."""
    page = dest / REPRODUCING
    if not page.is_file() or TIMINGS_MARK not in page.read_text():
        return
    m = run.manifest()
    times = _stage_table(m)
    block = ""
    if not times.empty:
        total = times["seconds"].sum()
        side = _last_invocation(m.get("runner", {}))
        block = "\n".join([f"**Where the time went in this build.** Wall time of each stage of run `{run.name}` "
                            f"({total:.0f} s in all; `skipped` stages were up to date and reused).{side}", "",
                            times.to_markdown(index=False).replace("../notebooks/", "../notebooks/")])
    page.write_text(page.read_text().replace(TIMINGS_MARK, block))


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
    lines += table1_section(run)
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
    timings_on_reproducing(run, dest)
    page = dest / PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines))
    return page
