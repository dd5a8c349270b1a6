"""The claims ledger: each checkable claim of the paper, its quote and line, and the rule that decides it.

Paper: section 4 (Results), 4.1 (Discussion) and appendix G. The claims live in
``claims.yaml`` next to this module (package data): one entry per claim with its ``id``, the
``line`` of the paper's text that holds it, the exact ``quote`` (a test checks that the quote is
on that line; where our copy of the paper lost a symbol, an optional ``reading`` restores it in
brackets), the ``rule`` (a function of :mod:`ehrlib.claims.rules`) and the rule's ``params``
(the thresholds that turn a word such as "near" or "high" into a number, visible here and on the
page rather than inside code).

A rule returns a :class:`Verdict`: one of :data:`VERDICTS`, the note that qualifies it (which
qualification; what data would decide an untestable claim), the numbers it used and the evidence
it used, strongest first: the paper's own artifacts (its released samples, its printed tables),
then the open MIMIC-III demo's paper-training patients, then the run's own cohort and profile.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ehrlib.claims.evidence import AUDIT_STAGE, RELEASED_STAGE
from ehrlib.claims.rules import RULES
from ehrlib.claims.verdict import (  # noqa: F401 - the verdict names are part of the ledger's API
    ARTIFACTS, FAILS, HOLDS, LEDGER_VERDICTS, NOT_REPRODUCED, NOT_RUN, ON_RUN, PARTLY, QUALIFIED, REPRODUCED, RUN,
    RUN_SOURCE_PREFIX, UNDECIDABLE, UNTESTABLE, VERDICTS, Verdict,
)
from ehrlib.errors import ConfigError

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
CLAIM_FIELDS = ("id", "section", "line", "quote", "rule", "params", "reading", "topic", "run_rule", "run_params",
                "parts", "parent")
LEDGER_COLUMNS = ("claim", "section", "line", "quote", "verdict", "note", "numbers", "source", "stage", "reading",
                  "ledger", "topic", "parent", "rule")
OPTIONAL_FIELDS = ("params", "reading", "topic", "run_rule", "run_params", "parts", "parent")
COMPOSITE = "composite"
"""The rule of a claim split into sub-claims (its ``parts``): its verdict is read off theirs."""


@dataclass(frozen=True)
class Claim:
    """One checkable claim of the paper (an entry of ``claims.yaml``)."""

    id: str
    section: str
    line: int
    quote: str
    rule: str
    params: dict = field(default_factory=dict)
    #: The quote as a reader should read it where our copy of the paper lost a symbol or a value:
    #: the quote with bracketed insertions only (``[R²]``), checked by :func:`reading_mismatch`.
    reading: str = ""
    #: What ledger A groups the claim under (fidelity, privacy, the long tail, ...).
    topic: str = ""
    #: The rule (and its params; ``params`` when empty) that tests the claim on the run's data (ledger B).
    run_rule: str = ""
    run_params: dict = field(default_factory=dict)
    #: The ids of a composite claim's sub-claims; a sub-claim's ``parent``.
    parts: tuple = ()
    parent: str = ""

    @property
    def shown(self) -> str:
        """What a page shows: the reading where there is one, else the exact quote."""
        return self.reading or self.quote


def load_claims(path=None) -> list[Claim]:
    """The claims of ``claims.yaml`` (or ``path``), checked: every field present, ids unique, every
    rule defined in :mod:`ehrlib.claims.rules`.

    Raises:
        ConfigError: naming the file, the claim and the field that is wrong.
    """
    path = Path(path) if path is not None else CLAIMS_FILE
    entries = yaml.safe_load(path.read_text())
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected a list of claims")
    claims, seen = [], set()
    for i, e in enumerate(entries):
        missing = [f for f in CLAIM_FIELDS if f not in (e or {}) and f not in OPTIONAL_FIELDS]
        if missing:
            raise ConfigError(f"{path}: claim #{i + 1} ({(e or {}).get('id', '?')}) lacks {missing}; "
                              f"expected fields {CLAIM_FIELDS}")
        if e["id"] in seen:
            raise ConfigError(f"{path}: claim id {e['id']!r} appears twice")
        for key in ("rule", "run_rule"):
            if key in e and e[key] not in RULES and e[key] != COMPOSITE:
                raise ConfigError(f"{path}: claim {e['id']!r} names {key} {e[key]!r}; expected one of "
                                  f"{sorted(RULES) + [COMPOSITE]}")
        if not isinstance(e["line"], int) or e["line"] < 1:
            raise ConfigError(f"{path}: claim {e['id']!r} has line {e['line']!r}; expected a positive integer")
        seen.add(e["id"])
        claim = Claim(str(e["id"]), str(e["section"]), int(e["line"]), str(e["quote"]), str(e["rule"]),
                      dict(e.get("params") or {}), str(e.get("reading") or ""), str(e.get("topic") or ""),
                      str(e.get("run_rule") or ""), dict(e.get("run_params") or {}), tuple(e.get("parts") or ()),
                      str(e.get("parent") or ""))
        if reading_mismatch(claim):
            raise ConfigError(f"{path}: claim {e['id']!r} has reading {claim.reading!r}, which is not its quote "
                              f"{claim.quote!r} with bracketed insertions only")
        claims.append(claim)
    ids = {c.id for c in claims}
    for c in claims:
        bad = [p for p in c.parts if p not in ids] + ([c.parent] if c.parent and c.parent not in ids else [])
        if bad or (c.rule == COMPOSITE) != bool(c.parts):
            raise ConfigError(f"{path}: claim {c.id!r}: a composite claim (rule {COMPOSITE}) lists its parts, each an "
                              f"id of this file; unknown or missing: {bad or 'parts'}")
    return claims


def reading_mismatch(claim: Claim) -> bool:
    """Whether ``claim.reading`` is set and differs from its quote by more than bracketed insertions
    (``[...]``, compared with runs of white space collapsed)."""
    if not claim.reading:
        return False
    squash = lambda text: " ".join(text.split())  # noqa: E731
    return squash(re.sub(r"\[[^\]]*\]", "", claim.reading)) != squash(claim.quote)


def misquoted(claims, paper_text: str) -> list[str]:
    """The claims whose quote is not on their line of ``paper_text`` (one message each)."""
    lines = paper_text.splitlines()
    bad = []
    for c in claims:
        if c.line > len(lines) or c.quote not in lines[c.line - 1]:
            bad.append(f"{c.id}: quote not on line {c.line}: {c.quote[:60]!r}")
    return bad


def _row(c: Claim, v: Verdict, ledger: str) -> dict:
    rule = c.rule if ledger == ARTIFACTS else (c.run_rule or c.rule)
    return {"claim": c.id, "section": c.section, "line": c.line, "quote": c.quote, "verdict": v.verdict,
            "note": v.note, "numbers": dict(v.numbers), "source": v.source, "stage": v.stage, "reading": c.shown,
            "ledger": ledger, "topic": c.topic, "parent": c.parent, "rule": rule}


def _composite(parts: list[dict], ledger: str) -> Verdict:
    """A composite claim's verdict read off its parts' (``{"claim", "verdict"}`` rows of one ledger)."""
    by = {r["claim"].rsplit("/", 1)[-1]: r["verdict"] for r in parts}
    verdicts = set(by.values())
    if ledger == RUN:
        verdict = verdicts.pop() if len(verdicts) == 1 else (
            NOT_REPRODUCED if NOT_REPRODUCED in verdicts and REPRODUCED not in verdicts else UNDECIDABLE)
    elif len(verdicts) == 1:
        verdict = verdicts.pop()
    elif HOLDS in verdicts:
        verdict = PARTLY  # the note names the parts that hold and those that do not
    elif FAILS in verdicts:
        verdict = FAILS
    else:
        verdict = UNDECIDABLE if UNDECIDABLE in verdicts else UNTESTABLE if UNTESTABLE in verdicts else NOT_RUN
    note = "; ".join(f"{part}: {v}" for part, v in by.items())
    return Verdict(verdict, note, {}, "its parts below", "")


def decide(claims, evidence) -> pd.DataFrame:
    """Apply each claim's rules to ``evidence`` (:class:`ehrlib.claims.evidence.Evidence`): its
    ``rule`` on the paper's artifacts (ledger A, every claim) and its ``run_rule`` on the run's own
    data (ledger B, the claims that have one), each in its own vocabulary; a composite claim's
    verdict is read off its parts'.

    Returns:
        One row per claim and ledger (columns :data:`LEDGER_COLUMNS`); ``numbers`` is a dict.
    """
    artifacts, run = evidence.view(ARTIFACTS), evidence.view(RUN)
    rows = {ARTIFACTS: [], RUN: []}
    for c in claims:
        if c.rule != COMPOSITE:
            v = RULES[c.rule](artifacts, **c.params)
            if v.verdict == NOT_RUN and v.stage not in OPEN_DATA_STAGES:  # the claim needs the run: MIMIC-III decides
                v = Verdict(UNTESTABLE, f"needs {MIMIC3_NEEDS}; ledger B tests it on this run", {}, "", "")
            rows[ARTIFACTS].append(_row(c, v, ARTIFACTS))
        if c.run_rule and c.run_rule != COMPOSITE:
            v = RULES[c.run_rule](run, **(c.run_params or c.params))
            rows[RUN].append(_row(c, Verdict(ON_RUN.get(v.verdict, v.verdict), v.note, v.numbers, v.source, v.stage),
                                  RUN))
    for c in claims:
        if c.rule != COMPOSITE:
            continue
        for ledger in (ARTIFACTS, RUN):
            parts = [r for r in rows[ledger] if r["claim"] in c.parts]
            if parts:
                at = min(i for i, r in enumerate(rows[ledger]) if r["claim"] in c.parts)
                rows[ledger].insert(at, _row(c, _composite(parts, ledger), ledger))
    return pd.DataFrame(rows[ARTIFACTS] + rows[RUN], columns=list(LEDGER_COLUMNS))


MIMIC3_NEEDS = ("MIMIC-III 1.4 (PhysioNet, credentialed): the paper's models scored on its patients, or a run with "
                "data=mimic3:PATH, profile=paper")


#: The stages that read the paper's released samples and the open MIMIC-III demo (fetched on request).
OPEN_DATA_STAGES = (RELEASED_STAGE, AUDIT_STAGE)


SCOPE = {ARTIFACTS: "Decided on the paper's own artifacts: its released samples, its printed tables, the authors' "
                    "results file (the values behind Figure 3) and the open MIMIC-III demo's paper-training patients.",
         RUN: "Tested on this run's own data{where}, each row beside the reference rows (holdout: the ceiling at this "
              "sample size; marginals: the floor; memorizer: the positive control). It tests ehrlib's models, not the "
              "paper's: no row here counts as a paper claim that fails."}
"""The scope sentence each ledger states once (not per row)."""
TITLES = {ARTIFACTS: "Ledger A: the paper's claims on its own artifacts", RUN: "Ledger B: what this reimplementation shows"}


def counts(ledger: pd.DataFrame, which: str) -> dict:
    """``{verdict: count}`` of one ledger's claims (sub-claims counted in their parent), in its
    vocabulary's order, verdicts with no claim left out."""
    rows = ledger[ledger["ledger"] == which] if "ledger" in ledger.columns else ledger
    if "parent" in rows.columns:
        rows = rows[rows["parent"].fillna("").eq("")]
    got = rows["verdict"].value_counts()
    return {v: int(got[v]) for v in LEDGER_VERDICTS[which] if got.get(v, 0)}


