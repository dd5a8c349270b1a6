"""The fidelity check of a generator in training: a generated sample against the validation patients.

Every neural generator holds out a seeded share of its training patients (``val_fraction``).
Every ``check_every`` epochs the loop of :class:`ehrlib.models.neural.TorchGenerator` draws a
sample as large as the validation set (at most ``check_records``) with a fixed seed and scores it
against those patients:

* ``val_r2``: prevalence R² (the share of patients holding each code, over the model's
  vocabulary; as Table 1's, with the validation patients as the truth) of the kept records;
* ``val_empty``: the share of drawn records that held no code (they are redrawn at generation;
  a flat model decoding at the 0.5 threshold, or an early GAN, emits many);
* ``val_distinct``: distinct codes of the sample over distinct codes of the validation patients
  (mode collapse reads as a ratio far below 1);
* ``fidelity``: the prevalence R² of the sample *as drawn*, empty records included (each
  prevalence times the kept share), so a model that reaches its R² by emitting many empty records
  scores lower. It is the stopping score of the adversarial phases (higher is better): the GANs
  have no likelihood to validate, and prevalence R² is the paper's headline fidelity metric.

The check computes on the model's own vocabulary with Table 1's own prevalence R²
(:mod:`ehrlib.metrics.prevalence`, which imports nothing of ``ehrlib.models``). The book's
training pages plot these values over training seconds (*Training to convergence* on the
methods page).
"""
from __future__ import annotations

import numpy as np

from ehrlib.cohort import CODE, Cohort
from ehrlib.data.encode import Vocabulary
from ehrlib.metrics.prevalence import prevalence_vector, r2

#: The quantities a check adds to an epoch's stats.
CHECK_KEYS = ("val_r2", "val_empty", "val_distinct", "fidelity")
#: The seed of every check's sample (the same draws at every check: the curve shows the model moving).
CHECK_SEED = 20_240_601


def validation_cohort(train: Cohort, val_idx) -> Cohort:
    """The training patients at positions ``val_idx`` (cohort order) as a cohort."""
    ids = np.asarray(train.subject_ids)[np.asarray(val_idx, dtype=np.int64)]
    return train.subset(ids)


class Reference:
    """What a check compares against, computed once per fit: the validation patients' prevalence
    and distinct-code count on the model's vocabulary."""

    def __init__(self, validation: Cohort, vocab: Vocabulary):
        self.n = validation.n_patients
        self.vocab = vocab
        self.prevalence = prevalence_vector(validation, vocab) if self.n else np.zeros(len(vocab))
        self.distinct = int(validation.events[CODE].nunique()) if self.n else 0

    def score(self, sample: Cohort | None, drawn: int) -> dict:
        """The check's values (:data:`CHECK_KEYS`) for ``sample`` (the kept records; ``None``: none
        kept) out of ``drawn`` records."""
        kept = 0 if sample is None else sample.n_patients
        p = prevalence_vector(sample, self.vocab) if kept else np.zeros(len(self.vocab))
        share = kept / max(drawn, 1)
        distinct = int(sample.events[CODE].nunique()) if kept else 0
        return {"val_r2": r2(self.prevalence, p),
                "val_empty": 1.0 - share,
                "val_distinct": distinct / self.distinct if self.distinct else float("nan"),
                "fidelity": r2(self.prevalence, p * share)}


__all__ = ["CHECK_KEYS", "CHECK_SEED", "Reference", "validation_cohort"]
