"""Membership attacks with known power: a distance attack, a density attack, and their calibration.

Paper: section 3.2 (the distance-based membership-inference attack); the density attack and the
power calibration are this project's additions (the book's privacy-power page, and *Deviations*).

Two attacks score every real record; a higher score means "more likely a training member":

* ``distance``: minus the visit-aligned set distance (paper 3.2.1) from the record to its
  nearest synthetic record, the score of the paper's attack (:mod:`ehrlib.metrics.privacy`).
* ``density``: the DOMIAS score (van Breugel, Sun, Qian and van der Schaar, 2023,
  "Membership inference attacks against synthetic data through overfitting detection"):
  ``log p_S(x) - log p_R(x)``, the synthetic density over a real reference density at the
  record. A generator that overfits puts more mass near its training records than the real
  population has there; the reference density cancels what is merely common.

The density attack's embedding. Densities of a 5,000-code multi-hot vector cannot be estimated
from 1,000 records, so each record's code set (distinct codes over all visits, as a flat model
sees it) is projected on the first :data:`EMBEDDING_DIMENSIONS` components of a truncated SVD
(latent semantic analysis) of the binary patient × code matrix, and the densities are Gaussian
kernel densities there (as ``scipy.stats.gaussian_kde`` defines them: Scott's bandwidth on each
cohort's own covariance). The SVD keeps the directions in which records vary most: which frequent codes
and which comorbidity clusters a record has, the structure a generator can overfit. It is fitted
on the synthetic records and the reference records together (what an attacker holds: the release
and real data of the same population), never on the records attacked, and the vocabulary is the
union of every cohort's codes. Eight dimensions keep a kernel density usable with a
thousand records (its error grows fast with the dimension). What this embedding cannot see: a
copied record made of rare codes lands near the origin among many others, so exact copies of
rare records are the distance attack's and the exact-copy count's to find.

The reference records must be real records of the same population that no generator saw and that
are not attacked: the ``reference`` split of a run. The ``holdout`` calibration row returns
reference records, so :func:`calibration_rows` splits the reference in two halves: one is the
density reference, the other the holdout row's "synthetic" records (with the same records on
both sides the score would be 0 everywhere, a degenerate AUC of exactly ½).

Reported statistics (:func:`roc_summary`): ROC AUC (midranks: ties count ½) and the true-positive
rate at 0.1% and 1% false-positive rate, read off the ROC curve whose tied scores are joined by
straight segments. Membership attacks are judged at low FPR (Carlini et al. 2022, "Membership
inference attacks from first principles"): a few records identified with confidence are a
leak that an AUC near ½ hides. With fewer than 1,000 non-members the 0.1% point lies between the
curve's first two points and is interpolated.

Members and non-members: every training record is a member and every holdout record a
non-member (the corrected protocol's two populations). Unlike the threshold attack's accuracy,
AUC and TPR at a given FPR need no equal class sizes, so no subsample is drawn and every record
is scored. Intervals: a two-sample bootstrap over members and non-members (each resampled with
replacement, :data:`N_BOOTSTRAP` times), basic intervals clipped to [0, 1], as for every
bootstrapped metric of the book. Here the bootstrap is valid for nearest-neighbour scores: a
record's score is a function of the record and of the fixed synthetic and reference cohorts, and
no resampled set is ever searched for neighbours (the reason the book never bootstraps NNAAR).
The interval therefore covers the draw of members and non-members, not that of the synthetic
cohort.

Power calibration (:func:`calibration_rows`, :func:`detection`): every attack is run on the
partial memorizers (:mod:`ehrlib.models.reference`, 1%, 5%, 20% and 100% of their records copied
from training, the rest drawn from the marginals) beside the ``holdout`` and ``marginals`` rows; a
copy rate is *detected* by an attack when its AUC interval, or its TPR-at-1%-FPR interval, lies
wholly above the holdout row's. The smallest detected copy rate turns "near chance" into "no
copying above that rate is present".
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ehrlib.cohort import Cohort
from ehrlib.errors import MetricError

#: The attacks, in the order the tables show them.
ATTACKS = ("distance", "density")
#: The false-positive rates at which the true-positive rate is reported.
FPRS = (0.001, 0.01)
#: Components of the density attack's SVD embedding (module docstring).
EMBEDDING_DIMENSIONS = 8
#: The density attack runs only when each half of the reference split has this many records.
MIN_DENSITY_REFERENCE = 50
#: Bootstrap replicates of each interval.
N_BOOTSTRAP = 1000
LEVEL = 0.95
#: Columns of the power table (``table_privacy_power``) that other code reads.
POWER_COLUMNS = ("attack", "copy_rate", "auc", "auc_low", "auc_high", "tpr_at_0_1pct", "tpr_at_1pct", "detected")
#: Columns of the detection table (``table_privacy_detection``).
DETECTION_COLUMNS = ("attack", "min_detected_copy_rate")
_TPR_NAMES = {0.001: "tpr_at_0_1pct", 0.01: "tpr_at_1pct"}


def _rng(seed: int, stream: str) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MetricError(f"seed={seed!r}: expected a non-negative integer")
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode())])


# ---------------------------------------------------------------------------------- ROC
def _groups(member: np.ndarray, nonmember: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Each record's distinct-score group, groups numbered from the highest score (most member-like)."""
    uniq, group = np.unique(-np.concatenate([member, nonmember]), return_inverse=True)
    return group[: len(member)], group[len(member):], len(uniq)


