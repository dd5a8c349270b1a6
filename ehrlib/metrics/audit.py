"""Memorisation audit: does any synthetic record reproduce a real patient, and how close do they come?

Paper: none. The paper's privacy metrics (section 3.2) let a record match itself in NNAAR and
report no copy count, so a memorised record would pass unseen; this audit asks the direct
question of the released samples and of any generator's output.

For every real patient and every synthetic file the audit reports

* **exact copies**: a synthetic record with the same set of codes over the whole record
  (:func:`ehrlib.metrics.privacy.copied_records`), and whether the visit sequence matches too;
  counted among real patients with at least 1, 5 and 10 distinct codes, since a short record of
  common codes is reproduced by chance;
* **the nearest synthetic record**: the visit-aligned set distance (section 3.2.1; 0 is an
  exact copy of the visit sequence) and the Jaccard distance over the flattened codes.

Patients are reported by **role**: ``train-list`` (the generator saw them), ``test-list`` and
``unlisted`` (it never saw them: the first control). The second control is a
``marginals`` sample of the synthetic file's size drawn from that file's own code
frequencies with its own visit structure: it copies nothing, so what it matches is chance.
Memorisation shows as more copies (or smaller distances) for ``train-list`` than for both
controls.

Uncertainty: the copy rate among ``eligible`` patients carries an exact (Clopper-Pearson)
interval, and ``detectable_rate`` is the smallest true copy rate that would produce at least
one copy with probability ``power`` given the patients audited: with 98 patients and power
0.95 it is about 3%, so a clean audit of the MIMIC-III demo rules out only large copy rates.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort
from ehrlib.errors import MetricError
from ehrlib.metrics.distance import encode_cohorts
from ehrlib.metrics.privacy import _copied_from_keys, record_keys

MIN_CODES = (1, 5, 10)
SAMPLE, MARGINALS = "sample", "marginals"
ALL_PATIENTS = "all"
COPY_COLUMNS = ("synthetic", "comparison", "role", "min_codes", "patients", "eligible", "copied",
                "copied_same_visits", "synthetic_copies", "rate", "ci_low", "ci_high", "detectable_rate")
NEAREST_COLUMNS = ("synthetic", "comparison", "role", "real_subject", "n_codes", "n_visits",
                   "set_distance", "jaccard_distance", "copied")
DISTANCE_COLUMNS = ("synthetic", "comparison", "role", "distance", "patients", "mean", "min", "q10", "q25",
                    "median", "q75", "q90", "max", "share_zero")
PAIR_COLUMNS = ("synthetic", "comparison", "role", "real_subject", "synthetic_subject", "n_codes", "same_visits")
MAX_REDRAW_ROUNDS = 10_000


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial (Clopper-Pearson) interval for ``k`` successes in ``n`` trials; NaNs when ``n`` is 0."""
    if n == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def detectable_rate(n: int, power: float = 0.95) -> float:
    """Smallest true copy rate ``p`` with ``P(at least one copy among n patients) >= power``.

    ``1 - (1 - p)^n = power`` gives ``p = 1 - (1 - power)^(1/n)``; NaN when ``n`` is 0.
    """
    if n == 0:
        return float("nan")
    return float(1.0 - (1.0 - power) ** (1.0 / n))


