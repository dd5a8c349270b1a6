"""Reference generators that calibrate every metric (the book's methods page, "Calibration rows").

* ``holdout``: real records that neither the generators nor the evaluation saw (a third
  split): the noise floor of every metric; an ideal generator scores like it.
* ``marginals``: independent per-code sampling with the real visit-count and visit-size
  distributions: matches prevalence, has no co-occurrence structure, so a discriminator should
  separate it.
* ``memorizer``: copies of training records: every privacy metric must flag it.
* ``memorizer_1``, ``memorizer_5``, ``memorizer_20``, ``memorizer_100``: partial memorizers, the
  power calibration of the privacy attacks (the book's privacy-power page): that share (1%, 5%,
  20%, 100%) of their records are verbatim training records, the rest drawn from ``marginals``
  fitted on the same training data. An attack that cannot tell ``memorizer_20`` from ``holdout``
  would not see a generator that copies a fifth of its output.

``holdout``, ``memorizer`` and the partial memorizers hold real patient records with their real subject ids, by design:
a saved folder of either contains those records (its ``generator.json`` says
``"holds_real_records": true``); treat it as the real data it copies. Their generated cohorts get
synthetic ids like every generator's.

Every ``fit`` option other than ``train`` (checkpoints, progress, callback) is ignored: these
generators have no epochs. A ``profile`` passed to ``models.get`` for them is an error (they have
no presets).

Paper: none of these are in the paper; they are this project's calibration rows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from typing import ClassVar

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort
from ehrlib.models.base import FitOptions, Generator, GeneratorError, reading

#: ``memorizer.generate(n)`` refuses ``n`` above this many times the training set (copies with
#: replacement carry no information beyond that, and a huge ``n`` would run for minutes).
MAX_COPIES = 100


def _sample_records(cohort: Cohort, n: int, seed: int, replace: bool) -> Cohort:
    rng = np.random.default_rng(seed)
    ids = cohort.subject_ids
    if not replace and n > len(ids):
        raise GeneratorError(f"asked for {n} records but only {len(ids)} are available (sampling without replacement)")
    pick = rng.choice(len(ids), size=n, replace=replace)
    ev = cohort.events
    groups = ev.groupby(SUBJECT, sort=False).indices
    rows = np.concatenate([groups[ids[i]] for i in pick])
    order = np.repeat(np.arange(n), [len(groups[ids[i]]) for i in pick])
    out = ev.iloc[rows].reset_index(drop=True)
    out[SUBJECT] = pd.array([f"r{k:09d}" for k in order], dtype="string")
    return Cohort.from_events(out)


class Holdout(Generator):
    """Returns real records it was given at construction (``get("holdout", records=reference)``).

    Holds real records with real ids (saved in ``records.parquet``); see the module docstring.
    """

    name = "holdout"
    holds_real_records = True

    def __init__(self, config=None, records: Cohort | None = None):
        super().__init__(config)
        self.records = records

    def training_key(self, train: Cohort) -> dict:
        """Model, config, training data and the records it returns."""
        key = super().training_key(train)
        key["records"] = self.records.checksum() if self.records is not None else None
        return key

    def _fit(self, train: Cohort, options: FitOptions) -> None:
        if not isinstance(self.records, Cohort):
            raise GeneratorError("holdout: pass the unseen real records, get('holdout', records=reference)")
        shared = set(self.records.subject_ids) & set(train.subject_ids)
        if shared:
            raise GeneratorError(f"holdout: {len(shared)} of its records are in the training cohort (e.g. {sorted(shared)[0]!r})")

    def _generate(self, n: int, seed: int) -> Cohort:
        return _sample_records(self.records, n, seed, replace=False)

    def _save_state(self, d):
        self.records.save(d / "records.parquet")

    def _load_state(self, d):
        with reading(d, "records.parquet", "the real records") as path:
            self.records = Cohort.load(path)


class Memorizer(Generator):
    """Copies training records (without replacement while it can, then with).

    Holds the training records with their real ids (saved in ``train.parquet``); see the module
    docstring. ``generate(n)`` refuses ``n`` above ``MAX_COPIES`` times the training set.
    """

    name = "memorizer"
    holds_real_records = True

    def _fit(self, train: Cohort, options: FitOptions) -> None:
        self.train = Cohort(train.events, None, train.source)

    def _check_generate(self, n: int) -> None:
        limit = MAX_COPIES * self.train.n_patients
        if n > limit:
            raise GeneratorError(f"memorizer: n={n:,} is more than {MAX_COPIES} copies of each of the "
                                 f"{self.train.n_patients:,} training records (limit {limit:,}); ask for fewer")

    def _generate(self, n: int, seed: int) -> Cohort:
        return _sample_records(self.train, n, seed, replace=n > self.train.n_patients)

    def _save_state(self, d):
        self.train.save(d / "train.parquet")

    def _load_state(self, d):
        with reading(d, "train.parquet", "the training records") as path:
            self.train = Cohort.load(path)


class Marginals(Generator):
    """Independent codes: visit counts and visit sizes from the training data, codes drawn
    without replacement within a visit in proportion to their visit-level frequency."""

    name = "marginals"

    def _fit(self, train: Cohort, options: FitOptions) -> None:
        self.visit_counts = train.visits_per_patient().to_numpy()
        self.visit_sizes = train.codes_per_visit().to_numpy()
        freq = train.events[CODE].value_counts().sort_index()
        self.codes = freq.index.to_numpy(dtype=object)
        self.weights = freq.to_numpy(dtype=float)

    def _generate(self, n: int, seed: int) -> Cohort:
        rng = np.random.default_rng(seed)
        L = rng.choice(self.visit_counts, size=n)
        patient = np.repeat(np.arange(n), L)
        visit = np.arange(len(patient)) - np.repeat(np.cumsum(L) - L, L)
        size = np.minimum(rng.choice(self.visit_sizes, size=len(patient)), len(self.codes))
        cum = np.cumsum(self.weights) / self.weights.sum()
        rows = np.arange(len(patient))
        need = size.copy()
        chosen = pd.DataFrame({"row": np.zeros(0, np.int64), "code": np.zeros(0, np.int64)})
        while need.sum() > 0:  # draw, drop repeats within a visit, draw again for the shortfall
            r = np.repeat(rows, 2 * need + 2)
            c = np.minimum(np.searchsorted(cum, rng.random(len(r)), side="right"), len(cum) - 1)
            chosen = pd.concat([chosen, pd.DataFrame({"row": r, "code": c})]).drop_duplicates(["row", "code"])
            chosen = chosen[chosen.groupby("row").cumcount().to_numpy() < size[chosen["row"].to_numpy()]]
            need = size - np.bincount(chosen["row"].to_numpy(), minlength=len(size))
        r = chosen["row"].to_numpy()
        ev = pd.DataFrame({SUBJECT: patient[r], VISIT: visit[r], CODE: self.codes[chosen["code"].to_numpy()]})
        return Cohort.from_events(ev)

    def _save_state(self, d):  # d is the new folder of an all-or-nothing save
        np.savez(d / "marginals.npz", visit_counts=self.visit_counts, visit_sizes=self.visit_sizes,
                 codes=self.codes.astype(str), weights=self.weights)

    def _load_state(self, d):
        with reading(d, "marginals.npz", "the marginal distributions") as path:
            with np.load(path, allow_pickle=False) as z:
                self.visit_counts, self.visit_sizes, self.weights = z["visit_counts"], z["visit_sizes"], z["weights"]
                self.codes = z["codes"].astype(object)


class PartialMemorizer(Generator):
    """Copies a fixed share of its records from training; the rest are :class:`Marginals` draws.

    ``generate(n, seed)`` copies ``round(copy_rate * n)`` training records (without replacement
    while it can, then with) and draws the other records from a :class:`Marginals` generator
    fitted on the same training data; the two parts are interleaved in a seeded random order, so
    the copies are not the first records. Holds the training records with their real ids (saved
    in ``train.parquet``); see the module docstring. The subclasses fix ``copy_rate``; their
    names (``memorizer_<percent>``) are the registered ones.
    """

    name = "partial_memorizer"
    holds_real_records = True
    copy_rate: ClassVar[float] = 1.0

    def _fit(self, train: Cohort, options: FitOptions) -> None:
        self.train = Cohort(train.events, None, train.source)
        self.marginals = Marginals()
        self.marginals._fit(train, options)

    def _check_generate(self, n: int) -> None:
        copies = int(round(self.copy_rate * n))
        limit = MAX_COPIES * self.train.n_patients
        if copies > limit:
            raise GeneratorError(f"{self.name}: n={n:,} needs {copies:,} copies, more than {MAX_COPIES} of each of "
                                 f"the {self.train.n_patients:,} training records; ask for fewer")

    def _generate(self, n: int, seed: int) -> Cohort:
        rng = np.random.default_rng([seed, 0x6D656D])  # streams of its own: the parts never share draws
        k = int(round(self.copy_rate * n))
        parts = []
        if k:
            parts.append(_sample_records(self.train, k, int(rng.integers(2**62)), replace=k > self.train.n_patients))
        if n - k:
            parts.append(self.marginals._generate(n - k, int(rng.integers(2**62))))
        order = rng.permutation(n)  # record j of the concatenation becomes record order[j]
        events = []
        offset = 0
        for part in parts:
            ev = part.events.copy()
            _, local = np.unique(ev[SUBJECT].to_numpy(), return_inverse=True)
            ev[SUBJECT] = order[offset + local]
            offset += part.n_patients
            events.append(ev)
        ev = pd.concat(events, ignore_index=True)
        ev[SUBJECT] = pd.array([f"p{k:09d}" for k in ev[SUBJECT].to_numpy()], dtype="string")
        return Cohort.from_events(ev)

    def _save_state(self, d):
        self.train.save(d / "train.parquet")

    def _load_state(self, d):
        with reading(d, "train.parquet", "the training records") as path:
            self.train = Cohort.load(path)
        self.marginals = Marginals()
        self.marginals._fit(self.train, FitOptions())


class Memorizer1(PartialMemorizer):
    """1% of the records copied from training, 99% from the marginals."""

    name = "memorizer_1"
    copy_rate = 0.01


class Memorizer5(PartialMemorizer):
    """5% of the records copied from training, 95% from the marginals."""

    name = "memorizer_5"
    copy_rate = 0.05


class Memorizer20(PartialMemorizer):
    """20% of the records copied from training, 80% from the marginals."""

    name = "memorizer_20"
    copy_rate = 0.20


class Memorizer100(PartialMemorizer):
    """Every record copied from training (the same as ``memorizer``, on its own seed stream)."""

    name = "memorizer_100"
    copy_rate = 1.0


#: The partial memorizers by name, in increasing copy rate.
PARTIAL_MEMORIZERS: dict[str, type[PartialMemorizer]] = {
    c.name: c for c in (Memorizer1, Memorizer5, Memorizer20, Memorizer100)}