def ledger_summary(ledger: pd.DataFrame, which: str) -> str:
    """One sentence: how many of one ledger's claims got each verdict."""
    c = counts(ledger, which)
    n = sum(c.values())
    parts = ", ".join(f"{k} {v}" for v, k in c.items())
    subs = 0
    if "parent" in ledger.columns and "ledger" in ledger.columns:
        subs = int((ledger["ledger"].eq(which) & ledger["parent"].fillna("").ne("")).sum())
    tail = f" (split claims' {subs} parts inside them)" if subs else ""
    text = f"{n} claims{' tested' if which == RUN else ''}: {parts}{tail}."
    if which == ARTIFACTS and "stage" in ledger.columns:
        rows = ledger[ledger["ledger"].eq(which) & ledger["verdict"].eq(NOT_RUN) & ledger["stage"].isin(OPEN_DATA_STAGES)]
        if len(rows):
            text += (f" {len(rows)} need the open data this run did not have: `ehrbench fetch paper-samples "
                     "mimic3-demo`, then rerun.")
    return text


def summary(ledger: pd.DataFrame) -> str:
    """The headline: each ledger's counts in one sentence each (a ledger of one vocabulary, saved
    before there were two, is counted as one)."""
    if "ledger" not in ledger.columns:
        c = ledger["verdict"].value_counts()
        return f"{len(ledger)} claims: " + ", ".join(f"{int(k)} {v}" for v, k in c.items()) + "."
    return (f"Paper's claims on its artifacts (A): {ledger_summary(ledger, ARTIFACTS)} "
            f"This reimplementation on this run (B): {ledger_summary(ledger, RUN)}")


