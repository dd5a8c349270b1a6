"""Deterministic subject-level splits (paper: 45,520 train / 1,000 holdout)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ehrlib.cohort import Cohort, CohortError, check_int, check_seed
from ehrlib.errors import ConfigError
from ehrlib.io import atomic_write


def split(cohort: Cohort, n_holdout: int, seed: int = 0) -> tuple[Cohort, Cohort]:
    """Split a cohort by subject into ``(train, holdout)`` with ``n_holdout`` holdout subjects.

    The subjects are permuted by ``numpy.random.default_rng(seed)`` over their sorted ids, so the
    split depends only on the set of ids and the seed, never on row order.

    Raises:
        ConfigError: ``n_holdout`` or ``seed`` is not a non-negative integer (``bool`` and
            ``2.5`` included), or ``n_holdout`` is 0.
        CohortError: ``n_holdout`` is not below the number of subjects.
    """
    if not isinstance(cohort, Cohort):
        raise ConfigError(f"split: expected a Cohort, got {type(cohort).__name__}")
    n_holdout = check_int(n_holdout, "n_holdout", minimum=1)
    seed = check_seed(seed)
    n = cohort.n_patients
    if not n_holdout < n:
        raise CohortError(
            f"n_holdout={n_holdout!r}: expected an integer between 1 and {n - 1} "
            f"(the cohort has {n} subjects)"
        )
    ids = np.sort(np.asarray(cohort.subject_ids, dtype=str))
    perm = np.random.default_rng(seed).permutation(n)
    in_holdout = np.isin(np.asarray(cohort.subject_ids, dtype=str), ids[perm[:n_holdout]])
    return cohort.subset(cohort.subject_ids[~in_holdout]), cohort.subset(cohort.subject_ids[in_holdout])


def save_ids(cohort: Cohort, path) -> Path:
    """Write the cohort's subject ids, one per line (atomic)."""
    text = "\n".join(map(str, cohort.subject_ids)) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_ids(path) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if line]


def plan_splits(n_patients: int, n_holdout: int, n_reference: int = 0) -> tuple[int, int]:
    """Holdout and reference sizes that leave at least 60% of the cohort for training.

    The profile asks for paper-sized splits (1,000 holdout); a small real cohort (the
    100-patient MIMIC demos) cannot give that, so both shrink to 20% of the cohort each, with
    a warning that says so.
    """
    import warnings

    cap = max(1, n_patients // 5)
    h, r = min(n_holdout, cap), min(n_reference, cap)
    if (h, r) != (n_holdout, n_reference):
        warnings.warn(
            f"a cohort of {n_patients} patients cannot give {n_holdout} holdout and {n_reference} reference "
            f"subjects; using {h} and {r}",
            stacklevel=2,
        )
    return h, r


def make_splits(cohort: Cohort, n_holdout: int, n_reference: int, seed: int = 0) -> dict[str, Cohort]:
    """The run's three splits: ``train``, ``holdout`` (``split(cohort, n_holdout, seed)``) and
    ``reference`` (``split(train, n_reference, seed + 1)``), sizes capped by :func:`plan_splits`."""
    n_holdout, n_reference = plan_splits(cohort.n_patients, n_holdout, n_reference)
    train, holdout = split(cohort, n_holdout=n_holdout, seed=seed)
    train, reference = split(train, n_holdout=n_reference, seed=seed + 1)
    return {"train": train, "holdout": holdout, "reference": reference}
