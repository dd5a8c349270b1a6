"""An empirical lower bound on a generator's ε from one training run.

Paper: Steinke, Nasr & Jagielski (2023), "Privacy Auditing with One (1) Training Run" (NeurIPS
2023, arXiv:2305.08846). Not in the benchmarked paper: this audits the differentially private
generators this project adds (the book's DP trade-off page).

The method: ``m`` canaries (records no real patient has, drawn by a seeded rule) are each included
in the training set with probability ½, independently (``S_i`` = 1 if included). One model is
trained. An attack scores every canary (higher = more likely a member); the auditor guesses
"member" for the ``k+`` highest scores and "non-member" for the ``k-`` lowest and abstains on the
rest. With ``r = k+ + k-`` guesses of which ``v`` are correct, the paper's Theorem 3 (its
approximate-DP form, Proposition 5.8 / Algorithm 2) bounds, for an (ε, δ)-DP training,

    P[v correct or more] <= P[Binomial(r, e^ε / (1 + e^ε)) >= v] + 2 m δ α,
    α = max_{1 <= i <= v} P[v - i <= Binomial(r, e^ε / (1 + e^ε)) < v] / i,

so every ε for which this p-value is below ``1 - confidence`` is rejected: ε_lower is the
largest such ε (found by bisection; the p-value falls as ε falls). The guesses are made at a few
fixed ``(k+, k-)`` pairs chosen before looking at the scores, and the confidence is split over
them (Bonferroni), so the bound keeps its stated confidence.

The bound saturates: with ``m`` canaries even perfect guesses give only a few units of ε (about
``log(r / log(1/β))``), so an audit of ε = 8 can pass trivially, while a broken noise or clipping
at a claim of ε <= 1 is caught. Canaries are drawn from a public vocabulary (not the training
data's), so a canary reveals nothing about a real patient.

Deviations from the paper: the paper's canaries are input-space images or gradient-space
directions; ours are records of ``codes_per_canary`` distinct codes drawn uniformly from the
public vocabulary, one visit each, with any code set that a real patient has redrawn.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort
from ehrlib.errors import MetricError

#: Prefix of every canary's subject id (never a real patient's id).
CANARY_PREFIX = "canary_"
#: Guessing shares ``(k+ / m, k- / m)`` tried by :func:`eps_lower_bound` (fixed in advance).
GUESS_SHARES = ((0.05, 0.05), (0.1, 0.1), (0.25, 0.25), (0.5, 0.5))


def p_value(m: int, r: int, v: int, eps: float, delta: float = 0.0) -> float:
    """P[at least ``v`` of ``r`` guesses right] for an (``eps``, ``delta``)-DP training with ``m``
    canaries: the bound of Steinke, Nasr & Jagielski (2023), Proposition 5.8 (see the module)."""
    if not (0 <= v <= r <= m):
        raise MetricError(f"dp_audit.p_value: need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-float(eps)))
    beta = float(scipy.stats.binom.sf(v - 1, r, q))
    if delta <= 0 or v == 0:
        return min(beta, 1.0)
    pmf = scipy.stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[Bin = v-1], P[Bin = v-2], ...
    alpha = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
    return min(beta + 2.0 * m * float(delta) * alpha, 1.0)


def eps_for_guesses(m: int, r: int, v: int, delta: float, beta: float) -> float:
    """The largest ε rejected at level ``beta`` given ``v`` correct out of ``r`` guesses (0: none)."""
    if r == 0 or p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < beta:
        lo, hi = hi, hi * 2
        if hi > 1e3:
            return float("inf")
    for _ in range(60):
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < beta:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class AuditResult:
    """What one audit measured: ``eps_lower`` at ``confidence``, and the guesses that gave it."""

    eps_lower: float
    confidence: float
    m: int
    included: int
    guesses: int   # r at the best (k+, k-)
    correct: int   # v at the best (k+, k-)
    k_plus: int
    k_minus: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def eps_lower_bound(scores, included, delta: float, confidence: float = 0.95,
                    shares=GUESS_SHARES) -> AuditResult:
    """The audit's lower bound on ε from canary ``scores`` (higher = member) and the truth
    ``included`` (booleans), at ``confidence`` split over the fixed guessing ``shares``."""
    scores = np.asarray(scores, dtype=float)
    truth = np.asarray(included, dtype=bool)
    if scores.shape != truth.shape or scores.ndim != 1 or len(scores) < 2:
        raise MetricError(f"dp_audit: scores {scores.shape} and included {truth.shape} must be one-dimensional "
                          "and of equal length >= 2")
    if not np.isfinite(scores).all():
        raise MetricError("dp_audit: a canary score is not finite; expected finite attack scores")
    if not 0 < confidence < 1 or not 0 <= delta < 1:
        raise MetricError(f"dp_audit: confidence={confidence!r} must be in (0, 1), delta={delta!r} in [0, 1)")
    m = len(scores)
    beta = (1.0 - confidence) / len(shares)
    # ties broken by canary index (fixed before scoring), so equal scores give no information
    order = np.lexsort((np.arange(m), -scores))
    best = None
    for share_plus, share_minus in shares:
        kp, km = int(share_plus * m), int(share_minus * m)
        if kp + km > m:
            raise MetricError(f"dp_audit: guessing shares {share_plus}+{share_minus} exceed 1")
        v = int(truth[order[:kp]].sum()) + int((~truth[order[m - km:]]).sum()) if km else int(truth[order[:kp]].sum())
        eps = eps_for_guesses(m, kp + km, v, delta, beta)
        if best is None or eps > best[0]:
            best = (eps, kp + km, v, kp, km)
    eps, r, v, kp, km = best
    return AuditResult(eps_lower=float(eps), confidence=float(confidence), m=m, included=int(truth.sum()),
                       guesses=r, correct=v, k_plus=kp, k_minus=km)


def make_canaries(codes, m: int, codes_per_canary: int, seed: int, real: Cohort | None = None,
                  exclusive: bool = True) -> Cohort:
    """``m`` canary records of ``codes_per_canary`` distinct codes drawn uniformly from ``codes`` (a
    public list, e.g. the rarest codes of the public vocabulary), one visit each, subject ids
    ``canary_0000``...; ``exclusive``: no two canaries share a code (the codes are a seeded
    permutation of ``codes`` cut into records). A code set that a patient of ``real`` has (in a visit
    or as the whole record) or another canary has is redrawn."""
    codes = np.asarray(sorted(set(map(str, codes))))
    if codes_per_canary < 1 or len(codes) < codes_per_canary * (m if exclusive else 1):
        raise MetricError(f"dp_audit: {m} canaries of {codes_per_canary} codes{' each, no code shared,' if exclusive else ''}"
                          f" need more codes than the {len(codes)} given")
    taken: set[frozenset] = set()
    if real is not None:
        ev = real.events
        taken.update(frozenset(g) for g in ev.groupby([SUBJECT, VISIT], sort=False)[CODE].agg(list))
        taken.update(frozenset(g) for g in ev.groupby(SUBJECT, sort=False)[CODE].agg(list))
    rng = np.random.default_rng([int(seed), 0xCA7A])
    rows = []
    width = max(4, len(str(m - 1)))
    i = 0
    perm = rng.permutation(len(codes))
    while i < m:
        if exclusive:
            pick = frozenset(codes[perm[i * codes_per_canary:(i + 1) * codes_per_canary]].tolist())
            if pick in taken:
                raise MetricError(f"dp_audit: canary {i}'s code set is a real patient's; use other codes")
        else:
            pick = frozenset(codes[rng.choice(len(codes), size=codes_per_canary, replace=False)].tolist())
        if pick in taken:
            continue
        taken.add(pick)
        sid = f"{CANARY_PREFIX}{i:0{width}d}"
        rows.extend((sid, 0, c) for c in sorted(pick))
        i += 1
    return Cohort.from_events(pd.DataFrame(rows, columns=[SUBJECT, VISIT, CODE]), source="canaries")


def include(canaries: Cohort, seed: int) -> np.ndarray:
    """Which canaries go into training: each with probability ½, independently (seeded)."""
    return np.random.default_rng([int(seed), 0x1A5]).random(canaries.n_patients) < 0.5


def with_canaries(train: Cohort, canaries: Cohort, included) -> Cohort:
    """``train`` plus the included canaries (their events appended)."""
    keep = set(canaries.subject_ids[np.asarray(included, dtype=bool)].tolist())
    extra = canaries.events[canaries.events[SUBJECT].isin(keep)][[SUBJECT, VISIT, CODE]]
    return Cohort.from_events(pd.concat([train.events[[SUBJECT, VISIT, CODE]], extra], ignore_index=True),
                              source="train with canaries")


def nearest_synthetic_scores(canaries: Cohort, synthetic: Cohort) -> np.ndarray:
    """A black-box attack: minus each canary's distance to its nearest synthetic record (the
    project's visit-aligned set distance, ``ehrlib.metrics.distance``); higher = more likely member."""
    from ehrlib.metrics import distance

    query, ref = distance.encode_cohorts(canaries, synthetic)
    return -np.asarray(distance.nearest(query, ref).distance, dtype=float)


