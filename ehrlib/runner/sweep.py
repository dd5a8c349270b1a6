"""Seed sweeps (``ehrbench reproduce --seeds``): the whole pipeline once per seed, each into a
run of its own, and Table 1 across them (:func:`ehrlib.metrics.seeds.seeds_table1`)."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ehrlib import book as book_mod
from ehrlib.errors import RunError, RunInterrupted
from ehrlib.metrics.seeds import seeds_table1
from ehrlib.runner.build import build_book
from ehrlib.runner.command import writing, reproduce
from ehrlib.runs import Run, open_run
from ehrlib.stages import TABLE1

log = logging.getLogger("ehrbench")

#: The table each seed's run contributes (saved by stage :data:`ehrlib.stages.TABLE1`).
TIDY_TABLE = "table1_tidy"
#: The aggregate, saved in the first seed's run.
SEEDS_TABLE = "table1_seeds"


def table1_by_seed(runs_by_seed: dict[int, Run]) -> dict[int, pd.DataFrame]:
    """Each seed's tidy Table 1, read from its run (seeds whose run has none are left out).

    Raises:
        RunError: no run of the sweep has Table 1.
    """
    tables = {}
    for seed, run in runs_by_seed.items():
        path = run.path / book_mod.TABLES_DIR / f"{TIDY_TABLE}.csv"
        if path.is_file():
            tables[seed] = pd.read_csv(path)
    if not tables:
        raise RunError(f"no run of the sweep has Table 1 (stage {TABLE1}): "
                       + ", ".join(run.name for run in runs_by_seed.values()))
    return tables


def sweep(root: Path, seeds: list[int], profile: str = "demo", run: str | None = None, out: Path | None = None,
          book: bool = True, **kwargs) -> Path:
    """Run the pipeline once per seed into ``<run>-seed<N>`` folders, aggregate Table 1 across
    them (``table1_seeds``, saved in the first seed's run), and build the book from that run."""
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise RunError(f"--seeds {seeds}: expected distinct non-negative integers")
    base = run or profile
    runs_by_seed, errors = {}, []
    for seed in seeds:
        name = f"{base}-seed{seed}"
        try:
            reproduce(root, profile=profile, run=name, seed=seed, book=False, **kwargs)
        except RunInterrupted:  # Ctrl-C ends the sweep, not just this seed
            raise
        except RunError as exc:
            errors.append(f"seed {seed}: {exc}")
        runs_by_seed[seed] = open_run(name)
    first = runs_by_seed[seeds[0]]
    try:
        table = seeds_table1(table1_by_seed(runs_by_seed))
    except RunError as exc:
        if errors:  # why the runs have no Table 1 (a lock refused, a stage failed), not only that they have none
            raise RunError("; ".join(errors) + f"; so {exc}") from None
        raise
    with writing(first):  # the first seed's run gets the aggregate: one writer, as for its stages
        book_mod.save_table(table, SEEDS_TABLE, first)
        log.info("Table 1 across seeds %s: %s", seeds, first.path / book_mod.TABLES_DIR / f"{SEEDS_TABLE}.csv")
        target = build_book(Path(root).resolve(), first, Path(out or Path(root) / "_build").resolve()) if book else first.path
    if errors:
        raise RunError("; ".join(errors))
    return target
