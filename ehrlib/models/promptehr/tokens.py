"""PromptEHR records as token streams: ``<s> <v> codes </v> ... </s>``, and the training corruptions."""
from __future__ import annotations

import numpy as np

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort
from ehrlib.data.encode import Vocabulary
from ehrlib.models.promptehr.config import BOS, CODE_OFFSET, EOS, MASK, VCLOSE, VOPEN

def record_tokens(visits, max_len: int) -> tuple[np.ndarray, bool]:
    """One record (a list of visits, each a sequence of code token ids) as a token stream.

    Keeps the first whole visits that fit in ``max_len`` tokens (a too-long first visit keeps its
    first codes); returns ``(tokens, truncated)``.
    """
    out, truncated = [BOS], False
    for j, v in enumerate(visits):
        v = list(v)
        if len(out) + len(v) + 3 > max_len:       # <v> codes </v> and the final </s>
            truncated = True
            if j == 0:
                out += [VOPEN, *v[:max_len - 4], VCLOSE]
            break
        out += [VOPEN, *v, VCLOSE]
    out.append(EOS)
    return np.asarray(out, dtype=np.int64), truncated


def tokenize(cohort: Cohort, vocab: Vocabulary, max_len: int = 512) -> tuple[list[np.ndarray], int]:
    """Every patient of ``cohort`` (in cohort order) as a token stream; returns ``(streams, n_truncated)``."""
    streams, n_cut = [], 0
    for visits in _code_visits(cohort, vocab):
        s, cut = record_tokens(visits, max_len)
        streams.append(s)
        n_cut += cut
    return streams, n_cut


def detokenize(streams, vocab: Vocabulary) -> list[list[list[str]]]:
    """Token streams back to nested records ``[patient][visit] -> codes`` (inverse of :func:`tokenize`)."""
    out = []
    for s in streams:
        rec, cur = [], None
        for t in np.asarray(s).tolist():
            if t == EOS:
                break
            if t == VOPEN:
                cur = []
            elif t == VCLOSE and cur is not None:
                if cur:
                    rec.append(cur)
                cur = None
            elif t >= CODE_OFFSET and cur is not None:
                cur.append(vocab.codes[t - CODE_OFFSET])
        out.append(rec)
    return out


def _code_visits(cohort: Cohort, vocab: Vocabulary) -> list[list[np.ndarray]]:
    """Per patient (cohort order), per visit: code token ids."""
    ev = cohort.events
    tok = vocab.index(ev[CODE].to_numpy()) + CODE_OFFSET
    subj = ev[SUBJECT].to_numpy()
    vis = ev[VISIT].to_numpy()
    pat_bounds = np.flatnonzero(subj[1:] != subj[:-1]) + 1
    out = []
    for p_tok, p_vis in zip(np.split(tok, pat_bounds), np.split(vis, pat_bounds)):
        change = np.flatnonzero(np.diff(p_vis)) + 1
        out.append(np.split(p_tok, change))
    return out


def corrupt(stream: np.ndarray, rng: np.random.Generator, mask_prob: float, poisson_lambda: float,
            delete_prob: float) -> np.ndarray:
    """The encoder input: code spans (Poisson lengths, inside one visit) replaced by one ``<mask>``
    each until about ``mask_prob`` of the codes are covered, then each remaining code deleted with
    ``delete_prob``. Codes are only removed, never replaced by other codes."""
    stream = np.asarray(stream)
    is_code = stream >= CODE_OFFSET
    n_codes = int(is_code.sum())
    masked = np.zeros(len(stream), dtype=bool)
    target = int(round(mask_prob * n_codes))
    code_pos = np.flatnonzero(is_code)
    while masked.sum() < target:
        free = code_pos[~masked[code_pos]]
        start = int(free[rng.integers(len(free))])
        length = max(1, int(rng.poisson(poisson_lambda)))
        end = start
        while end < len(stream) and end - start < length and is_code[end]:
            end += 1
        masked[start:end] = True
    deleted = is_code & ~masked & (rng.random(len(stream)) < delete_prob)
    out = []
    for i, t in enumerate(stream.tolist()):
        if masked[i]:
            if not (i and masked[i - 1]):
                out.append(MASK)
        elif not deleted[i]:
            out.append(t)
    return np.asarray(out, dtype=np.int64)


def detokenize_lengths(stream: np.ndarray) -> list[int]:
    """Codes per visit of one token stream."""
    out = []
    for t in np.asarray(stream).tolist():
        if t == VOPEN:
            out.append(0)
        elif t >= CODE_OFFSET:
            out[-1] += 1
    return out


def _cut(rec, lengths):
    return [np.asarray(rec[j][:n]) for j, n in enumerate(lengths)]