__all__ = ["AuditResult", "CANARY_PREFIX", "GUESS_SHARES", "audit", "audit_budgets", "canary_codes", "eps_for_guesses", "eps_lower_bound", "include",
           "make_canaries", "nearest_synthetic_scores", "p_value", "with_canaries"]


def canary_codes(public_codes: int, n_codes: int) -> list[str]:
    """The ``n_codes`` rarest codes (by public pooled prevalence) of the public vocabulary of size
    ``public_codes`` (:func:`ehrlib.models.dp.public_vocabulary`): the canaries' pool, so that a
    canary's codes are ones few real patients have and the vocabulary still knows them."""
    from ehrlib.data.codeprofile import load_code_profile

    profile = load_code_profile()
    codes = np.asarray(profile.codes, dtype=str)
    order = np.lexsort((codes, -np.asarray(profile.pooled, dtype=float)))[:int(public_codes)]
    if n_codes > len(order):
        raise MetricError(f"dp_audit: {n_codes} canary codes from a public vocabulary of {len(order)}")
    return sorted(codes[order[len(order) - int(n_codes):]].tolist())


def audit(generator, train: Cohort, canaries: Cohort, *, seed: int, delta: float, confidence: float = 0.95,
          n_synthetic: int | None = None) -> dict:
    """One audit run: include each canary with probability ½ (seeded), fit ``generator`` once on
    ``train`` plus the included canaries, score every canary, bound ε (:func:`eps_lower_bound`).

    The score is the generator's own white-box attack (``generator.canary_scores``, e.g. a DP model's
    loss on each canary) where it has one, else the black-box nearest-synthetic distance of
    ``n_synthetic`` generated records (default: as many as it was fitted on). Returns the :class:`AuditResult` fields plus ``attack``
    and the generator's ``privacy`` record (its claimed ε) when it has one.
    """
    included = include(canaries, seed)
    fitted = with_canaries(train, canaries, included)
    generator.fit(fitted)
    if hasattr(generator, "canary_scores"):
        scores, attack = generator.canary_scores(canaries), "loss"
    else:
        synthetic = generator.generate(int(n_synthetic or fitted.n_patients), seed=seed)
        scores, attack = nearest_synthetic_scores(canaries, synthetic), "nearest synthetic"
    result = eps_lower_bound(scores, included, delta, confidence).as_dict()
    privacy = getattr(generator, "privacy", None) or {}
    result.update(attack=attack, claimed_epsilon=float(privacy.get("epsilon", float("inf"))),
                  model=generator.name)
    return result