def _group_counts(group: np.ndarray, picks: np.ndarray, n_groups: int) -> np.ndarray:
    """Records per score group in each replicate: ``picks`` (R x n) indexes the records drawn."""
    R = picks.shape[0]
    flat = (np.arange(R)[:, None] * n_groups + group[picks]).ravel()
    return np.bincount(flat, minlength=R * n_groups).reshape(R, n_groups).astype(np.float64)


def _roc_statistics(tp: np.ndarray, fp: np.ndarray, fprs=FPRS) -> dict[str, np.ndarray]:
    """AUC and TPR at each FPR of every replicate: ``tp``, ``fp`` (R x G) count the members and
    non-members of each replicate in each distinct-score group, highest score first."""
    n1 = tp.sum(axis=1, keepdims=True)
    n0 = fp.sum(axis=1, keepdims=True)
    tp_before = np.cumsum(tp, axis=1) - tp
    auc = (fp * (tp_before + 0.5 * tp)).sum(axis=1) / (n1[:, 0] * n0[:, 0])
    tpr = np.concatenate([np.zeros_like(n1), np.cumsum(tp, axis=1)], axis=1) / n1
    fpr = np.concatenate([np.zeros_like(n0), np.cumsum(fp, axis=1)], axis=1) / n0
    out = {"auc": auc}
    for f in fprs:
        # the ROC through its points, ties joined by straight segments: TPR at FPR = f
        k = (fpr <= f).sum(axis=1) - 1  # last point with fpr <= f (fpr is non-decreasing from 0)
        k = np.minimum(k, fpr.shape[1] - 2)
        rows = np.arange(len(k))
        f0, f1 = fpr[rows, k], fpr[rows, k + 1]
        t0, t1 = tpr[rows, k], tpr[rows, k + 1]
        step = np.where(f1 > f0, (f - f0) / np.where(f1 > f0, f1 - f0, 1.0), 0.0)
        value = np.where(f0 >= f, t0, t0 + (t1 - t0) * np.clip(step, 0.0, 1.0))
        out[_TPR_NAMES.get(f, f"tpr_at_{f:g}")] = value
    return out


def _scores(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray]:
    member = np.asarray(member_scores, dtype=np.float64).ravel()
    nonmember = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if len(member) == 0 or len(nonmember) == 0:
        raise MetricError(f"a membership attack needs members and non-members (got {len(member)} and {len(nonmember)})")
    for name, s in (("member", member), ("non-member", nonmember)):
        if not np.isfinite(s).all():
            raise MetricError(f"{name} scores: {int((~np.isfinite(s)).sum())} are not finite")
    return member, nonmember


