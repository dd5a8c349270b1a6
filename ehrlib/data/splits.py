"""Deterministic subject-level splits (paper: 45,520 train / 1,000 holdout)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.cohort import Cohort, CohortError, check_int, check_seed
from ehrlib.data.registry import PAPER_FILES_DIR
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


# ------------------------------------------------------------------------- the paper's split
PAPER_SPLIT_DIR = PAPER_FILES_DIR
PAPER_TRAIN_IDS = PAPER_SPLIT_DIR / "train_patient_ids.txt"
PAPER_TEST_IDS = PAPER_SPLIT_DIR / "test_patient_ids.txt"
PAPER_SPLIT_SOURCE = (
    "chufangao/reproducible_synthetic_ehr (MIT License), commit 6772a2cbb38e81234f264c3abf0c639b2ba62b18"
)
ROLE_TRAIN, ROLE_TEST, ROLE_UNLISTED = "train-list", "test-list", "unlisted"
ROLES = (ROLE_TRAIN, ROLE_TEST, ROLE_UNLISTED)


def read_split_ids(path) -> list[str]:
    """Read a split file of integer subject ids, one per line (blank lines ignored).

    Ids are returned in canonical decimal form (``"00042"`` becomes ``"42"``), so they match
    MIMIC-III ``SUBJECT_ID`` values however a loader spells them.

    Raises:
        CohortError: the file is missing, or a line is not a non-negative integer (file, line
            number and value named), or the file repeats an id.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CohortError(f"{path}: split file not found") from None
    except UnicodeDecodeError as e:
        raise CohortError(f"{path}: not UTF-8 text ({e}); expected one integer subject id per line") from None
    ids: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        value = line.strip()
        if not value:
            continue
        if not value.isascii() or not value.isdigit():
            raise CohortError(
                f"{path}, line {number}: {value!r} is not an integer subject id; expected one "
                "non-negative integer (a MIMIC-III SUBJECT_ID) per line"
            )
        canonical = str(int(value))
        if canonical in seen:
            raise CohortError(f"{path}, line {number}: subject id {value} repeats line {seen[canonical]}")
        seen[canonical] = number
        ids.append(canonical)
    if not ids:
        raise CohortError(f"{path}: no subject ids; expected one integer per line")
    return ids


def _canonical_subjects(cohort: Cohort) -> pd.Series:
    """The cohort's subject ids (cohort order) as canonical integers strings, ``<NA>`` where not an integer."""
    raw = pd.Series(cohort.subject_ids, dtype="string").str.strip()
    digits = raw.str.fullmatch(r"\d+").fillna(False).to_numpy(dtype=bool)
    out = pd.Series(pd.NA, index=raw.index, dtype="string")
    out[digits] = raw[digits].str.lstrip("0").replace("", "0")
    return out


class PaperSplit(tuple):
    """``(train, holdout)`` of the paper's released split, with a report on what was found.

    Unpacks as a pair (``train, holdout = paper_split(cohort)``); the attributes say which
    listed ids the data lacked and which of its patients neither list names.

    Attributes:
        train: the cohort's patients on the paper's training list.
        holdout: the cohort's patients on the paper's test list.
        roles: ``pandas.Series`` indexed by the cohort's subject ids: ``train-list``,
            ``test-list`` or ``unlisted``.
        missing_train, missing_test: listed ids absent from the cohort (sorted as in the lists).
        n_listed_train, n_listed_test: the lengths of the two lists.
    """

    def __new__(cls, train: Cohort, holdout: Cohort, *, cohort: Cohort, roles: pd.Series,
                missing_train: list[str], missing_test: list[str], n_listed_train: int, n_listed_test: int):
        self = super().__new__(cls, (train, holdout))
        self.train, self.holdout, self._cohort, self.roles = train, holdout, cohort, roles
        self.missing_train, self.missing_test = missing_train, missing_test
        self.n_listed_train, self.n_listed_test = n_listed_train, n_listed_test
        return self

    @property
    def unlisted_ids(self) -> np.ndarray:
        """Subject ids of the cohort on neither list."""
        return self.roles.index[self.roles == ROLE_UNLISTED].to_numpy(dtype=object)

    @property
    def reference(self) -> Cohort:
        """Patients on neither list: the candidates for the ``holdout`` reference generator.

        Raises:
            CohortError: every patient of the cohort is on one of the lists (e.g. the MIMIC-III
                demo: 98 train + 2 test), so no reference patients are left.
        """
        ids = self.unlisted_ids
        if len(ids) == 0:
            raise CohortError(
                f"{self._cohort.source or 'the cohort'}: all {self._cohort.n_patients} patients are on the "
                "paper's train or test list, so no patients are left for a reference split; the "
                "'holdout' reference generator cannot be used with split='paper' on this data"
            )
        return self._cohort.subset(ids)

    def summary(self) -> pd.DataFrame:
        """One row per list: ids listed, found in the data, missing; plus the unlisted patients."""
        n_unlisted = int((self.roles == ROLE_UNLISTED).sum())
        return pd.DataFrame(
            {
                "role": list(ROLES),
                "listed": [self.n_listed_train, self.n_listed_test, pd.NA],
                "found": [self.train.n_patients, self.holdout.n_patients, n_unlisted],
                "missing": [len(self.missing_train), len(self.missing_test), pd.NA],
            }
        )


