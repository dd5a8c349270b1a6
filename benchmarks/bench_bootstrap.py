"""Time the prevalence bootstrap at the paper's scale against a naive resampling loop.

Paper scale: 45,520 real training patients vs 10,000 synthetic patients, ~7k codes, B = 1000.
The synthetic side is a disjoint simulated sample (a perfect generator); timings do not depend
on what the generator learned. Also times the discriminators (RF, LSTM) at 1,000 vs 1,000.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_bootstrap.py [--naive-replicates 20]``
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from ehrlib.cohort import CODE, SUBJECT
from ehrlib.data import Vocabulary, simulate, split
from ehrlib.metrics.bootstrap import RealResamples, bootstrap_prevalence
from ehrlib.metrics.discriminator import discriminator_metrics
from ehrlib.metrics.prevalence import prevalence_scores

N_TRAIN = 45_520  # real training patients (paper)
N_SYNTHETIC = 10_000  # synthetic patients per generator (paper)
N_BOOTSTRAP = 1000  # replicates (the book's methods page)
N_DISCRIMINATOR = 1000  # patients per class for the discriminator timing


def naive_replicate(events: pd.DataFrame, ids: np.ndarray, rng: np.random.Generator,
                    codes: pd.Index) -> np.ndarray:
    """One replicate the way a notebook would: resample patient rows, rebuild, recount."""
    drawn = pd.DataFrame({SUBJECT: ids[rng.integers(0, len(ids), len(ids))]})
    drawn["copy"] = np.arange(len(drawn))
    resampled = drawn.merge(events, on=SUBJECT, how="left")
    per_code = resampled.groupby(CODE)["copy"].nunique()
    return per_code.reindex(codes, fill_value=0).to_numpy(np.float64) / len(ids)


def naive_bootstrap(train, synthetic, n_replicates: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = pd.Index(Vocabulary.from_cohorts(train, synthetic).codes)
    out = []
    for _ in range(n_replicates):
        real = naive_replicate(train.events, np.asarray(train.subject_ids), rng, codes)
        syn = naive_replicate(synthetic.events, np.asarray(synthetic.subject_ids), rng, codes)
        out.append(prevalence_scores(real, syn))
    return {k: np.array([r[k] for r in out]) for k in out[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-replicates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t = time.perf_counter()
    train, synthetic = split(simulate(N_TRAIN + N_SYNTHETIC, seed=args.seed), n_holdout=N_SYNTHETIC,
                             seed=args.seed)
    print(f"data: simulated, train {train!r}, synthetic {synthetic!r} "
          f"({time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    resamples = RealResamples.draw(train, N_BOOTSTRAP, seed=args.seed)
    t_real = time.perf_counter() - t
    t = time.perf_counter()
    table = bootstrap_prevalence(train, synthetic, seed=args.seed, real_resamples=resamples)
    t_syn = time.perf_counter() - t
    t_total = t_real + t_syn
    print(table.to_string(index=False))
    print(f"vectorised B={N_BOOTSTRAP}, 3 metrics: real side {t_real:.2f} s (once per real "
          f"cohort), per generator {t_syn:.2f} s, total {t_total:.2f} s")

    t = time.perf_counter()
    naive_bootstrap(train, synthetic, args.naive_replicates, args.seed)
    t_naive = (time.perf_counter() - t) / args.naive_replicates * N_BOOTSTRAP
    print(f"naive loop: {args.naive_replicates} replicates timed, B={N_BOOTSTRAP} extrapolated "
          f"to {t_naive:.0f} s; ratio naive / vectorised = {t_naive / t_total:.0f}x")

    rng = np.random.default_rng(args.seed)
    real_small = train.subset(rng.choice(train.subject_ids, N_DISCRIMINATOR, replace=False))
    syn_small = synthetic.subset(rng.choice(synthetic.subject_ids, N_DISCRIMINATOR, replace=False))
    for kind in ("rf", "lstm"):
        t = time.perf_counter()
        result = discriminator_metrics(real_small, syn_small, kind=kind, seed=args.seed)
        scores = ", ".join(f"{k} {v:.3f}" for k, v in result.items())
        print(f"{kind} discriminator {N_DISCRIMINATOR} vs {N_DISCRIMINATOR} patients: "
              f"{time.perf_counter() - t:.2f} s ({scores})")


if __name__ == "__main__":
    main()
