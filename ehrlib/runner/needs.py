"""Which stages each stage needs: the names a notebook gives in its metadata (:data:`NEEDS_KEY`),
followed through the stages not selected. Kept apart from the schedule
(:mod:`ehrlib.runner.graph`) because the fingerprints (:mod:`ehrlib.runner.fingerprints`) read it
too: the notebooks of every need are part of a stage's fingerprint.
"""
from __future__ import annotations

import json
from pathlib import Path

from ehrlib import stages as stage_names
from ehrlib.book import notebooks
from ehrlib.errors import RunError

#: Notebook metadata key: ``{"ehrbench": {"needs": ["00_data", ...]}}`` names the stages whose
#: outputs the notebook reads.
NEEDS_KEY = "ehrbench"


def _declared_needs(nb: Path, earlier: list[str]) -> list[str]:
    """The stages notebook ``nb`` names in its metadata, or ``earlier`` when it names none."""
    meta = json.loads(nb.read_text()).get("metadata", {}).get(NEEDS_KEY, {})
    if "needs" not in meta:
        return list(earlier)
    needs = meta["needs"]
    bad = [n for n in needs if not isinstance(n, str) or n not in earlier] if isinstance(needs, list) else [needs]
    if bad:
        raise RunError(f"{nb}: metadata {NEEDS_KEY}.needs has {bad[0]!r}; expected a list of the names of "
                       f"earlier notebooks (e.g. {stage_names.DATA!r})")
    return list(needs)


def stage_needs(selected: list[Path]) -> dict[str, list[str]]:
    """The selected stages each selected notebook waits for: those it names in its metadata
    (every notebook before it when it names none), followed through the stages that are not
    selected (``--only 00 30`` makes 30 wait for 00, through 20 and the training stages).

    Raises:
        RunError: a ``needs`` entry is not a list of names of earlier notebooks.
    """
    if not selected:
        return {}
    every = notebooks(selected[0].parent.parent)
    order = [nb.stem for nb in every]
    direct = {nb.stem: _declared_needs(nb, order[:i]) for i, nb in enumerate(every)}
    chosen = {nb.stem for nb in selected}
    out = {}
    for nb in selected:
        seen, todo = set(), list(direct.get(nb.stem, []))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(direct.get(n, []))
        out[nb.stem] = [n for n in order if n in seen and n in chosen]
    return out