def roc_summary(member_scores, nonmember_scores) -> dict:
    """ROC AUC and TPR at 0.1% and 1% FPR when a *higher* score means "member".

    AUC is the probability that a member outscores a non-member, ties ½ (Mann-Whitney with
    midranks). TPR at FPR ``f`` is read off the ROC curve whose tied scores are joined by straight
    segments (ties broken at random, in expectation).

    Returns:
        dict with ``auc``, ``tpr_at_0_1pct`` and ``tpr_at_1pct``.
    """
    member, nonmember = _scores(member_scores, nonmember_scores)
    g1, g0, G = _groups(member, nonmember)
    tp = _group_counts(g1, np.arange(len(member))[None, :], G)
    fp = _group_counts(g0, np.arange(len(nonmember))[None, :], G)
    return {k: float(v[0]) for k, v in _roc_statistics(tp, fp).items()}


def attack_summary(member_scores, nonmember_scores, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0,
                   stream: str = "attack") -> dict:
    """:func:`roc_summary` with basic bootstrap intervals (members and non-members resampled apart).

    Returns:
        dict with ``auc``, ``tpr_at_0_1pct``, ``tpr_at_1pct``, each with ``<name>_low`` and
        ``<name>_high`` (level :data:`LEVEL`, clipped to [0, 1]), and ``n_members``,
        ``n_nonmembers``.
    """
    from ehrlib.metrics.bootstrap import basic_interval

    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 2:
        raise MetricError(f"n_bootstrap={n_bootstrap!r}: expected an integer >= 2")
    member, nonmember = _scores(member_scores, nonmember_scores)
    rng = _rng(seed, stream)
    g1, g0, G = _groups(member, nonmember)
    n1, n0 = len(member), len(nonmember)
    # replicate 0: the sample itself; 1..B: members and non-members each resampled with replacement,
    # in blocks that keep the index and count arrays near 64 MB at the paper's 45,520 members
    block = max(1, min(n_bootstrap + 1, 2**23 // max(n1 + n0, G)))
    parts: list[dict] = []
    done = 0
    while done < n_bootstrap + 1:
        k = min(block, n_bootstrap + 1 - done)
        p1 = rng.integers(0, n1, size=(k, n1))
        p0 = rng.integers(0, n0, size=(k, n0))
        if done == 0:
            p1[0], p0[0] = np.arange(n1), np.arange(n0)
        parts.append(_roc_statistics(_group_counts(g1, p1, G), _group_counts(g0, p0, G)))
        done += k
    stats = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    out: dict = {}
    for name, values in stats.items():
        low, high = basic_interval(values[0], values[1:], level=LEVEL, bounds=(0.0, 1.0))
        out[name], out[f"{name}_low"], out[f"{name}_high"] = float(values[0]), low, high
    out["n_members"], out["n_nonmembers"] = len(member), len(nonmember)
    return out


# ---------------------------------------------------------------------------------- attacks
def _query_list(queries) -> list[Cohort]:
    out = [queries] if isinstance(queries, Cohort) else list(queries)
    for c in out:
        if not isinstance(c, Cohort):
            raise TypeError(f"queries: expected Cohorts, got {type(c).__name__}")
    return out


def _code_sets(cohorts, vocab) -> list[sp.csr_matrix]:
    """The binary patient x code matrix (distinct codes over all visits) of each cohort."""
    from ehrlib.data.encode import binary_matrix

    return [binary_matrix(c, vocab, dtype=np.float64) for c in cohorts]


def distance_scores(queries, synthetic: Cohort):
    """Minus the set distance (paper 3.2.1) from each query record to its nearest synthetic record.

    ``queries``: a Cohort (returns one array) or a sequence of Cohorts (returns a list of arrays,
    all encoded with one vocabulary). A copy of the record in ``synthetic`` scores 0, the highest.
    """
    from ehrlib.metrics.distance import encode_cohorts, nearest

    listed = _query_list(queries)
    *encoded, s = encode_cohorts(*listed, synthetic)
    out = [0.0 - nearest(q, s).distance for q in encoded]  # 0.0 - d: a copy scores 0, not -0
    return out[0] if isinstance(queries, Cohort) else out


def density_scores(queries, synthetic: Cohort, reference: Cohort, *, dimensions: int = EMBEDDING_DIMENSIONS,
                   seed: int = 0):
    """The DOMIAS score ``log p_synthetic(x) - log p_reference(x)`` of each query record.

    Densities are Gaussian kernel densities on a truncated-SVD embedding of the records' code sets,
    fitted on ``synthetic`` and ``reference`` together (module docstring, where the embedding is
    justified). ``reference``: real records of the same population that no generator saw and that
    are not among the queries. ``queries``: a Cohort (returns one array) or a sequence of Cohorts
    (a list of arrays, one embedding for all).

    Raises:
        MetricError: a cohort too small for the embedding (fewer records than ``dimensions + 2``).
    """
    from sklearn.decomposition import TruncatedSVD

    from ehrlib.data.encode import Vocabulary

    listed = _query_list(queries)
    for name, c in (("synthetic", synthetic), ("reference", reference)):
        if not isinstance(c, Cohort):
            raise TypeError(f"{name}: expected a Cohort, got {type(c).__name__}")
        if c.n_patients < dimensions + 2:
            raise MetricError(f"density attack: the {name} cohort{f' ({c.source})' if c.source else ''} has "
                              f"{c.n_patients} record(s); a {dimensions}-dimensional density needs at least "
                              f"{dimensions + 2}")
    vocab = Vocabulary.from_cohorts(*listed, synthetic, reference)
    *xq, xs, xr = _code_sets((*listed, synthetic, reference), vocab)
    k = int(min(dimensions, len(vocab) - 1))
    if k < 1:
        raise MetricError(f"density attack: the cohorts use {len(vocab)} distinct code(s); an embedding needs two")
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7,
                       random_state=int(_rng(seed, "density_svd").integers(2**31)))
    svd.fit(sp.vstack([xs, xr]).tocsr())
    zs, zr = svd.transform(xs), svd.transform(xr)
    # a ridge of 1e-6 of the embedding's mean variance: a release with fewer distinct records than
    # dimensions (a collapsed generator) still has a density, one far narrower than the reference's
    ridge = 1e-6 * float(np.vstack([zs, zr]).var(axis=0).mean())
    kdes = [_Kde(z, name, ridge) for name, z in (("synthetic", zs), ("reference", zr))]
    out = []
    for x in xq:
        z = svd.transform(x)
        out.append(kdes[0].logpdf(z) - kdes[1].logpdf(z))
    return out[0] if isinstance(queries, Cohort) else out


class _Kde:
    """A Gaussian kernel density with Scott's bandwidth on the data's covariance (what
    ``scipy.stats.gaussian_kde`` computes), evaluated through one matrix product in whitened
    coordinates: scipy's evaluation loops in Python and took seconds for a few thousand points."""

    def __init__(self, data: np.ndarray, name: str, ridge: float = 0.0):
        n, d = data.shape
        factor = n ** (-1.0 / (d + 4))  # Scott's rule
        cov = (np.cov(data, rowvar=False).reshape(d, d) + ridge * np.eye(d)) * factor**2
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise MetricError(f"density attack: the {name} records span fewer than {d} directions of the "
                              "embedding (their covariance is singular); use a larger or more varied cohort") from None
        self.whiten = np.linalg.inv(chol).T
        self.points = data @ self.whiten
        self.sq = (self.points ** 2).sum(axis=1)
        self.norm = -np.log(n) - 0.5 * d * np.log(2 * np.pi) - np.log(np.diag(chol)).sum()

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import logsumexp

        chunk = max(1, 2**23 // len(self.points))  # query rows per block: ~64 MB of distances
        w = x @ self.whiten
        out = np.empty(len(w))
        for a in range(0, len(w), chunk):
            b = w[a:a + chunk]
            d2 = (b ** 2).sum(axis=1)[:, None] + self.sq[None, :] - 2.0 * b @ self.points.T
            out[a:a + chunk] = logsumexp(-0.5 * np.maximum(d2, 0.0), axis=1) + self.norm
        return out


def attack_scores(attack: str, queries, synthetic: Cohort, reference: Cohort | None = None, seed: int = 0):
    """The scores of one attack (:data:`ATTACKS`) for the query records (higher: member); ``queries``
    as in :func:`distance_scores`."""
    if attack == "distance":
        return distance_scores(queries, synthetic)
    if attack == "density":
        if reference is None:
            raise MetricError("the density attack needs real reference records (the run's reference split)")
        return density_scores(queries, synthetic, reference, seed=seed)
    raise MetricError(f"attack={attack!r}: expected one of {ATTACKS}")


def membership_attacks(train: Cohort, holdout: Cohort, synthetic: Cohort, reference: Cohort | None, *,
                       attacks=ATTACKS, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0,
                       scores: dict | None = None) -> pd.DataFrame:
    """Every attack against one synthetic cohort: members ``train``, non-members ``holdout``.

    Args:
        train, holdout: the members and non-members (every record of each is scored).
        synthetic: the released records.
        reference: the density attack's real reference records (disjoint from the three above).
        attacks: which of :data:`ATTACKS`.
        n_bootstrap, seed: of the intervals (:func:`attack_summary`); each attack draws from its
            own stream.
        scores: if a dict, filled with ``{attack: (member_scores, nonmember_scores)}``.

    Returns:
        DataFrame, one row per attack: ``attack``, ``auc``, ``auc_low``, ``auc_high``,
        ``tpr_at_0_1pct`` (+ ``_low``, ``_high``), ``tpr_at_1pct`` (+ ``_low``, ``_high``),
        ``n_members``, ``n_nonmembers``.
    """
    rows = []
    for attack in attacks:
        member, nonmember = attack_scores(attack, (train, holdout), synthetic, reference, seed)
        if scores is not None:
            scores[attack] = (member, nonmember)
        rows.append({"attack": attack, **attack_summary(member, nonmember, n_bootstrap=n_bootstrap, seed=seed,
                                                        stream=f"attack:{attack}")})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- power calibration
#: The calibration rows of the power table: generator name -> share of records copied from training.
CALIBRATION = {"holdout": 0.0, "marginals": 0.0, "memorizer_1": 0.01, "memorizer_5": 0.05, "memorizer_20": 0.20,
               "memorizer_100": 1.0}
#: The row every other is compared with.
BASELINE = "holdout"


def split_reference(reference: Cohort, seed: int = 0) -> tuple[Cohort, Cohort]:
    """The reference split in two seeded halves: ``(density_reference, holdout_records)``.

    The first half is the density attack's reference; the second the ``holdout`` calibration row's
    released records (module docstring: with one set on both sides the density score is 0).
    """
    if not isinstance(reference, Cohort):
        raise TypeError(f"reference: expected a Cohort, got {type(reference).__name__}")
    if reference.n_patients < 2:
        raise MetricError(f"the reference split has {reference.n_patients} record(s); the power calibration "
                          "splits it in two halves")
    ids = reference.subject_ids
    order = _rng(seed, "split_reference").permutation(len(ids))
    half = len(ids) // 2
    return reference.subset(ids[np.sort(order[:half])]), reference.subset(ids[np.sort(order[half:])])


def holdout_row(reference: Cohort, *, n_synthetic: int, seed: int = 0) -> tuple[Cohort, Cohort]:
    """``(density_reference, holdout_release)``: :func:`split_reference`'s halves, the second cut
    to at most ``n_synthetic`` records (seeded). Every caller with the same reference and seed
    gets the same two cohorts, so the privacy page's models and the power calibration share one
    holdout row."""
    density_reference, held = split_reference(reference, seed)
    if held.n_patients > n_synthetic:
        pick = _rng(seed, "holdout_row").permutation(held.n_patients)[:n_synthetic]
        held = held.subset(held.subject_ids[np.sort(pick)])
    return density_reference, held


def usable_attacks(reference: Cohort) -> tuple[tuple[str, ...], str]:
    """The attacks a reference split allows, and why one is left out (``""`` when none is).

    The density attack needs :data:`MIN_DENSITY_REFERENCE` records in each half of the reference
    (:func:`split_reference`): an eight-dimensional density of fewer records is mostly noise.
    """
    half = reference.n_patients // 2
    if half < MIN_DENSITY_REFERENCE:
        return tuple(a for a in ATTACKS if a != "density"), (
            f"the density attack is left out: its reference is half of the reference split, {half} records here, "
            f"and it needs at least {MIN_DENSITY_REFERENCE}")
    return ATTACKS, ""


def is_detected(low: float, baseline_high: float) -> bool:
    """The detection rule: an interval wholly above the baseline's (``low > baseline_high``).

    Overlapping intervals are "not ordered" (the book's rule for every verdict); a NaN bound
    detects nothing.
    """
    return bool(np.isfinite(low) and np.isfinite(baseline_high) and low > baseline_high)


def mark_detected(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``detected`` to a power table: per attack, a row whose AUC interval or TPR-at-1%-FPR
    interval lies wholly above the :data:`BASELINE` row's (:func:`is_detected`); the baseline row
    itself is never detected.

    ``table``: one row per (``attack``, ``generator``) with ``auc_low``, ``auc_high``,
    ``tpr_at_1pct_low``, ``tpr_at_1pct_high``.
    """
    out = table.copy()
    detected = []
    for rec in out.to_dict("records"):
        base = out[(out["attack"] == rec["attack"]) & (out["generator"] == BASELINE)]
        if rec["generator"] == BASELINE:
            detected.append(False)
            continue
        if len(base) != 1:
            raise MetricError(f"power table: attack {rec['attack']!r} has {len(base)} {BASELINE!r} row(s); "
                              "expected one to compare with")
        b = base.iloc[0]
        detected.append(is_detected(rec["auc_low"], b["auc_high"])
                        or is_detected(rec["tpr_at_1pct_low"], b["tpr_at_1pct_high"]))
    out["detected"] = detected
    return out


def detection(power: pd.DataFrame) -> pd.DataFrame:
    """Per attack, the smallest copy rate of a partial memorizer it detects (NaN when none).

    ``power``: :func:`calibration_rows`' table (``attack``, ``generator``, ``copy_rate``,
    ``detected``). Only copying rows (copy rate above 0) count. A reader of an attack's result
    near chance can say "no copying at or above this rate is present", for generators of the size
    calibrated.
    """
    rows = []
    for attack in pd.unique(power["attack"]):
        part = power[(power["attack"] == attack) & (power["copy_rate"] > 0) & power["detected"].astype(bool)]
        rows.append({"attack": attack,
                     "min_detected_copy_rate": float(part["copy_rate"].min()) if len(part) else float("nan")})
    return pd.DataFrame(rows, columns=list(DETECTION_COLUMNS))


def calibration_cohorts(train: Cohort, reference: Cohort, *, n_synthetic: int, seed: int = 0,
                        marginals: Cohort | None = None) -> tuple[Cohort, dict[str, Cohort]]:
    """The density reference and the released records of every calibration row (:data:`CALIBRATION`).

    ``holdout``: up to ``n_synthetic`` records of the second half of ``reference``
    (:func:`split_reference`); ``marginals``: the cohort given (the run's reference generator) or
    one fitted on ``train`` here; the partial memorizers are fitted on ``train`` here and generate
    ``n_synthetic`` records with ``seed``.
    """
    from ehrlib import models

    density_reference, held = holdout_row(reference, n_synthetic=n_synthetic, seed=seed)
    cohorts = {"holdout": held}
    cohorts["marginals"] = marginals if marginals is not None else models.get("marginals").fit(train).generate(
        n_synthetic, seed=seed)
    for name in CALIBRATION:
        if name.startswith("memorizer_"):
            cohorts[name] = models.get(name).fit(train).generate(n_synthetic, seed=seed)
    return density_reference, cohorts


def calibration_rows(train: Cohort, holdout: Cohort, reference: Cohort, *, n_synthetic: int = 1000, seed: int = 0,
                     n_bootstrap: int = N_BOOTSTRAP, attacks=ATTACKS, marginals: Cohort | None = None,
                     scores: dict | None = None) -> pd.DataFrame:
    """Every attack on every calibration row: the power table (``table_privacy_power``).

    Members are ``train``, non-members ``holdout``; the rows' cohorts come from
    :func:`calibration_cohorts`. Returns one row per (attack, generator) with the columns of
    :data:`POWER_COLUMNS` plus ``generator``, the TPR intervals, ``exact_copies`` (synthetic
    records that are exact copies of a training record's code set,
    :func:`ehrlib.metrics.privacy.copied_records`), ``n_synthetic``, ``n_members`` and
    ``n_nonmembers``. ``scores``: if a dict, filled with ``{(generator, attack): (member_scores,
    nonmember_scores)}`` and ``{generator: cohort}`` under the key ``"cohorts"``.
    """
    from ehrlib.metrics.privacy import _copied_from_keys, record_keys

    train_keys = record_keys(train)
    density_reference, cohorts = calibration_cohorts(train, reference, n_synthetic=n_synthetic, seed=seed,
                                                     marginals=marginals)
    rows = []
    for generator, cohort in cohorts.items():
        found: dict = {}
        table = membership_attacks(train, holdout, cohort, density_reference, attacks=attacks,
                                   n_bootstrap=n_bootstrap, seed=seed, scores=found)
        # exact copies of a training record's code set (ehrlib.metrics.privacy.copied_records)
        copies = _copied_from_keys(train_keys, record_keys(cohort), 1, train, cohort)["synthetic_subject"].nunique()
        for rec in table.to_dict("records"):
            rows.append({"generator": generator, "copy_rate": CALIBRATION[generator], **rec,
                         "exact_copies": int(copies), "n_synthetic": cohort.n_patients})
        if scores is not None:
            for attack, pair in found.items():
                scores[(generator, attack)] = pair
    if scores is not None:
        scores["cohorts"] = cohorts
    out = mark_detected(pd.DataFrame(rows))
    first = ["attack", "generator", "copy_rate", "auc", "auc_low", "auc_high", "tpr_at_0_1pct", "tpr_at_1pct",
             "detected"]
    return out[first + [c for c in out.columns if c not in first]]


# ---------------------------------------------------------------------------------- exposed records
def most_exposed(cohort: Cohort, scores, *, top: int = 5, vocabulary_of: Cohort | None = None,
                 max_codes: int = 6) -> pd.DataFrame:
    """The records of ``cohort`` an attack scores as most exposed, with their codes and rarity.

    Args:
        cohort: the attacked records (e.g. the members), in the order of ``scores``.
        scores: one score per record (higher: more exposed).
        top: how many records.
        vocabulary_of: the cohort whose patient counts define a code's rarity (default ``cohort``).
        max_codes: codes listed per record (its rarest first).

    Returns:
        DataFrame: ``rank``, ``score``, ``n_codes``, ``rarest_prevalence`` (share of patients of
        ``vocabulary_of`` with the record's rarest code), ``codes`` (``code title (patients)``,
        rarest first, ``; ``-separated).
    """
    from ehrlib.cohort import CODE, SUBJECT
    from ehrlib.data.icd9 import short_titles

    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != cohort.n_patients:
        raise MetricError(f"most_exposed: {len(scores)} scores for {cohort.n_patients} records")
    base = vocabulary_of if vocabulary_of is not None else cohort
    patients = base.events.drop_duplicates([SUBJECT, CODE])[CODE].value_counts()
    order = np.argsort(-scores, kind="stable")[:top]
    ids = cohort.subject_ids
    ev = cohort.events
    rows = []
    for rank, i in enumerate(order, start=1):
        codes = pd.unique(ev.loc[ev[SUBJECT] == ids[i], CODE])
        counts = patients.reindex(codes).fillna(0).astype(int)
        counts = counts.sort_values(kind="stable")
        titles = short_titles(list(counts.index))
        listed = [f"{c} {t} ({n})" for c, t, n in zip(counts.index, titles, counts.to_numpy())][:max_codes]
        if len(counts) > max_codes:
            listed.append(f"+{len(counts) - max_codes} more")
        rows.append({"rank": rank, "score": float(scores[i]), "n_codes": len(codes),
                     "rarest_prevalence": float(counts.iloc[0]) / base.n_patients if len(counts) else float("nan"),
                     "codes": "; ".join(listed)})
    return pd.DataFrame(rows, columns=["rank", "score", "n_codes", "rarest_prevalence", "codes"])