def paper_split(cohort: Cohort, *, train_ids=None, test_ids=None) -> PaperSplit:
    """The paper's released 45,520 / 1,000 split of MIMIC-III ``SUBJECT_ID``s applied to ``cohort``.

    Paper: section 4 (45,520 training and 1,000 test patients of MIMIC-III); the id lists are
    the authors' released files, shipped with ``ehrlib`` under their MIT License.

    Ids are matched as integers (``"00042"`` and ``"42"`` are one id). Listed ids the cohort
    lacks are reported in a warning with counts and kept on the result; on the MIMIC-III demo
    only 98 training and 2 test subjects exist. Patients on neither list are available as
    :attr:`PaperSplit.reference`.

    Args:
        cohort: a MIMIC-III cohort (full database or demo).
        train_ids, test_ids: other split files (one integer id per line); default the
            released lists.

    Returns:
        :class:`PaperSplit`, which unpacks as ``(train, holdout)``.

    Raises:
        CohortError: a split file is unreadable or holds a non-integer or repeated id (file and
            line named), the two lists share an id, or no subject of the cohort is on either list.
    """
    import warnings

    train_path = Path(train_ids) if train_ids is not None else PAPER_TRAIN_IDS
    test_path = Path(test_ids) if test_ids is not None else PAPER_TEST_IDS
    listed_train, listed_test = read_split_ids(train_path), read_split_ids(test_path)
    both = set(listed_train).intersection(listed_test)
    if both:
        example = min(both, key=int)
        raise CohortError(
            f"{train_path} and {test_path} share {len(both)} subject id(s) (e.g. {example}); "
            "the train and test lists must be disjoint"
        )
    subjects = _canonical_subjects(cohort)
    in_train = subjects.isin(listed_train).to_numpy(dtype=bool)
    in_test = subjects.isin(listed_test).to_numpy(dtype=bool)
    if not (in_train.any() or in_test.any()):
        examples = ", ".join(repr(s) for s in list(cohort.subject_ids[:3]))
        raise CohortError(
            f"{cohort.source or 'the cohort'}: none of its {cohort.n_patients} subject ids (e.g. {examples}) "
            f"is on the paper's train list ({train_path}, {len(listed_train)} ids) or test list "
            f"({test_path}, {len(listed_test)} ids); split='paper' needs MIMIC-III SUBJECT_IDs"
        )
    present = set(subjects.dropna())
    missing_train = [i for i in listed_train if i not in present]
    missing_test = [i for i in listed_test if i not in present]
    roles = pd.Series(
        np.where(in_train, ROLE_TRAIN, np.where(in_test, ROLE_TEST, ROLE_UNLISTED)),
        index=pd.Index(cohort.subject_ids, name="subject_id"), name="role",
    )
    n_unlisted = int((~in_train & ~in_test).sum())
    if missing_train or missing_test or n_unlisted:
        warnings.warn(
            f"paper split on {cohort.source or 'the cohort'}: found {int(in_train.sum())} of "
            f"{len(listed_train)} training ids and {int(in_test.sum())} of {len(listed_test)} test ids "
            f"({len(missing_train)} and {len(missing_test)} missing from the data); "
            f"{n_unlisted} patient(s) are on neither list",
            stacklevel=2,
        )
    return PaperSplit(
        cohort.subset(cohort.subject_ids[in_train]), cohort.subset(cohort.subject_ids[in_test]),
        cohort=cohort, roles=roles, missing_train=missing_train, missing_test=missing_test,
        n_listed_train=len(listed_train), n_listed_test=len(listed_test),
    )
