"""Distance-based privacy metrics: NNAAR, membership inference, exact copies and DCR.

Paper: section 3.2 (NNAAR and the membership-inference threshold attack, on the set distance
of section 3.2.1). All metrics use :mod:`ehrlib.metrics.distance`; the three cohorts are
encoded once with a shared (union) vocabulary and a shared number of visit positions, so
synthetic codes unseen in training are fine.

Nearest-neighbour metrics are never bootstrapped with replacement (a duplicated record would
be its own neighbour at distance 0): their uncertainty is the spread over repeated subsamples
drawn without replacement (the book's methods page, "Uncertainty").

Every function takes an integer ``seed``; each metric draws from a stream of its own,
``numpy.random.default_rng([seed, crc32(metric name)])``, so its subsamples are unrelated to
those of anything else seeded with ``default_rng(seed)``. (With plain ``default_rng(0)`` on both
sides, the first members drawn by the attack were the very records the ``memorizer`` generator
had copied with ``seed=0``: ``rng.choice(N, k, replace=False)`` starts with the same indices for
every ``k``, which inflated its MIA accuracy from 0.56 to 0.99 in that repeat.) Results are
identical for identical inputs and seeds.
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from ehrlib.cohort import Cohort, CohortError
from ehrlib.metrics.distance import (
    CHUNK_SIZE,
    EncodedCohort,
    encode_cohorts,
    nearest,
    nearest_by_group,
    tie_tolerance,
)

PRIVACY_METRICS = (
    "nnaar",
    "mia_accuracy",
    "mia_precision",
    "mia_recall",
    "mia_f1",
    "mia_auc",
    "mia_tpr_at_1pct_fpr",
    "exact_copy_rate",
    "dcr_share",
)
MIA_FPR = 0.01  # false-positive rate at which the attack's true-positive rate is reported


# ---------------------------------------------------------------------------------- helpers
def _check_cohorts(**cohorts: Cohort) -> None:
    """Raise unless every named cohort is a non-empty Cohort."""
    for name, cohort in cohorts.items():
        if not isinstance(cohort, Cohort):
            raise TypeError(f"{name}: expected a Cohort, got {type(cohort).__name__}")
        if cohort.n_patients == 0:
            source = f" ({cohort.source})" if cohort.source else ""
            raise CohortError(f"{name} cohort{source} is empty (0 patients); privacy metrics need records")


def _encode(**cohorts: Cohort) -> tuple[EncodedCohort, ...]:
    """Encode named cohorts together after checking none is empty."""
    _check_cohorts(**cohorts)
    return encode_cohorts(*cohorts.values())


def _sample_size(n: int | None, minimum: int, **sizes: int) -> int:
    """``n``, or by default the smallest of ``sizes``; checked against every size."""
    smallest = min(sizes.values())
    if smallest < minimum:
        name = min(sizes, key=sizes.get)
        raise CohortError(f"the {name} cohort has {smallest} record(s); this metric needs at least {minimum}")
    if n is None:
        n = smallest
    if not isinstance(n, (int, np.integer)) or n < minimum or n > smallest:
        raise CohortError(
            f"n={n!r}: expected an integer from {minimum} to {smallest} "
            f"(cohort sizes {sizes}; each sample is drawn without replacement)"
        )
    return int(n)


def _check_repeats(repeats: int) -> int:
    if not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats={repeats!r}: expected a positive integer")
    return int(repeats)


def _rng(seed: int, stream: str) -> np.random.Generator:
    """The generator of one metric: its own stream for a given seed (see the module docstring)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode())])


