"""The claims ledger: every checkable claim of the paper, the rule that decides it, its verdict.

``ledger`` holds the claims (``claims.yaml``) and the verdict type; ``rules`` the functions that
decide them; ``evidence`` what the rules read from a run folder. :func:`ledger_of_run` is the one
call the pipeline and the results page make.

Paper: section 4 (Results, Discussion) and appendix G.
"""
from __future__ import annotations

from ehrlib.claims.evidence import Evidence
from ehrlib.claims.ledger import (
    FAILS, HOLDS, NOT_RUN, QUALIFIED, UNTESTABLE, VERDICTS, Claim, Verdict, decide, load_claims, misquoted, summary,
)


def ledger_of_run(run, read_table=None):
    """Every claim of ``claims.yaml`` decided on the evidence of ``run`` (:class:`ehrlib.runs.Run`).

    Args:
        run: the run folder.
        read_table: ``table_id -> DataFrame | None``; default the run's saved CSVs (a stage passes
            its own ``read_table`` so the tables are recorded as its inputs).
    """
    return decide(load_claims(), Evidence.of_run(run, read_table))


__all__ = ["Evidence", "FAILS", "HOLDS", "NOT_RUN", "QUALIFIED", "UNTESTABLE", "VERDICTS", "Claim", "Verdict", "decide",
           "ledger_of_run", "load_claims", "misquoted", "summary"]
