"""PromptEHR generation priors: age bins, histograms, the first-code prior and the sampling distribution."""
from __future__ import annotations

import numpy as np
import torch

from ehrlib.models.neural import filter_logits
from ehrlib.models.promptehr.config import CODE_OFFSET, N_AGE_BINS, UNKNOWN_SEX

def sampling_probs(logits, log_prior=None, alpha: float = 0.0, top_p: float = 0.95, top_k: int = 0,
                   temperature: float = 1.0):
    """Next-token probabilities: ``softmax((logits + alpha * log_prior) / temperature)`` restricted to
    the top-k (0: off) and to the smallest set whose mass reaches ``top_p`` (nucleus), renormalised.

    ``logits``: ``(B, V)``; entries at ``-inf`` are never chosen.
    """
    z = logits.float()
    if alpha and log_prior is not None:
        z = z + alpha * log_prior
    return torch.softmax(filter_logits(z / temperature, top_k, top_p), dim=-1)


def age_bin(age: float) -> int:
    """0-10 -> 0, ..., 80-90 and 90+ -> 8."""
    return int(min(max(age, 0.0) // 10, N_AGE_BINS - 1))


def _hist(values) -> list[list[int]]:
    v, c = np.unique(np.asarray(values, dtype=np.int64), return_counts=True)
    return [v.tolist(), c.tolist()]


def _first_code_prior(visits, age, missing, sex, n_codes: int) -> dict:
    """Stratum -> ``[code indices, weights]``: each code of a patient's first visit weighs 1/|visit|.

    Strata ``"<age bin>,<sex>"`` (known age and sex), ``"sex<s>"`` (known sex) and ``"all"``.
    """
    acc: dict[str, np.ndarray] = {}

    def add(key, codes, w):
        if key not in acc:
            acc[key] = np.zeros(n_codes)
        np.add.at(acc[key], codes, w)

    for rec, a, m, s in zip(visits, age, missing, sex):
        codes = np.asarray(rec[0]) - CODE_OFFSET
        w = 1.0 / len(codes)
        add("all", codes, w)
        if s != UNKNOWN_SEX:
            add(f"sex{s}", codes, w)
            if not m:
                add(f"{age_bin(a)},{s}", codes, w)
    out = {}
    for key, weights in acc.items():
        idx = np.flatnonzero(weights)
        out[key] = [idx.tolist(), weights[idx].tolist()]
    return out
