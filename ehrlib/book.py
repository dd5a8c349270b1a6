"""Saving tables and figures under the paper's stable IDs (``table1``, ``fig3``, ...).

One helper for figures (PNG + PDF) and one for tables (CSV + Markdown), both into the run
folder, so the file name, the glue key and the book page all use the same ID.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ehrlib.io import atomic_write
from ehrlib.runs import Run

_ID = re.compile(r"^(table|fig)\d+[a-z0-9_]*$")


def _check_id(paper_id: str) -> None:
    if not _ID.match(paper_id):
        raise ValueError(f"paper_id={paper_id!r}: expected 'table<N>...' or 'fig<N>...' (e.g. 'table12', 'fig3')")


def save_table(table: pd.DataFrame, paper_id: str, run: Run, floatfmt: str = ".4g") -> Path:
    """Write ``<run>/tables/<paper_id>.csv`` and ``.md``; return the CSV path."""
    _check_id(paper_id)
    d = run.dir("tables")
    atomic_write(d / f"{paper_id}.md", lambda tmp: Path(tmp).write_text(table.to_markdown(index=False, floatfmt=floatfmt)))
    return atomic_write(d / f"{paper_id}.csv", lambda tmp: table.to_csv(tmp, index=False))


def save_figure(fig, paper_id: str, run: Run, dpi: int = 150) -> Path:
    """Write ``<run>/figures/<paper_id>.png`` and ``.pdf``; return the PNG path."""
    _check_id(paper_id)
    d = run.dir("figures")
    atomic_write(d / f"{paper_id}.pdf", lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight"))
    return atomic_write(d / f"{paper_id}.png", lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
