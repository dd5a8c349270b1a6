"""Reference generators that calibrate every metric (the book's methods page, "Calibration rows").

* ``holdout``: real records that neither the generators nor the evaluation saw (a third
  split): the noise floor of every metric; an ideal generator scores like it.
* ``marginals``: independent per-code sampling with the real visit-count and visit-size
  distributions: matches prevalence, has no co-occurrence structure, so a discriminator should
  separate it.
* ``memorizer``: copies of training records: every privacy metric must flag it.

``holdout`` and ``memorizer`` hold real patient records with their real subject ids, by design:
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
