"""What a claim rule returns: one of the verdicts, the note that qualifies it, the numbers it used
and the evidence they came from.

Paper: section 4 and appendix G (the claims of ``claims.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ehrlib.errors import ConfigError

HOLDS = "holds"
QUALIFIED = "holds with a qualification"
FAILS = "does not hold"
UNTESTABLE = "not testable with open data"
NOT_RUN = "not computed in this run"
VERDICTS = (HOLDS, QUALIFIED, FAILS, UNTESTABLE, NOT_RUN)
"""Every verdict a rule can give. ``not computed in this run``: open data would decide the claim
but the run the book is built from lacks the stage that computes its evidence (the note names it)."""

RUN_SOURCE_PREFIX = "this run"
"""How the source of a verdict on the run's own data begins (:attr:`ehrlib.claims.evidence.Evidence.run_source`)."""


@dataclass(frozen=True)
class Verdict:
    """What a rule decided about one claim.

    Attributes:
        verdict: one of :data:`VERDICTS`.
        note: the qualification (for ``holds with a qualification``), the data that would decide
            the claim (``not testable with open data``), or why it does not hold.
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