def shown_quote(row) -> str:
    """A ledger row's quote as a page shows it (its reading; the exact quote in ledgers saved before
    readings existed)."""
    reading = getattr(row, "reading", "")
    return reading if isinstance(reading, str) and reading else row.quote


DISPLAY_COLUMNS = ("claim", "verdict", "why", "numbers used", "evidence")


def display_table(ledger: pd.DataFrame, link=None, markdown: bool = True) -> pd.DataFrame:
    """The ledger as a reader sees it: the quote with its section and line, the verdict, why, the
    numbers used and the evidence (``link(stage) -> text`` turns a notebook name into a link; by
    default the name itself). ``markdown``: the verdict in bold (``**...**``), for a Markdown page."""
    link = link or (lambda stage: f"notebook {stage}")
    rows = []
    for r in ledger.itertuples():
        nums = r.numbers if isinstance(r.numbers, dict) else {}
        evidence = r.source or "the paper's text"
        if r.stage:
            evidence = f"{evidence}: {link(r.stage)}"
        verdict = f"**{r.verdict}**" if markdown else r.verdict
        which = getattr(r, "ledger", "")
        if isinstance(which, str) and which:
            verdict = f"{which}: {verdict}"
        rows.append({"claim": f"“{shown_quote(r)}” (§{r.section}, line {r.line})", "verdict": verdict,
                     "why": r.note, "numbers used": "; ".join(f"{k}: {v}" for k, v in nums.items()),
                     "evidence": evidence})
    return pd.DataFrame(rows, columns=list(DISPLAY_COLUMNS))


