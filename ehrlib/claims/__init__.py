"""The claims ledgers: every checkable claim of the paper, the rules that decide it, its verdicts
(ledger A on the paper's own artifacts, ledger B on the run's data).

``ledger`` holds the claims (``claims.yaml``) and the verdict type; ``rules`` the functions that
decide them; ``evidence`` what the rules read from a run folder. :func:`ledger_of_run` is the one
call the pipeline and the results page make.

Paper: section 4 (Results, Discussion) and appendix G.
"""
from __future__ import annotations

from ehrlib.claims.evidence import Evidence
from ehrlib.claims.ledger import (
    ARTIFACTS, FAILS, HOLDS, NOT_REPRODUCED, NOT_RUN, PARTLY, QUALIFIED, REPRODUCED, RUN, UNDECIDABLE, UNTESTABLE,
    VERDICTS, Claim, Verdict, counts, decide, ledger_summary, load_claims, misquoted, summary,
)


def ledger_of_run(run, read_table=None):
    """Every claim of ``claims.yaml`` decided on the evidence of ``run`` (:class:`ehrlib.runs.Run`).

    Args:
        run: the run folder.
        read_table: ``table_id -> DataFrame | None``; default the run's saved CSVs (a stage passes
            its own ``read_table`` so the tables are recorded as its inputs).
    """
    return decide(load_claims(), Evidence.of_run(run, read_table))


__all__ = ["ARTIFACTS", "Evidence", "FAILS", "HOLDS", "NOT_REPRODUCED", "NOT_RUN", "PARTLY", "QUALIFIED", "REPRODUCED",
           "RUN", "UNDECIDABLE", "UNTESTABLE", "VERDICTS", "Claim", "Verdict", "counts", "decide", "ledger_of_run",
           "ledger_summary", "load_claims", "misquoted", "summary"]