def audit_budgets(train: Cohort, profile: str, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Claimed ε beside measured ε_lower for every DP generator at every budget of ``profile``'s
    ``dp`` settings, plus the negative controls (each DP-SGD model with the noise off, the
    memorizer): one row per audit run, columns ``model``, ``target_epsilon``, ``claimed_epsilon``
    (the accountant's), ``eps_lower`` and the guesses behind it. What stage ``19_train_dp``
    tabulates."""
    from ehrlib import models, profiles

    settings = profiles.get(profile).dp
    public = max(models.get(name, profile).config.public_codes for name in settings.model_list())
    pool = canary_codes(public, settings.canaries * settings.canary_codes)
    canaries = make_canaries(pool, settings.canaries, settings.canary_codes, seed=seed, real=train)
    runs = []
    for name in settings.model_list():
        for eps in settings.epsilon_list():
            runs.append((name, eps, "dp", dict(epsilon=eps, delta=settings.delta)))
        runs.append((name, min(settings.epsilon_list()), "noise off (control)",
                     dict(epsilon=min(settings.epsilon_list()), delta=settings.delta, noise_multiplier=0.0)))
    for eps in settings.epsilon_list("marginals_epsilons"):
        runs.append(("dp_marginals", eps, "dp", dict(epsilon=eps)))
    runs.append(("memorizer", float("nan"), "memorizer (control)", {}))
    rows = []
    for name, target, kind, kw in runs:
        if name in ("dp_marginals", "memorizer"):
            gen = models.get(name, **kw)
        else:
            gen = models.get(name, profile, progress=progress, **kw)
        out = audit(gen, train, canaries, seed=seed, delta=settings.delta, confidence=settings.confidence)
        rows.append({"model": name, "run": kind, "target_epsilon": target, **out})
    return pd.DataFrame(rows)