def _draw(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """``n`` of ``range(size)`` without replacement, sorted."""
    return np.sort(rng.choice(size, n, replace=False))


def _beyond(a: np.ndarray, b: np.ndarray, tol: float, tie: float = 0.5) -> float:
    """Mean of 1(a > b) + tie·1(a = b): ties count one half (``tie=0``: the paper's strict ``>``)."""
    greater = a > b + tol
    tied = np.abs(a - b) <= tol
    return float(np.mean(greater + tie * tied))


def _summary(per_repeat: dict[str, list[float]], n: int) -> dict:
    """Mean, standard deviation (ddof=1; NaN for one repeat) and values of each quantity."""
    out: dict = {}
    for name, values in per_repeat.items():
        values = np.asarray(values, dtype=np.float64)
        out[name] = float(values.mean())
        out[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        out[f"{name}_values"] = values
        out["repeats"] = len(values)
    out["n"] = n
    return out


def _snap(values: np.ndarray, tol: float) -> np.ndarray:
    """Merge values within ``tol`` of their sorted predecessor into one value (exact ties)."""
    if tol == 0 or len(values) < 2:
        return values
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    group = np.concatenate([[0], np.cumsum(np.diff(ordered) > tol)])
    first = np.concatenate([[0], np.flatnonzero(np.diff(group)) + 1])
    out = np.empty_like(values)
    out[order] = ordered[first][group]
    return out


# ---------------------------------------------------------------------------------- NNAAR
def _nnaar(train: EncodedCohort, holdout: EncodedCohort, synthetic: EncodedCohort, n: int, repeats: int,
           seed: int, metric: str, length_penalty: float, chunk_size: int, paper: bool = False) -> dict:
    rng = _rng(seed, "nnaar")
    tol = tie_tolerance(metric, length_penalty)
    opts = dict(metric=metric, length_penalty=length_penalty, chunk_size=chunk_size)
    # The paper's notebook searches X for the query itself (d_XX = 0) and counts ties as 0.
    own, tie = (None, 0.0) if paper else (0, 0.5)
    per: dict[str, list[float]] = {"nnaar": [], "aa_es": [], "aa_ts": []}
    for _ in range(repeats):
        t = train.take(_draw(rng, len(train), n))
        s = synthetic.take(_draw(rng, len(synthetic), n))
        e = holdout.take(_draw(rng, len(holdout), n))
        d_s = nearest_by_group(s, [s, t, e], self_group=own, **opts)  # columns: SS, ST, SE
        d_t = nearest_by_group(t, [t, s], self_group=own, **opts)  # TT, TS
        d_e = nearest_by_group(e, [e, s], self_group=own, **opts)  # EE, ES
        aa_ts = 0.5 * (_beyond(d_t[:, 1], d_t[:, 0], tol, tie) + _beyond(d_s[:, 1], d_s[:, 0], tol, tie))
        aa_es = 0.5 * (_beyond(d_e[:, 1], d_e[:, 0], tol, tie) + _beyond(d_s[:, 2], d_s[:, 0], tol, tie))
        per["nnaar"].append(aa_es - aa_ts)
        per["aa_es"].append(aa_es)
        per["aa_ts"].append(aa_ts)
    return _summary(per, n)


def nnaar(train: Cohort, holdout: Cohort, synthetic: Cohort, n: int | None = None, repeats: int = 10,
          seed: int = 0, *, metric: str = "set", length_penalty: float = 0.0, chunk_size: int = CHUNK_SIZE) -> dict:
    """Nearest-neighbour adversarial accuracy risk, NNAAR = AA_ES − AA_TS.

    Paper: section 3.2 (after Yale et al. 2020 and Theodorou et al. 2023, HALO).

    For a real set X and a synthetic set S of equal size,
    ``AA_XS = ½[mean_x 1(d_XS(x) > d_XX(x)) + mean_s 1(d_SX(s) > d_SS(s))]`` where ``d_XS(x)`` is
    the distance from x to its nearest record in S and ``d_XX(x)`` to its nearest *other* record
    in X. E is the holdout, T a train subsample, S a synthetic subsample. An independent
    generator gives NNAAR ≈ 0; a generator that copies its training records gives AA_TS < AA_ES,
    so NNAAR > 0.

    Deviations: the self pair is excluded by index, never by ``d > 0`` (which hides exact
    copies, as HALO's code does); a tie counts ½ (the set distance is a small integer, so
    about half of the comparisons tie and the strict ``>`` of the paper is biased); E, T and S
    are drawn without replacement (HALO draws with replacement) at one common size ``n`` and the
    estimate is the mean over ``repeats`` draws (the paper uses one draw). The three draws of a
    repeat come from one generator in the order T, S, E.

    Sensitivity: a copy counts only when its source is in the train sample, which happens with
    probability ``n / len(train)``. At the paper's sizes (1,000 of 45,520) a memorizer's NNAAR
    is therefore close to 0 (simulated cohort, R = 10: 0.004 ± 0.008, a disjoint real sample
    -0.008 ± 0.009; benchmarks/bench_privacy.py); the exact-copy rate (1.0 vs 0.02) and the
    attack's TPR at 1% FPR (0.23 vs 0.01) are what flag it there.

    Args:
        train, holdout, synthetic: the cohorts; they may differ in size.
        n: records per sample; default the size of the smallest cohort (so with the paper's
            45,520 / 1,000 / 10,000 records, n = 1,000).
        repeats: number of independent subsample draws (R >= 10 recommended).
        seed: non-negative integer; NNAAR draws from its own stream (module docstring).
        metric, length_penalty, chunk_size: passed to the distance (:func:`nearest`).

    Returns:
        dict with ``nnaar``, ``aa_es``, ``aa_ts`` (means over repeats), each with ``<name>_std``
        (standard deviation over repeats, NaN for one repeat) and ``<name>_values`` (per-repeat
        array), plus ``n`` and ``repeats``.

    Raises:
        CohortError: an empty cohort, or ``n`` outside 2..(smallest cohort size).
    """
    repeats = _check_repeats(repeats)
    t, e, s = _encode(train=train, holdout=holdout, synthetic=synthetic)
    n = _sample_size(n, 2, train=len(t), holdout=len(e), synthetic=len(s))
    return _nnaar(t, e, s, n, repeats, seed, metric, length_penalty, chunk_size)


# ---------------------------------------------------------------------------------- MIA
def attack_metrics(member_scores, nonmember_scores, *, tol: float = 0.0) -> dict:
    """Threshold-attack metrics when a *lower* score means "more likely a member".

    Paper: section 3.2 (the median threshold attack); deviations as in
    :func:`membership_inference`.

    The attack predicts "member" for scores below the median of all scores; records at the
    median get the fractional prediction that makes exactly half of all predictions "member".

    Args:
        member_scores, nonmember_scores: scores (e.g. distances to the nearest synthetic record).
        tol: scores closer than this count as equal (0 for integer distances).

    Returns:
        dict with ``accuracy``, ``precision``, ``recall``, ``f1``, ``auc`` (probability that a
        member scores lower than a non-member, ties ½: the Mann-Whitney statistic with
        midranks) and ``tpr_at_1pct_fpr`` (on the ROC curve whose tied scores are joined by
        straight segments, i.e. broken at random).
    """
    member = np.asarray(member_scores, dtype=np.float64)
    nonmember = np.asarray(nonmember_scores, dtype=np.float64)
    n1, n0 = len(member), len(nonmember)
    if n1 == 0 or n0 == 0:
        raise ValueError(f"attack_metrics needs members and non-members (got {n1} and {n0})")
    scores = _snap(np.concatenate([member, nonmember]), tol)
    is_member = np.concatenate([np.ones(n1), np.zeros(n0)])

    # Threshold prediction with fractional tie-break: exactly half predicted members.
    half = len(scores) / 2
    threshold = np.sort(scores)[int(np.ceil(half)) - 1]
    below = scores < threshold
    at = scores == threshold
    predicted = below + at * (half - below.sum()) / at.sum()
    tp = float(predicted @ is_member)
    fp = float(predicted @ (1 - is_member))
    precision = tp / (tp + fp)
    recall = tp / n1
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    accuracy = (tp + (n0 - fp)) / (n1 + n0)

    # ROC over distinct scores, most member-like (lowest) first.
    _, group = np.unique(scores, return_inverse=True)
    tp_per = np.bincount(group, weights=is_member)
    fp_per = np.bincount(group, weights=1 - is_member)
    tp_before = np.cumsum(tp_per) - tp_per
    auc = float(fp_per @ (tp_before + 0.5 * tp_per)) / (n1 * n0)
    tpr = np.concatenate([[0.0], np.cumsum(tp_per)]) / n1
    fpr = np.concatenate([[0.0], np.cumsum(fp_per)]) / n0
    k = int(np.searchsorted(fpr, MIA_FPR, side="right")) - 1  # last point with fpr <= MIA_FPR
    if k == len(fpr) - 1:
        tpr_at = float(tpr[-1])
    else:
        tpr_at = float(tpr[k] + (tpr[k + 1] - tpr[k]) * (MIA_FPR - fpr[k]) / (fpr[k + 1] - fpr[k]))
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1, "auc": auc,
            "tpr_at_1pct_fpr": tpr_at}


def paper_attack_metrics(member_scores, nonmember_scores) -> dict:
    """The paper notebook's threshold attack: "member" strictly below the median score.

    Paper: section 3.2. With integer distances many records sit at the median and are all
    predicted non-members, so fewer than half are predicted members; precision is 0 when no
    record is predicted a member (sklearn's convention).

    Returns:
        dict with ``accuracy``, ``precision``, ``recall``, ``f1``.
    """
    member = np.asarray(member_scores, dtype=np.float64)
    nonmember = np.asarray(nonmember_scores, dtype=np.float64)
    if len(member) == 0 or len(nonmember) == 0:
        raise ValueError(f"the attack needs members and non-members (got {len(member)} and {len(nonmember)})")
    scores = np.concatenate([member, nonmember])
    is_member = np.r_[np.ones(len(member)), np.zeros(len(nonmember))]
    predicted = (scores < np.median(scores)).astype(np.float64)
    tp = float(predicted @ is_member)
    n_pred = float(predicted.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / len(member)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    accuracy = float(np.mean(predicted == is_member))
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


def _membership_inference(train: EncodedCohort, holdout: EncodedCohort, synthetic: EncodedCohort, n: int,
                          repeats: int, seed: int, metric: str, length_penalty: float, chunk_size: int,
                          paper: bool = False) -> dict:
    rng = _rng(seed, "membership_inference")
    tol = tie_tolerance(metric, length_penalty)
    opts = dict(metric=metric, length_penalty=length_penalty, chunk_size=chunk_size)
    holdout_scores = nearest(holdout, synthetic, **opts).distance
    per: dict[str, list[float]] = {}
    for _ in range(repeats):
        members = _draw(rng, len(train), n)
        nonmembers = _draw(rng, len(holdout), n)
        member_scores = nearest(train.take(members), synthetic, **opts).distance
        if paper:
            result = paper_attack_metrics(member_scores, holdout_scores[nonmembers])
        else:
            result = attack_metrics(member_scores, holdout_scores[nonmembers], tol=tol)
        for name, value in result.items():
            per.setdefault(name, []).append(value)
    return _summary(per, n)


def membership_inference(train: Cohort, holdout: Cohort, synthetic: Cohort, n: int | None = None, seed: int = 0,
                         *, repeats: int = 1, metric: str = "set", length_penalty: float = 0.0,
                         chunk_size: int = CHUNK_SIZE) -> dict:
    """Distance-to-synthetic membership-inference attack.

    Paper: section 3.2, "Membership Inference Attack (MIA)".

    Members are ``n`` train records, non-members ``n`` holdout records; each record's score is
    its distance to the nearest synthetic record (all synthetic records are searched). The
    attack predicts "member" below the median score (:func:`attack_metrics`). An attack no
    better than chance has accuracy ≈ 0.5 and AUC ≈ 0.5.

    Deviations: distances are small integers, so many records sit exactly at the median and a
    strict "below the median" rule predicts far fewer than half as members (how many depends on
    the ties); here records at the median get a fractional prediction so exactly half are
    predicted members. With balanced classes this makes accuracy, precision, recall and F1 equal
    (each is the share of members among the predicted members), so AUC (midranks) and the TPR
    at 1% FPR are reported as well. Members and non-members are drawn without replacement and
    with equal sizes; ``repeats`` > 1 averages over independent draws.

    Args:
        train, holdout, synthetic: the cohorts; they may differ in size.
        n: members and non-members each; default ``min(len(train), len(holdout))``.
        seed: non-negative integer; the attack draws from its own stream (module docstring);
            draw order per repeat: members, non-members.
        repeats: number of independent member/non-member draws.
        metric, length_penalty, chunk_size: passed to the distance (:func:`nearest`).

    Returns:
        dict with ``accuracy``, ``precision``, ``recall``, ``f1``, ``auc``, ``tpr_at_1pct_fpr``
        (means over repeats), each with ``<name>_std`` and ``<name>_values``, plus ``n`` and
        ``repeats``.

    Raises:
        CohortError: an empty cohort, or ``n`` outside 1..min(len(train), len(holdout)).
    """
    repeats = _check_repeats(repeats)
    t, e, s = _encode(train=train, holdout=holdout, synthetic=synthetic)
    n = _sample_size(n, 1, train=len(t), holdout=len(e))
    return _membership_inference(t, e, s, n, repeats, seed, metric, length_penalty, chunk_size)


# ---------------------------------------------------------------------------------- copies
def _exact_copy_rate(train: EncodedCohort, synthetic: EncodedCohort) -> float:
    def keys(enc: EncodedCohort) -> list[bytes]:
        m = enc.matrix
        indices = m.indices.astype(np.int64)
        return [indices[m.indptr[i]:m.indptr[i + 1]].tobytes() for i in range(m.shape[0])]

    seen = set(keys(train))
    return float(np.mean([k in seen for k in keys(synthetic)]))


def exact_copy_rate(train: Cohort, synthetic: Cohort) -> float:
    """Share of synthetic records identical to some train record (set distance 0).

    Paper: none (the book's methods page, "Copies"; the paper reports no copy metric).

    Records are compared in the shared visit-position encoding, so two records are identical
    when they have the same codes in the same visits; this is exactly distance 0 and is found
    by hashing rows, without a nearest-neighbour search. Patient ids and demographics are
    ignored.

    Deviations: not in the paper; added so that a memorizing generator is always flagged.

    Raises:
        CohortError: an empty cohort.
    """
    t, s = _encode(train=train, synthetic=synthetic)
    return _exact_copy_rate(t, s)


def _dcr(train: EncodedCohort, holdout: EncodedCohort, synthetic: EncodedCohort, n: int, repeats: int,
         seed: int, metric: str, length_penalty: float, chunk_size: int) -> dict:
    rng = _rng(seed, "dcr")
    tol = tie_tolerance(metric, length_penalty)
    per: dict[str, list[float]] = {"dcr_share": [], "median_dcr_train": [], "median_dcr_holdout": []}
    for _ in range(repeats):
        t = train.take(_draw(rng, len(train), n))
        e = holdout.take(_draw(rng, len(holdout), n))
        d = nearest_by_group(synthetic, [t, e], metric=metric, length_penalty=length_penalty,
                             chunk_size=chunk_size)
        per["dcr_share"].append(_beyond(d[:, 1], d[:, 0], tol))  # closer to train, ties ½
        per["median_dcr_train"].append(float(np.median(d[:, 0])))
        per["median_dcr_holdout"].append(float(np.median(d[:, 1])))
    return _summary(per, n)


def dcr(train: Cohort, holdout: Cohort, synthetic: Cohort, n: int | None = None, repeats: int = 1, seed: int = 0,
        *, metric: str = "set", length_penalty: float = 0.0, chunk_size: int = CHUNK_SIZE) -> dict:
    """Distance to closest record: are synthetic records closer to train than to holdout?

    Paper: none (the book's methods page, "Copies"; DCR as in SDMetrics and synthcity).

    For every synthetic record, the distance to its nearest record in a train subsample and in
    the holdout, both of size ``n``. ``dcr_share`` is the share of synthetic records closer to
    train than to holdout, ties counted ½: 0.5 for a generator that learned only the population,
    near 1 for one that copies its training records.

    Deviations: not in the paper. Unlike SDMetrics (strict ``<``, which ties push towards
    "private"), ties count ½; train is subsampled without replacement to the holdout size so the
    two reference sets are equally dense (otherwise the larger set is closer by chance).

    Sensitivity: as for :func:`nnaar`, a copy counts only when its source is in the train
    sample (probability ``n / len(train)``), so with a small holdout a memorizer scores near 0.5
    (paper sizes, simulated: 0.495 vs 0.479 for a disjoint real sample).
    The spread over repeats reflects the train subsamples only: the holdout is the same in every
    repeat, and a different holdout draw moves ``dcr_share`` by a few hundredths.

    Args:
        train, holdout, synthetic: the cohorts.
        n: size of both reference sets; default ``min(len(train), len(holdout))``.
        repeats: number of independent train (and, if larger than ``n``, holdout) subsamples.
        seed: non-negative integer; DCR draws from its own stream (module docstring); draw
            order per repeat: train, holdout.
        metric, length_penalty, chunk_size: passed to the distance (:func:`nearest`).

    Returns:
        dict with ``dcr_share``, ``median_dcr_train``, ``median_dcr_holdout`` (means over
        repeats), each with ``<name>_std`` and ``<name>_values``, plus ``n`` and ``repeats``.

    Raises:
        CohortError: an empty cohort, or ``n`` outside 1..min(len(train), len(holdout)).
    """
    repeats = _check_repeats(repeats)
    t, e, s = _encode(train=train, holdout=holdout, synthetic=synthetic)
    n = _sample_size(n, 1, train=len(t), holdout=len(e))
    return _dcr(t, e, s, n, repeats, seed, metric, length_penalty, chunk_size)


# ---------------------------------------------------------------------------------- family
PAPER_SAMPLE = 1000
"""The paper notebook's sample size: NNAAR samples of 1,000 records, MIA 500 members + 500 non-members."""
PAPER_DISTANCE = "set_binary_length"
"""The paper's distance: visit-aligned set distance + 1 when the numbers of visits differ."""


def privacy_metrics(train: Cohort, holdout: Cohort, synthetic: Cohort, seed: int = 0, repeats: int = 10, *,
                    metric: str | None = None, length_penalty: float = 0.0,
                    chunk_size: int = CHUNK_SIZE, protocol: str = "corrected", context=None) -> pd.DataFrame:
    """The privacy family: NNAAR, membership inference, exact copies and DCR.

    Paper: section 3.2 (NNAAR, MIA accuracy/precision/recall/F1); the rest from the book's methods page.

    ``protocol="corrected"`` (default): the three cohorts are encoded once. NNAAR, MIA and DCR
    each average ``repeats`` subsample draws from its own stream for ``seed``, so each row equals
    the matching function called with the same ``seed`` and ``repeats`` (e.g. :func:`nnaar`).
    Sample sizes follow those functions: NNAAR uses the smallest of the three cohort sizes, MIA
    and DCR ``min(len(train), len(holdout))``.

    ``protocol="paper"``: the paper notebook's rules on the paper's distance
    (:data:`PAPER_DISTANCE`): NNAAR on samples of ``min(1000, sizes)`` records with the query
    its own nearest neighbour (``d_XX = 0``) and strict ``>``; the attack on
    ``min(len(train), len(holdout), 1000) // 2`` members and as many non-members, "member"
    strictly below the median (:func:`paper_attack_metrics`). Only the paper's metrics
    (:data:`ehrlib.metrics.names.PAPER_PRIVACY_METRICS`) are reported. The paper uses one draw;
    here the estimate is the mean of ``repeats`` such draws and ``spread`` their standard
    deviation.

    Deviations: see :func:`nnaar`, :func:`membership_inference` and :func:`dcr`. No bootstrap
    with replacement (duplicated records would be each other's neighbours at distance 0), so
    ``ci_low`` and ``ci_high`` are NaN for every row: the repeated subsamples share the holdout,
    so they give no valid confidence interval. ``spread`` is the standard deviation over the
    repeats (the variability due to subsampling alone, not to the draw of the holdout; NaN for
    ``exact_copy_rate``, which uses every record, and when ``repeats`` = 1).

    Args:
        train, holdout, synthetic: the cohorts.
        seed, repeats: as in :func:`nnaar`.
        metric: the distance; default ``"set"`` (corrected) or :data:`PAPER_DISTANCE` (paper).
        length_penalty, chunk_size: passed to the distance.
        protocol: ``"corrected"`` or ``"paper"``.
        context: an :class:`ehrlib.metrics.context.EvaluationContext` holding the three cohorts
            (``synthetic`` among its synthetic ones), whose encodings are used; otherwise one is
            made here from the three (without the holdout-overlap check, which
            :func:`ehrlib.metrics.evaluate` runs: these metrics are computed on what is given).

    Returns:
        DataFrame with columns ``metric``, ``estimate``, ``ci_low``, ``ci_high``, ``spread``,
        ``note``; one row per name in :data:`PRIVACY_METRICS` (corrected) or
        :data:`ehrlib.metrics.names.PAPER_PRIVACY_METRICS` (paper), in that order.

    Raises:
        CohortError: an empty cohort, or fewer than two records in some cohort.
        ConfigError: an unknown protocol.
    """
    from ehrlib.metrics import names

    names.check_protocol(protocol)
    paper = protocol == names.PAPER
    metric = metric or (PAPER_DISTANCE if paper else "set")
    repeats = _check_repeats(repeats)
    from ehrlib.metrics.context import HOLDOUT, TRAIN, EvaluationContext

    _check_cohorts(train=train, holdout=holdout, synthetic=synthetic)
    if context is None:
        context = EvaluationContext(train, holdout, {"synthetic": synthetic})
    named = [n for n, c in context.synthetic.items() if c is synthetic]
    if context.train is not train or context.holdout is not holdout or not named:
        raise ValueError("context does not hold the train, holdout and synthetic cohorts given")
    t, e, s = context.encoded(TRAIN), context.encoded(HOLDOUT), context.encoded(named[0])
    n_nn = _sample_size(None, 2, train=len(t), holdout=len(e), synthetic=len(s))
    n_pair = _sample_size(None, 1, train=len(t), holdout=len(e))
    args = (repeats, seed, metric, length_penalty, chunk_size)
    spread_note = f"spread: standard deviation over {repeats} subsample draws (no bootstrap)"
    if paper:
        n_nn = min(PAPER_SAMPLE, n_nn)
        n_pair = max(1, min(PAPER_SAMPLE, n_pair) // 2)
        nn = _nnaar(t, e, s, n_nn, *args, paper=True)
        mia = _membership_inference(t, e, s, n_pair, *args, paper=True)
        wanted = names.PAPER_PRIVACY_METRICS
        notes = {"nnaar": f"paper rules: self-match, strict >, samples of {n_nn}; {spread_note}"}
        mia_note = f"paper rules: {n_pair} members + {n_pair} non-members, strict < median; {spread_note}"
    else:
        nn = _nnaar(t, e, s, n_nn, *args)
        mia = _membership_inference(t, e, s, n_pair, *args)
        closest = _dcr(t, e, s, n_pair, *args)
        wanted = PRIVACY_METRICS
        notes = {"nnaar": f"self pair excluded by index, ties 1/2, samples of {n_nn}; {spread_note}",
                 "dcr_share": f"train and holdout samples of {n_pair}; {spread_note}",
                 "exact_copy_rate": "every synthetic record against every train record"}
        mia_note = f"{n_pair} members + {n_pair} non-members, fractional tie-break at the median; {spread_note}"
    sources = {"nnaar": (nn, "nnaar")}
    if not paper:
        sources["dcr_share"] = (closest, "dcr_share")
    for name in ("accuracy", "precision", "recall", "f1", "auc", "tpr_at_1pct_fpr"):
        if name in mia:
            sources[f"mia_{name}"] = (mia, name)
            notes[f"mia_{name}"] = mia_note
    rows = []
    for metric_name in wanted:
        if metric_name == "exact_copy_rate":
            estimate, spread = _exact_copy_rate(t, s), float("nan")
        else:
            result, key = sources[metric_name]
            estimate, spread = result[key], result[f"{key}_std"]
        rows.append({"metric": metric_name, "estimate": estimate, "ci_low": float("nan"),
                     "ci_high": float("nan"), "spread": spread, "note": notes[metric_name]})
    return pd.DataFrame(rows, columns=["metric", "estimate", "ci_low", "ci_high", "spread", "note"])


# ---------------------------------------------------------------------------------- copied records
COPIED_RECORD_COLUMNS = ("real_subject", "synthetic_subject", "n_codes", "same_visits")
SMALL_AUDIT = 300  # fewer real patients than this cannot see a 1% copy rate with 95% probability


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + _MIX[0]
    x = (x ^ (x >> np.uint64(30))) * _MIX[1]
    x = (x ^ (x >> np.uint64(27))) * _MIX[2]
    return x ^ (x >> np.uint64(31))


def _code_hashes(codes) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each code string (blake2b; the same in every process)."""
    import hashlib

    digests = [hashlib.blake2b(str(c).encode("utf-8"), digest_size=16).digest() for c in codes]
    raw = np.frombuffer(b"".join(digests), dtype="<u8").reshape(-1, 2) if digests else np.zeros((0, 2), np.uint64)
    return raw[:, 0].astype(np.uint64), raw[:, 1].astype(np.uint64)


def _patient_sums(values: np.ndarray, patient: np.ndarray, n: int) -> np.ndarray:
    """Wrapping uint64 sum of ``values`` per patient (``patient`` sorted, 0..n-1)."""
    out = np.zeros(n, dtype=np.uint64)
    if len(values):
        starts = np.flatnonzero(np.r_[True, patient[1:] != patient[:-1]])
        out[patient[starts]] = np.add.reduceat(values, starts)
    return out


def record_keys(cohort: Cohort) -> pd.DataFrame:
    """One row per patient: hash keys of the record's code set and of its visit sequence.

    A record's code set (distinct codes over all visits) and its visit sequence (the set of
    ``(visit position, code)`` pairs) are summarised by order-free 128-bit hashes: sums, modulo
    2**64, of two independent 64-bit hashes per element. Equal records have equal keys; two
    different records share a key with probability about 2**-128 per pair, and
    :func:`copied_records` confirms every match on the codes themselves.

    Returns:
        DataFrame indexed by ``subject_id`` (cohort order) with uint64 columns ``codes_a``,
        ``codes_b`` (code-set key), ``visits_a``, ``visits_b`` (visit-sequence key), and int64
        ``n_codes`` (distinct codes of the record) and ``n_visits``.
    """
    from ehrlib.cohort import CODE, SUBJECT, VISIT

    ev = cohort.events
    n = cohort.n_patients
    subj = ev[SUBJECT].to_numpy()
    patient = np.cumsum(np.r_[True, subj[1:] != subj[:-1]]) - 1 if len(subj) else np.zeros(0, np.int64)
    code_id, uniques = pd.factorize(ev[CODE], sort=False)
    h1, h2 = _code_hashes(uniques)
    visit = ev[VISIT].to_numpy(np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        v1 = _mix(h1[code_id] + _mix(visit))
        v2 = _mix(h2[code_id] ^ _mix(visit + np.uint64(0x5151)))
        distinct = np.unique(patient.astype(np.int64) * max(len(uniques), 1) + code_id)
        dp, dc = distinct // max(len(uniques), 1), distinct % max(len(uniques), 1)
        out = pd.DataFrame({
            "codes_a": _patient_sums(h1[dc], dp, n),
            "codes_b": _patient_sums(h2[dc], dp, n),
            "visits_a": _patient_sums(v1, patient, n),
            "visits_b": _patient_sums(v2, patient, n),
            "n_codes": np.bincount(dp, minlength=n).astype(np.int64),
            "n_visits": np.zeros(n, dtype=np.int64),
        }, index=pd.Index(cohort.subject_ids, dtype=object, name=SUBJECT))
    if len(subj):
        out.iloc[:, out.columns.get_loc("n_visits")] = (
            pd.Series(ev[VISIT].to_numpy(np.int64)).groupby(patient).max().to_numpy() + 1
        )
    return out


def _code_sets(cohort: Cohort, subjects) -> pd.Series:
    """Sorted tuple of distinct codes of each of ``subjects`` (for confirming hash matches)."""
    from ehrlib.cohort import CODE, SUBJECT

    ev = cohort.events
    ev = ev[ev[SUBJECT].isin(pd.Index(list(subjects), dtype="string"))]
    return ev.groupby(SUBJECT, sort=False)[CODE].agg(lambda s: tuple(sorted(set(s))))


def _copied_from_keys(real: pd.DataFrame, synthetic: pd.DataFrame, min_codes: int,
                      real_cohort: Cohort | None = None, synthetic_cohort: Cohort | None = None) -> pd.DataFrame:
    r = real[real["n_codes"] >= min_codes]
    pairs = r.rename_axis("real_subject").reset_index().merge(
        synthetic.rename_axis("synthetic_subject").reset_index(),
        on=["codes_a", "codes_b", "n_codes"], suffixes=("_real", "_synthetic"),
    )
    same_visits = ((pairs["visits_a_real"] == pairs["visits_a_synthetic"])
                   & (pairs["visits_b_real"] == pairs["visits_b_synthetic"])).to_numpy(dtype=bool)
    out = pd.DataFrame({
        "real_subject": pairs["real_subject"].astype(str),
        "synthetic_subject": pairs["synthetic_subject"].astype(str),
        "n_codes": pairs["n_codes"].astype(np.int64),
        "same_visits": same_visits,
    }, columns=list(COPIED_RECORD_COLUMNS))
    if len(out) and real_cohort is not None and synthetic_cohort is not None:
        real_sets = _code_sets(real_cohort, out["real_subject"].unique())
        syn_sets = _code_sets(synthetic_cohort, out["synthetic_subject"].unique())
        confirmed = np.fromiter(
            (a == b for a, b in zip(real_sets.reindex(out["real_subject"]), syn_sets.reindex(out["synthetic_subject"]))),
            dtype=bool, count=len(out),
        )
        if not confirmed.all():  # a 128-bit hash collision: drop the false match
            out = out[confirmed]
    return out.sort_values(["real_subject", "synthetic_subject"], kind="stable").reset_index(drop=True)


def copied_records(real: Cohort, synthetic: Cohort, min_codes: int = 1) -> pd.DataFrame:
    """Every (real patient, synthetic record) pair whose whole-record code sets are identical.

    Paper: none (the paper's privacy metrics, section 3.2, cannot flag a copied record:
    NNAAR there lets a record match itself); used by the memorisation audit
    (:mod:`ehrlib.metrics.audit`).

    A synthetic record copies a real patient when the set of distinct codes over all its visits
    equals the real patient's: what a flat model (MedGAN, CorGAN: one visit per patient) can
    reproduce. ``same_visits`` says whether the visit sequence matches too (same number of
    visits, same codes in each, in order): what a sequential model can reproduce. Records are
    compared through 128-bit hash keys of their code sets (:func:`record_keys`), one join,
    never pairwise; every match is then confirmed on the codes themselves.

    Args:
        real: the real patients (e.g. the generator's training data).
        synthetic: the synthetic records.
        min_codes: only real patients with at least this many distinct codes are considered
            (a one-code record is likely to be reproduced by chance).

    Returns:
        DataFrame with columns ``real_subject``, ``synthetic_subject``, ``n_codes`` (distinct
        codes of the record) and ``same_visits`` (bool), sorted by the two ids; empty when
        nothing is copied. With fewer than :data:`SMALL_AUDIT` real patients of at least
        ``min_codes`` codes (the MIMIC-III demo has 100) a warning says how large a copy rate
        could go unseen.

    Raises:
        MetricError: ``min_codes`` is not a positive integer.
        TypeError: an argument is not a Cohort.
    """
    from ehrlib.errors import MetricError

    for name, cohort in (("real", real), ("synthetic", synthetic)):
        if not isinstance(cohort, Cohort):
            raise TypeError(f"{name}: expected a Cohort, got {type(cohort).__name__}")
    if isinstance(min_codes, bool) or not isinstance(min_codes, (int, np.integer)) or min_codes < 1:
        raise MetricError(f"min_codes={min_codes!r}; expected a positive integer")
    real_keys = record_keys(real)
    seen = int((real_keys["n_codes"] >= min_codes).sum())
    if seen < SMALL_AUDIT:
        import warnings

        unseen = 1.0 - 0.05 ** (1.0 / seen) if seen else 1.0
        warnings.warn(
            f"copied_records: only {seen} real patient(s) with at least {min_codes} code(s) "
            f"({real.source or 'real cohort'}); a true copy rate below {unseen:.1%} would show no copy "
            "more than 5% of the time",
            stacklevel=2,
        )
    return _copied_from_keys(real_keys, record_keys(synthetic), int(min_codes), real, synthetic)


def privacy_from_context(context, name: str, *, seed: int = 0, repeats: int = 10, protocol: str = "corrected",
                         **options) -> pd.DataFrame:
    """The privacy family of one synthetic cohort of an :class:`ehrlib.metrics.context.EvaluationContext`.

    Paper: section 3.2. Equals :func:`privacy_metrics` of ``(context.train, context.holdout,
    synthetic)``, on the context's encodings (each cohort encoded once for every generator).
    ``options``: ``metric``, ``length_penalty``, ``chunk_size`` of :func:`privacy_metrics`.
    """
    return privacy_metrics(context.train, context.holdout, context.synthetic[name], seed=seed, repeats=repeats,
                           protocol=protocol, context=context, **options)
