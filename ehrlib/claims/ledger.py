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
    FAILS, HOLDS, NOT_RUN, QUALIFIED, RUN_SOURCE_PREFIX, UNTESTABLE, VERDICTS, Verdict,
)
from ehrlib.errors import ConfigError

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
CLAIM_FIELDS = ("id", "section", "line", "quote", "rule", "params", "reading")
LEDGER_COLUMNS = ("claim", "section", "line", "quote", "verdict", "note", "numbers", "source", "stage", "reading")
OPTIONAL_FIELDS = ("params", "reading")


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
        if e["rule"] not in RULES:
            raise ConfigError(f"{path}: claim {e['id']!r} names rule {e['rule']!r}; expected one of {sorted(RULES)}")
        if not isinstance(e["line"], int) or e["line"] < 1:
            raise ConfigError(f"{path}: claim {e['id']!r} has line {e['line']!r}; expected a positive integer")
        seen.add(e["id"])
        claim = Claim(str(e["id"]), str(e["section"]), int(e["line"]), str(e["quote"]), str(e["rule"]),
                      dict(e.get("params") or {}), str(e.get("reading") or ""))
        if reading_mismatch(claim):
            raise ConfigError(f"{path}: claim {e['id']!r} has reading {claim.reading!r}, which is not its quote "
                              f"{claim.quote!r} with bracketed insertions only")
        claims.append(claim)
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


def decide(claims, evidence) -> pd.DataFrame:
    """Apply each claim's rule to ``evidence`` (:class:`ehrlib.claims.evidence.Evidence`).

    Returns:
        One row per claim (columns :data:`LEDGER_COLUMNS`); ``numbers`` is a dict.
    """
    rows = []
    for c in claims:
        v = RULES[c.rule](evidence, **c.params)
        rows.append({"claim": c.id, "section": c.section, "line": c.line, "quote": c.quote, "verdict": v.verdict,
                     "note": v.note, "numbers": dict(v.numbers), "source": v.source, "stage": v.stage, "reading": c.shown})
    return pd.DataFrame(rows, columns=list(LEDGER_COLUMNS))


#: The stages that read the paper's released samples and the open MIMIC-III demo (fetched on request).
OPEN_DATA_STAGES = (RELEASED_STAGE, AUDIT_STAGE)


def summary(ledger: pd.DataFrame) -> str:
    """One sentence: how many claims hold (with or without a qualification), do not hold, cannot be
    tested with open data, and were not computed in this run."""
    counts = ledger["verdict"].value_counts()
    n = len(ledger)
    held = int(counts.get(HOLDS, 0))
    qual = int(counts.get(QUALIFIED, 0))
    parts = [f"{held + qual} hold ({qual} of them with a qualification)", f"{int(counts.get(FAILS, 0))} do not hold",
             f"{int(counts.get(UNTESTABLE, 0))} cannot be tested with open data"]
    if counts.get(NOT_RUN, 0):
        not_run = f"{int(counts[NOT_RUN])} were not computed in this run"
        if "stage" in ledger.columns:
            open_data = int((ledger["verdict"].eq(NOT_RUN) & ledger["stage"].isin(OPEN_DATA_STAGES)).sum())
            if open_data:
                not_run += (f" ({open_data} of them need the open data this run did not have: `ehrbench fetch "
                            "paper-samples mimic3-demo`, then rerun)")
        parts.append(not_run)
    text = f"{n} claims: " + ", ".join(parts) + "."
    if "source" in ledger.columns:
        decided = ~ledger["verdict"].isin([UNTESTABLE, NOT_RUN])
        on_run = decided & ledger["source"].str.startswith(RUN_SOURCE_PREFIX)
        if on_run.any():
            where = ledger.loc[on_run, "source"].iloc[0][len(RUN_SOURCE_PREFIX):].strip()
            strong = int((decided & ~on_run).sum())
            text += (f" {strong} verdict{'' if strong == 1 else 's'} rest{'s' if strong == 1 else ''} on the paper's "
                     f"own artifacts or the open MIMIC-III demo, {int(on_run.sum())} on this run's own data {where}, "
                     "which tests this "
                     "reimplementation on that data rather than the paper's models on MIMIC-III.")
    return text


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
        rows.append({"claim": f"“{shown_quote(r)}” (§{r.section}, line {r.line})", "verdict": verdict,
                     "why": r.note, "numbers used": "; ".join(f"{k}: {v}" for k, v in nums.items()),
                     "evidence": evidence})
    return pd.DataFrame(rows, columns=list(DISPLAY_COLUMNS))


def saved_form(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger with ``numbers`` written as ``label: value; ...`` text (for the CSV)."""
    out = ledger.copy()
    out["numbers"] = [("; ".join(f"{k}: {v}" for k, v in n.items()) if isinstance(n, dict) else n) for n in out["numbers"]]
    return out
