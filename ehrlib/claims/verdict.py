"""What a claim rule returns: one of the verdicts, the note that qualifies it, the numbers it used
and the evidence they came from.

Two ledgers, two vocabularies (the book's results page):

* ledger **A**, the paper's claims on the paper's own artifacts (its released samples, its printed
  tables, the authors' results file, the open MIMIC-III demo's paper-training patients):
  :data:`HOLDS`, :data:`PARTLY` (naming the parts), :data:`FAILS`, :data:`UNDECIDABLE` (naming
  why) or :data:`UNTESTABLE`;
* ledger **B**, what this reimplementation shows on the run's own data: :data:`REPRODUCED`,
  :data:`NOT_REPRODUCED` or :data:`UNDECIDABLE`, each with the reference rows beside the models.

Either may be :data:`NOT_RUN` when the run lacks the stage (or the open data) its evidence needs.

Paper: section 4 and appendix G (the claims of ``claims.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ehrlib.errors import ConfigError

HOLDS = "holds"
PARTLY = "partly holds"
QUALIFIED = PARTLY
"""The earlier name of :data:`PARTLY` (a claim that holds in some of its parts, which the note names)."""
FAILS = "does not hold"
UNDECIDABLE = "undecidable"
UNTESTABLE = "not testable with open data"
NOT_RUN = "not computed in this run"
REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"

ARTIFACTS, RUN = "A", "B"
"""The two ledgers: the paper's claims on its artifacts (A), this reimplementation on the run (B)."""
LEDGER_VERDICTS = {ARTIFACTS: (HOLDS, PARTLY, FAILS, UNDECIDABLE, UNTESTABLE, NOT_RUN),
                   RUN: (REPRODUCED, NOT_REPRODUCED, UNDECIDABLE, NOT_RUN)}
"""The vocabulary of each ledger, in the order its headline counts them."""
VERDICTS = tuple(dict.fromkeys(LEDGER_VERDICTS[ARTIFACTS] + LEDGER_VERDICTS[RUN]))
"""Every verdict a rule can give. ``not computed in this run``: open data would decide the claim
but the run the book is built from lacks the stage that computes its evidence (the note names it)."""
ON_RUN = {HOLDS: REPRODUCED, FAILS: NOT_REPRODUCED, UNDECIDABLE: UNDECIDABLE, NOT_RUN: NOT_RUN}
"""A rule's verdict read in ledger B's words (a rule decides a run-based claim as holds / does not
hold / undecidable; on the run that means reproduced / not reproduced / undecidable)."""
DEGENERATE = "degenerate measurement"
"""How the note of a verdict refused on a degenerate measurement begins (after ``undecidable: ``)."""

RUN_SOURCE_PREFIX = "this run"
"""How the source of a verdict on the run's own data begins (:attr:`ehrlib.claims.evidence.Evidence.run_source`)."""


@dataclass(frozen=True)
class Verdict:
    """What a rule decided about one claim.

    Attributes:
        verdict: one of :data:`VERDICTS`.
        note: why: the parts that hold (``partly holds``), why it cannot be decided
            (``undecidable``), the data that would decide it (``not testable with open data``), or
            why it does not hold.
        numbers: the measured values the rule used, ``{label: value}`` (floats or short strings).
        source: the evidence, in words (e.g. ``the paper's released samples``).
        stage: the notebook that computes that evidence (e.g. ``50_paper_samples``), or ``""``
            for the paper's own printed tables.
    """

    verdict: str
    note: str = ""
    numbers: dict = field(default_factory=dict)
    source: str = ""
    stage: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ConfigError(f"verdict {self.verdict!r}: expected one of {VERDICTS}")
