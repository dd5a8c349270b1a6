"""The full Figure 3 (5 percentiles x 6 metrics x intervals) for one generator (target <= 5 min at paper scale).

Paper scale: 45,520 train, 1,000 holdout, 10,000 synthetic patients. The machine is shared, so
the script times :func:`ehrlib.metrics.longtail.longtail_ablation` (corrected protocol, RF
discriminator, B = 1000, R = 10) at two smaller scales, fits time ~ scale^k and extrapolates to
the paper's scale, saying so. Generator: ``marginals``.

Naive baseline timed in the same run: per percentile, a pure-Python nearest-neighbour loop for
NNAAR and MIA (timed on a few queries, multiplied by the distance evaluations needed) and a
pandas resampling loop for the prevalence bootstrap (timed on a few replicates, multiplied to
B = 1000), plus the same Random Forest. Prints the ratio naive / ours.

    OMP_NUM_THREADS=1 python benchmarks/bench_fig3.py [--scales 0.05 0.1]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bootstrap import naive_bootstrap  # noqa: E402
from bench_privacy import naive_nearest, nested_sets  # noqa: E402

from ehrlib import models  # noqa: E402
from ehrlib.data import simulate, split  # noqa: E402
from ehrlib.metrics.longtail import PERCENTILES, longtail_ablation  # noqa: E402

N_TRAIN, N_HOLDOUT, N_SYNTHETIC = 45_520, 1_000, 10_000
N_BOOTSTRAP, REPEATS = 1000, 10


def run(scale: float, naive_queries: int, naive_replicates: int) -> float:
    n_train, n_holdout, n_syn = (max(50, int(round(n * scale))) for n in (N_TRAIN, N_HOLDOUT, N_SYNTHETIC))
    cohort = simulate(n_train + n_holdout, seed=0)
    train, holdout = split(cohort, n_holdout=n_holdout, seed=0)
    syn = models.get("marginals").fit(train).generate(n_syn, seed=0)
    t = time.perf_counter()
    out = longtail_ablation(train, holdout, {"marginals": syn}, PERCENTILES, n_bootstrap=N_BOOTSTRAP,
                            repeats=REPEATS, seed=0)
    ours = time.perf_counter() - t
    assert len(out) == len(PERCENTILES) * 6
    queries, refs = nested_sets(train)[:naive_queries], nested_sets(syn)
    t = time.perf_counter()
    naive_nearest(queries, refs)
    per_pair = (time.perf_counter() - t) / (len(queries) * len(refs))
    n_nn = min(n_train, n_holdout, n_syn)
    pairs = (7 * n_nn * n_nn + n_nn * n_syn) * REPEATS + n_holdout * n_syn  # NNAAR + MIA, full cohorts (upper bound)
    t = time.perf_counter()
    naive_bootstrap(train, syn, naive_replicates, 0)
    per_rep = (time.perf_counter() - t) / naive_replicates
    naive = len(PERCENTILES) * (per_pair * pairs + per_rep * N_BOOTSTRAP)
    print(f"scale {scale:g}: train {train.n_patients}, holdout {holdout.n_patients}, synthetic {syn.n_patients}: "
          f"ours {ours:.1f} s; naive without the RF (extrapolated) {naive:.0f} s; ratio >= {naive / ours:.1f}x",
          flush=True)
    return ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs=2, default=(0.05, 0.1))
    ap.add_argument("--naive-queries", type=int, default=5)
    ap.add_argument("--naive-replicates", type=int, default=3)
    args = ap.parse_args()
    small, large = (run(s, args.naive_queries, args.naive_replicates) for s in args.scales)
    k = math.log(large / small) / math.log(args.scales[1] / args.scales[0])
    full = large * (1.0 / args.scales[1]) ** k
    print(f"Figure 3, one generator, paper scale: ~{full:.0f} s (k = {k:.2f}; target <= 300 s: "
          f"{'ok' if full <= 300 else 'MISSED'}); an extrapolation, not a measurement")


if __name__ == "__main__":
    main()
