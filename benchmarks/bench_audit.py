"""Time the memorisation audit at the paper's scale against a pure-Python loop.

Paper scale: 45,520 real (training) patients and one 10,000-record synthetic file. Both come
from one simulated cohort (``ehrlib.data.simulate``): the synthetic file is 9,900 disjoint
real records plus 100 copies of real records, so the audit must find at least those 100.
The audit computes, for every real patient, exact copies (code set and visit sequence) and
the nearest synthetic record by set and Jaccard distance, for the file and for its
``marginals`` control (two files' worth of work).

Prints: the audit's time (target <= 30 s; on a shared machine compare it with the single
library ``nearest`` pass timed in the same run), a pure-Python loop (the same three quantities for
each real patient against every synthetic record) timed on a few real patients in the same run
and extrapolated to all of them, the speed-up, and a check that both agree on those patients.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_audit.py [--scale 0.1] [--naive-queries 10]``
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd

from ehrlib.cohort import Cohort
from ehrlib.data import simulate, split
from ehrlib.metrics.audit import SAMPLE, audit
from ehrlib.metrics.distance import encode_cohorts, nearest
from bench_privacy import nested_sets, timed  # noqa: E402  (the same pure-Python input as the privacy benchmark)

N_REAL = 45_520  # training patients (paper)
N_SYNTHETIC = 10_000  # synthetic patients per file (paper)
N_COPIES = 100  # real records planted in the synthetic file


def naive_audit(query: list[set[str]], refs: list[list[set[str]]]) -> tuple[int, float, bool]:
    """Nearest set distance, nearest flat Jaccard distance and whether any record copies the code set."""
    flat_q = set().union(*query)
    best_set, best_jac, copied = None, None, False
    for r in refs:
        d = 0
        for i in range(max(len(query), len(r))):
            if i < len(query) and i < len(r):
                d += len(query[i] ^ r[i])
            else:
                d += len(query[i]) if i < len(query) else len(r[i])
        flat_r = set().union(*r)
        shared = len(flat_q & flat_r)
        jac = 1.0 - shared / (len(flat_q) + len(flat_r) - shared)
        copied = copied or flat_q == flat_r
        best_set = d if best_set is None else min(best_set, d)
        best_jac = jac if best_jac is None else min(best_jac, jac)
    return best_set, best_jac, copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's patient counts")
    parser.add_argument("--naive-queries", type=int, default=10, help="real patients for the pure-Python loop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    n_real, n_synthetic = (max(20, round(n * args.scale)) for n in (N_REAL, N_SYNTHETIC))
    n_copies = min(N_COPIES, n_synthetic // 10)
    (real, others), t_data = timed(split, simulate(n_real + n_synthetic, seed=args.seed), n_holdout=n_synthetic,
                                   seed=args.seed)
    planted = real.subset(real.subject_ids[:: max(1, n_real // n_copies)][:n_copies])
    fresh = others.subset(others.subject_ids[: n_synthetic - n_copies])
    synthetic = Cohort.from_events(pd.concat([fresh.events, planted.renamed("COPY_").events]), source="benchmark")
    print(f"data: simulate(seed={args.seed}): real {real!r}; synthetic {synthetic!r} with {n_copies} planted copies "
          f"({t_data:.1f} s)")
    print("device: CPU, one thread (OMP_NUM_THREADS=1); timings on a shared machine")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, t_fast = timed(audit, real, {"file": synthetic}, seed=args.seed)
    copies = result.copies[(result.copies["comparison"] == SAMPLE) & (result.copies["min_codes"] == 1)]
    print(f"audit of {len(synthetic)} synthetic records (and its marginals control) against {len(real)} real: "
          f"{t_fast:.2f} s (target <= 30 s)")
    print(result.copies.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    assert int(copies["copied"].iloc[0]) >= n_copies, "the audit missed planted copies"

    (enc_real, enc_syn), t_enc = timed(encode_cohorts, real, synthetic)
    _, t_pass = timed(nearest, enc_syn, enc_real)
    print(f"for scale, in the same run: one library nearest() pass, synthetic -> real, {t_pass:.2f} s (+ encoding "
          f"{t_enc:.2f} s); the audit does four such passes (set and Jaccard, file and control) plus the copies: "
          f"audit / pass = {t_fast / t_pass:.1f}")

    queries, refs = nested_sets(real)[: args.naive_queries], nested_sets(synthetic)
    slow, t_slow = timed(lambda: [naive_audit(q, refs) for q in queries])
    near = result.nearest[result.nearest["comparison"] == SAMPLE].iloc[: len(queries)]
    assert np.array_equal([s[0] for s in slow], near["set_distance"].to_numpy()), "set distances disagree"
    assert np.allclose([s[1] for s in slow], near["jaccard_distance"].to_numpy()), "Jaccard distances disagree"
    assert [s[2] for s in slow] == near["copied"].tolist(), "copies disagree"
    t_slow_all = t_slow / len(queries) * len(real) * 2  # the file and its control
    print(f"pure Python: {len(queries)} real patients x {len(refs)} records in {t_slow:.2f} s -> all {len(real)} "
          f"patients, file and control ~ {t_slow_all:.0f} s ({t_slow_all / 60:.1f} min); "
          f"speed-up {t_slow_all / t_fast:.0f}x; both agree on the patients timed")


if __name__ == "__main__":
    main()