def marginals_control(synthetic: Cohort, seed: int = 0) -> Cohort:
    """A sample that copies nothing: the synthetic file's visit structure, its code frequencies.

    Every visit of ``synthetic`` keeps its number of codes; the codes are redrawn
    independently from the file's own code occurrence frequencies, distinct within a visit
    (duplicates are redrawn). Patients are named ``CONTROL_000001``...

    Raises:
        MetricError: ``synthetic`` has no events.
    """
    ev = synthetic.events
    if ev.empty:
        raise MetricError(f"{synthetic.source or 'synthetic cohort'}: no events to draw a marginals control from")
    rng = np.random.default_rng([int(seed), 0x6D61])  # a stream of its own ("ma")
    codes, counts = np.unique(ev[CODE].to_numpy(dtype=str), return_counts=True)
    p = counts / counts.sum()
    visit_sizes = ev.groupby([SUBJECT, VISIT], sort=False).size()
    sizes = visit_sizes.to_numpy()
    visit_of = np.repeat(np.arange(len(sizes)), sizes)
    drawn = rng.choice(len(codes), size=len(visit_of), p=p)
    for _ in range(MAX_REDRAW_ROUNDS):
        key = visit_of * len(codes) + drawn
        _, first = np.unique(key, return_index=True)
        dup = np.ones(len(key), dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        drawn[dup] = rng.choice(len(codes), size=int(dup.sum()), p=p)
    else:  # pragma: no cover - needs a visit larger than the codes with mass, impossible for a valid cohort
        raise MetricError("marginals control: could not draw distinct codes within every visit")
    subjects = visit_sizes.index.get_level_values(0).to_numpy()[visit_of]
    names = pd.Series([f"CONTROL_{i:06d}" for i in range(1, synthetic.n_patients + 1)], index=synthetic.subject_ids)
    frame = pd.DataFrame({
        SUBJECT: names.loc[subjects].to_numpy(),
        VISIT: visit_sizes.index.get_level_values(1).to_numpy()[visit_of],
        CODE: codes[drawn],
    })
    return Cohort.from_events(frame, source=f"marginals control of {synthetic.source or 'synthetic'}")


def _flat(cohort: Cohort) -> Cohort:
    """The cohort with every patient's codes in one visit (for the Jaccard distance over codes)."""
    ev = cohort.events[[SUBJECT, CODE]].drop_duplicates()
    position = pd.Categorical(ev[SUBJECT], categories=pd.Index(cohort.subject_ids, dtype="string")).codes
    ev = ev.assign(_p=position).sort_values(["_p", CODE], kind="stable").reset_index(drop=True)
    return Cohort(pd.DataFrame({SUBJECT: ev[SUBJECT], VISIT: np.zeros(len(ev), dtype=np.int64), CODE: ev[CODE]}),
                  None, cohort.source)


HEAD_COLUMNS = 128  # most expensive (visit position, code) columns, multiplied as dense matrices


def _split_head(matrix, head: np.ndarray):
    """``(dense columns head, sparse matrix without them)`` of a CSR matrix."""
    dense = matrix[:, head].toarray()
    rest = matrix.copy()
    rest.data[np.isin(rest.indices, head)] = 0
    rest.eliminate_zeros()
    return dense, rest


def _nearest_per_group(query, refs, kind: str, chunk_size: int) -> np.ndarray:
    """Smallest distance from each query row to each reference set: ``len(query) x len(refs)``.

    The shared-code counts ``I`` of a chunk of query rows against every reference row form one
    dense ``chunk x sum(len(refs))`` block (the full matrix never exists). They are computed in
    two parts: the :data:`HEAD_COLUMNS` columns that cost most in a sparse product (the common
    codes, which hold most of its work) as a dense matrix product, the rest as a sparse one.
    ``kind`` is ``"set"`` (``T_a + T_b - 2I``, exact: integers in float32 below 2**24) or
    ``"jaccard"`` (``1 - I / (T_a + T_b - I)``, float32). Only the minimum is kept.
    """
    import scipy.sparse as sp

    ref_all = sp.vstack([r.matrix for r in refs], format="csr")
    n_cols = ref_all.shape[1]
    cost = (np.bincount(ref_all.indices, minlength=n_cols).astype(np.float64)
            * np.bincount(query.matrix.indices, minlength=n_cols))
    head = np.sort(np.argsort(-cost, kind="stable")[:HEAD_COLUMNS])
    head = head[cost[head] > 0]
    ref_head, ref_rest = _split_head(ref_all, head)
    ref_head_t = np.ascontiguousarray(ref_head.T)
    ref_rest_t = ref_rest.T.tocsr()
    q_head, q_rest = _split_head(query.matrix, head)
    totals = np.concatenate([r.totals for r in refs]).astype(np.float32)
    bounds = np.cumsum([0] + [len(r) for r in refs])
    out = np.empty((len(query), len(refs)), dtype=np.float64)
    for start in range(0, len(query), chunk_size):
        stop = min(start + chunk_size, len(query))
        inner = q_head[start:stop] @ ref_head_t  # dense part of I
        rest = (q_rest[start:stop] @ ref_rest_t).tocsr()  # sparse part; (row, column) pairs are unique
        inner[np.repeat(np.arange(stop - start), np.diff(rest.indptr)), rest.indices] += rest.data
        tq = query.totals[start:stop].astype(np.float32)[:, None]
        if kind == "set":
            inner *= -2.0
            inner += totals
            for g in range(len(refs)):
                out[start:stop, g] = inner[:, bounds[g]:bounds[g + 1]].min(axis=1) + tq[:, 0]
        else:
            union = totals + tq
            union -= inner
            np.divide(inner, union, out=inner, where=union > 0)
            for g in range(len(refs)):
                out[start:stop, g] = 1.0 - inner[:, bounds[g]:bounds[g + 1]].max(axis=1).astype(np.float64)
    return out


def _roles(real: Cohort, roles) -> pd.Series:
    if roles is None:
        return pd.Series(ALL_PATIENTS, index=pd.Index(real.subject_ids, dtype=object), name="role")
    if hasattr(roles, "roles"):  # a PaperSplit
        roles = roles.roles
    if not isinstance(roles, pd.Series):
        raise MetricError(f"roles: expected a pandas Series indexed by subject id (or a PaperSplit), got {type(roles).__name__}")
    roles = roles.copy()
    roles.index = roles.index.astype(str)
    ids = pd.Index(real.subject_ids).astype(str)
    absent = ids.difference(roles.index)
    if len(absent):
        raise MetricError(f"roles: real subject {absent[0]!r} has no role ({len(absent)} subject(s) in all)")
    return roles.reindex(ids).astype(str).set_axis(pd.Index(real.subject_ids, dtype=object))


def _distance_summary(values: np.ndarray) -> dict:
    if len(values) == 0:
        keys = ("mean", "min", "q10", "q25", "median", "q75", "q90", "max", "share_zero")
        return dict.fromkeys(keys, float("nan"))
    q = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {"mean": float(values.mean()), "min": float(values.min()), "q10": q[0], "q25": q[1], "median": q[2],
            "q75": q[3], "q90": q[4], "max": float(values.max()), "share_zero": float(np.mean(values == 0))}


@dataclass(frozen=True)
class Audit:
    """The audit's tidy tables.

    Attributes:
        copies: one row per (synthetic file, comparison, role, min_codes): ``patients``
            audited in the role, ``eligible`` (those with at least ``min_codes`` codes),
            ``copied`` (eligible patients with an exact code-set copy), ``copied_same_visits``
            (with the visit sequence copied too), ``synthetic_copies`` (synthetic records that
            copy one of them), ``rate`` = copied / eligible with its exact interval
            ``ci_low``/``ci_high``, and ``detectable_rate``.
        distances: per (synthetic file, comparison, role, distance): summary of the nearest
            distances (``set`` or ``jaccard``) over the role's patients.
        nearest: per real patient and synthetic file: nearest set and Jaccard distances.
        pairs: every copied (real patient, synthetic record) pair at ``min(min_codes)``.
        confidence, power: the interval's confidence and the detection power used.
    """

    copies: pd.DataFrame
    distances: pd.DataFrame
    nearest: pd.DataFrame
    pairs: pd.DataFrame
    confidence: float
    power: float

    def limits(self) -> list[str]:
        """Plain sentences on what the audited counts can rule out, one per (synthetic file, role)."""
        rows = self.copies[(self.copies["comparison"] == SAMPLE) & (self.copies["min_codes"] == self.copies["min_codes"].min())]
        out = []
        for r in rows.itertuples(index=False):
            if r.eligible == 0:
                out.append(f"{r.synthetic}, {r.role}: no patients audited; nothing can be said")
                continue
            out.append(
                f"{r.synthetic}, {r.role}: {r.eligible} patients audited, {r.copied} copied "
                f"(rate {r.rate:.3g}, {self.confidence:.0%} exact interval {r.ci_low:.3g}-{r.ci_high:.3g}); "
                f"a true copy rate below {r.detectable_rate:.2%} would show no copy with probability "
                f"above {1 - self.power:.0%}"
            )
        return out


def audit(real: Cohort, synthetic: Mapping[str, Cohort] | Cohort, roles=None, *, min_codes=MIN_CODES,
          control: bool = True, seed: int = 0, confidence: float = 0.95, power: float = 0.95,
          distances: bool = True, chunk_size: int = 256) -> Audit:
    """Audit synthetic files for copies of real patients, beside the two controls.

    Paper: none (module docstring); distances as in section 3.2.1.

    Args:
        real: the real patients to look for (e.g. the MIMIC-III demo, or a full MIMIC-III copy).
        synthetic: ``{name: Cohort}`` or one Cohort (named ``synthetic``).
        roles: each real patient's role: a :class:`ehrlib.data.splits.PaperSplit` (its
            ``roles``) or a Series indexed by subject id (``train-list``, ``test-list``,
            ``unlisted``, ...); default one role ``all``.
        min_codes: the minimum record sizes at which copies are counted.
        control: also audit a :func:`marginals_control` of each synthetic file.
        seed: seed of the marginals controls (file ``i`` uses ``seed + i``).
        confidence: confidence of the exact copy-rate interval.
        power: detection probability used for ``detectable_rate``.
        distances: compute the nearest set and Jaccard distances (the slow part); without,
            only copies are counted.
        chunk_size: query rows per sparse product in the distance search.

    Returns:
        :class:`Audit`; a warning per role too small to see a 1% copy rate (:func:`warn_small`).

    Raises:
        MetricError: an empty real cohort or synthetic file, a bad ``min_codes``,
            ``confidence`` or ``power``, or a real patient without a role.
    """
    if isinstance(synthetic, Cohort):
        synthetic = {"synthetic": synthetic}
    if not synthetic:
        raise MetricError("audit: no synthetic files given")
    mins = sorted({int(m) for m in np.atleast_1d(min_codes)}) if len(np.atleast_1d(min_codes)) else []
    if not mins or any(m < 1 for m in mins) or any(not float(m).is_integer() for m in np.atleast_1d(min_codes)):
        raise MetricError(f"min_codes={min_codes!r}; expected positive integers")
    for name, value in (("confidence", confidence), ("power", power)):
        if not 0 < value < 1:
            raise MetricError(f"{name}={value!r}; expected a number strictly between 0 and 1")
    if real.n_patients == 0:
        raise MetricError(f"{real.source or 'real cohort'}: no real patients to audit")
    for name, cohort in synthetic.items():
        if cohort.n_patients == 0:
            raise MetricError(f"synthetic file {name!r} ({cohort.source}) has no records")
    role = _roles(real, roles)
    real_keys = record_keys(real)
    role_names = list(pd.unique(role))

    copy_rows, distance_rows, nearest_parts, pair_parts = [], [], [], []
    flat_real = _flat(real) if distances else None
    for i, (name, syn) in enumerate(synthetic.items()):
        comparisons = [(SAMPLE, syn)]
        if control:
            comparisons.append((MARGINALS, marginals_control(syn, seed=seed + i)))
        if distances:  # one encoding and one product per chunk for the file and its control
            enc = encode_cohorts(real, *(c for _, c in comparisons))
            set_d = _nearest_per_group(enc[0], enc[1:], "set", chunk_size)
            enc = encode_cohorts(flat_real, *(_flat(c) for _, c in comparisons))
            jac_d = _nearest_per_group(enc[0], enc[1:], "jaccard", chunk_size)
        for j, (comparison, cohort) in enumerate(comparisons):
            syn_keys = record_keys(cohort)
            pairs = _copied_from_keys(real_keys, syn_keys, mins[0], real, cohort)
            pairs["role"] = role.loc[pairs["real_subject"]].to_numpy() if len(pairs) else pd.Series(dtype=object)
            pair_parts.append(pairs.assign(synthetic=name, comparison=comparison))
            copied_set = set(pairs["real_subject"])
            near = pd.DataFrame({
                "synthetic": name, "comparison": comparison, "role": role.to_numpy(),
                "real_subject": np.asarray(real.subject_ids, dtype=object),
                "n_codes": real_keys["n_codes"].to_numpy(), "n_visits": real_keys["n_visits"].to_numpy(),
                "set_distance": set_d[:, j] if distances else np.nan,
                "jaccard_distance": jac_d[:, j] if distances else np.nan,
            })
            near["copied"] = near["real_subject"].isin(copied_set).to_numpy()
            nearest_parts.append(near)
            for r in role_names:
                in_role = near[near["role"] == r]
                role_pairs = pairs[pairs["role"] == r]
                for m in mins:
                    eligible = in_role[in_role["n_codes"] >= m]
                    at_m = role_pairs[role_pairs["n_codes"] >= m]
                    copied = int(at_m["real_subject"].nunique())
                    low, high = clopper_pearson(copied, len(eligible), confidence)
                    copy_rows.append({
                        "synthetic": name, "comparison": comparison, "role": r, "min_codes": m,
                        "patients": len(in_role), "eligible": len(eligible), "copied": copied,
                        "copied_same_visits": int(at_m.loc[at_m["same_visits"], "real_subject"].nunique()),
                        "synthetic_copies": int(at_m["synthetic_subject"].nunique()),
                        "rate": copied / len(eligible) if len(eligible) else float("nan"),
                        "ci_low": low, "ci_high": high, "detectable_rate": detectable_rate(len(eligible), power),
                    })
                if distances:
                    for kind in ("set", "jaccard"):
                        values = in_role[f"{kind}_distance"].to_numpy(dtype=float)
                        distance_rows.append({"synthetic": name, "comparison": comparison, "role": r, "distance": kind,
                                              "patients": len(values), **_distance_summary(values)})
    pairs = pd.concat(pair_parts, ignore_index=True)[list(PAIR_COLUMNS)]
    result = Audit(
        copies=pd.DataFrame(copy_rows, columns=list(COPY_COLUMNS)),
        distances=pd.DataFrame(distance_rows, columns=list(DISTANCE_COLUMNS)),
        nearest=pd.concat(nearest_parts, ignore_index=True)[list(NEAREST_COLUMNS)],
        pairs=pairs,
        confidence=confidence,
        power=power,
    )
    warn_small(result)
    return result


def warn_small(result: Audit, threshold: float = 0.01) -> None:
    """Warn, naming the counts, when an audited role is too small to detect a copy rate of ``threshold``."""
    rows = result.copies[(result.copies["comparison"] == SAMPLE) & (result.copies["min_codes"] == result.copies["min_codes"].min())]
    small = rows[rows["detectable_rate"] > threshold]
    for r in small.drop_duplicates("role").itertuples(index=False):
        warnings.warn(
            f"only {r.eligible} {r.role} patients audited: a true copy rate below {r.detectable_rate:.1%} "
            f"would likely go unseen (power {result.power:.0%})",
            stacklevel=2,
        )