def saved_form(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger with ``numbers`` written as ``label: value; ...`` text (for the CSV)."""
    out = ledger.copy()
    out["numbers"] = [("; ".join(f"{k}: {v}" for k, v in n.items()) if isinstance(n, dict) else n) for n in out["numbers"]]
    return out


CHIP = {HOLDS: "holds", PARTLY: "partly", FAILS: "fails", UNDECIDABLE: "undecidable", UNTESTABLE: "untestable",
        NOT_RUN: "not-run", REPRODUCED: "holds", NOT_REPRODUCED: "fails"}
"""The CSS class of each verdict's chip (``_static/ledger.css``)."""
SHORT_QUOTE = 72
"""A quote longer than this is cut in a row's visible line (the whole quote is in its dropdown)."""


def _esc(text) -> str:
    import html

    return html.escape(str(text), quote=True)


def chip(verdict: str) -> str:
    """A verdict as a visual chip (an HTML span with the verdict's class)."""
    return f'<span class="verdict-chip verdict-{CHIP.get(verdict, "other")}">{_esc(verdict)}</span>'


def _details(r, href, children=()) -> str:
    shown = shown_quote(r)
    short = shown if len(shown) <= SHORT_QUOTE else shown[:SHORT_QUOTE].rsplit(" ", 1)[0] + " …"
    nums = r.numbers if isinstance(r.numbers, dict) else {}
    body = []
    body.append(f"<p>“{_esc(shown)}” (§{_esc(r.section)}, line {r.line} of the paper's text)</p>")
    if r.note:
        body.append(f"<p><b>Why:</b> {_esc(r.note)}</p>")
    rule = getattr(r, "rule", "")
    if isinstance(rule, str) and rule:
        body.append(f"<p><b>Rule:</b> <code>ehrlib.claims.rules.{_esc(rule)}</code></p>")
    if nums:
        cells = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in nums.items())
        body.append(f'<table class="claim-numbers"><tbody>{cells}</tbody></table>')
    evidence = _esc(r.source or "the paper's text")
    if r.stage:
        evidence += f' (<a href="{href(r.stage)}">{_esc(r.stage)}</a>)'
    body.append(f"<p><b>Evidence:</b> {evidence}</p>")
    body += list(children)
    return (f'<details class="claim"><summary>{chip(r.verdict)} “{_esc(short)}” '
            f'<small>§{_esc(r.section)}</small></summary><div class="claim-body">{"".join(body)}'
            "</div></details>")


def ledger_html(ledger: pd.DataFrame, which: str, href=None, topic: str | None = None) -> str:
    """One ledger (``"A"`` or ``"B"``; of ``topic`` only, when given) as HTML: one closed dropdown
    per claim, its verdict as a chip and its quote on the visible line; the rule, the labelled
    numbers and the evidence inside; a split claim's parts inside its own dropdown."""
    href = href or (lambda stage: f"../notebooks/{stage}.html")
    rows = ledger[ledger["ledger"] == which]
    if topic is not None:
        rows = rows[rows["topic"] == topic]
    out = []
    for r in rows[rows["parent"].fillna("").eq("")].itertuples():
        kids = [_details(k, href) for k in rows[rows["parent"] == r.claim].itertuples()]
        out.append(_details(r, href, [f'<div class="claim-parts"><p><b>Its parts:</b></p>{"".join(kids)}</div>']
                            if kids else []))
    return '<div class="claims-ledger">\n' + "\n".join(out) + "\n</div>"
