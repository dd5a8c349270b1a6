"""A worked example of your own generator: a visit-level Markov model of diagnosis codes.

Put it through every stage of the book (trained, generated, evaluated, in Table 1 and every
figure, marked as user-supplied) with::

    ehrbench reproduce --profile smoke --generator markov=examples.visit_markov:VisitMarkov

The model: the number of visits of a patient is drawn from the training distribution; the first
visit's codes are independent draws with each code's first-visit prevalence; each later visit
keeps or drops each code of the visit before with the code's learnt probability of recurring,
and adds new codes with their prevalence in later visits. An empty visit gets the most likely
code. Every probability is smoothed with ``smoothing`` pseudo-counts. It knows nothing of code
co-occurrence, so it is a baseline between the ``marginals`` reference and the paper's models.

It implements :class:`ehrlib.models.base.Generator`: ``_fit`` and ``_generate``, plus
``_save_state`` / ``_load_state`` so that ``save`` and ``ehrlib.models`` loading work.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort
from ehrlib.models.base import Config, FitOptions, Generator, reading


@dataclass(frozen=True)
class VisitMarkovConfig(Config):
    smoothing: float = 0.1      # pseudo-counts added to every count
    max_visits: int = 50        # longest record generated


class VisitMarkov(Generator):
    """Visit-level Markov model: P(code in visit t | in visit t-1) per code."""

    name = "visit_markov"
    config_class = VisitMarkovConfig

    def _fit(self, train: Cohort, options: FitOptions) -> None:
        a = self.config.smoothing
        ev = train.events
        self.codes = np.asarray(train.codes(), dtype=object)
        index = pd.Series(np.arange(len(self.codes)), index=self.codes)
        lengths = train.visits_per_patient().clip(upper=self.config.max_visits)
        self.length_p = np.bincount(lengths.to_numpy(), minlength=self.config.max_visits + 1).astype(float)
        self.length_p /= self.length_p.sum()
        first = ev[ev[VISIT] == 0]
        n_first = train.n_patients
        self.first_p = (np.bincount(index[first[CODE]].to_numpy(), minlength=len(self.codes)) + a) / (n_first + 2 * a)
        # pairs of consecutive visits: which codes of visit t-1 recur in visit t, which are new
        key = ev[SUBJECT].astype(str) + "#" + ev[VISIT].astype(str)
        present = set(key + "|" + ev[CODE].astype(str))
        prev = ev[ev[VISIT] < ev.groupby(SUBJECT)[VISIT].transform("max")]
        nxt = prev[SUBJECT].astype(str) + "#" + (prev[VISIT] + 1).astype(str) + "|" + prev[CODE].astype(str)
        kept = nxt.isin(present)
        had = np.bincount(index[prev[CODE]].to_numpy(), minlength=len(self.codes))
        stay = np.bincount(index[prev[CODE][kept.to_numpy()]].to_numpy(), minlength=len(self.codes))
        self.stay_p = (stay + a) / (had + 2 * a)
        later = ev[ev[VISIT] > 0]
        n_later = int((lengths - 1).clip(lower=0).sum())
        new = np.bincount(index[later[CODE]].to_numpy(), minlength=len(self.codes)) - stay
        self.new_p = (np.clip(new, 0, None) + a) / (n_later + 2 * a)

    def _generate(self, n: int, seed: int) -> Cohort:
        rng = np.random.default_rng(seed)
        lengths = rng.choice(len(self.length_p), size=n, p=self.length_p)
        lengths = np.maximum(lengths, 1)
        records = []
        top = int(np.argmax(self.first_p))
        for length in lengths:
            visits, current = [], rng.random(len(self.codes)) < self.first_p
            for t in range(int(length)):
                if t:
                    current = np.where(current, rng.random(len(self.codes)) < self.stay_p,
                                       rng.random(len(self.codes)) < self.new_p)
                if not current.any():
                    current = current.copy()
                    current[top] = True
                visits.append(list(self.codes[current]))
            records.append(visits)
        return Cohort.from_visits(records, source=self.name)

    def _save_state(self, directory) -> None:
        np.savez(directory / "markov.npz", codes=self.codes.astype(str), length_p=self.length_p,
                 first_p=self.first_p, stay_p=self.stay_p, new_p=self.new_p)

    def _load_state(self, directory) -> None:
        with reading(directory, "markov.npz") as path, np.load(path) as f:
            self.codes = f["codes"].astype(object)
            self.length_p, self.first_p, self.stay_p, self.new_p = f["length_p"], f["first_p"], f["stay_p"], f["new_p"]
