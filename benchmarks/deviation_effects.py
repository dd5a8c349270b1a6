"""Measured effect of the NNAAR deviations on the reference generators (book/deviations.md).

Three ways to compute NNAAR = AA_ES - AA_TS on the same subsamples:
  ours     self pair excluded by index, ties count 1/2;
  strict   self pair excluded by index, strict '>' (ties count 0);
  paper    the query is its own nearest neighbour (d_XX = 0) and strict '>', as in the paper's notebook.

    OMP_NUM_THREADS=1 python benchmarks/deviation_effects.py [--n-patients 12000]
"""
import argparse

import numpy as np

from ehrlib import models
from ehrlib.data import simulate, split
from ehrlib.metrics.distance import encode_cohorts, nearest


def aa(d_xs, d_xx, d_sx, d_ss, ties):
    def gt(a, b):
        return (a > b) + ties * (a == b)
    return 0.5 * (gt(d_xs, d_xx).mean() + gt(d_sx, d_ss).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-patients", type=int, default=12_000)
    ap.add_argument("--n", type=int, default=1_000)
    args = ap.parse_args()
    cohort = simulate(args.n_patients, seed=0)
    train, holdout = split(cohort, n_holdout=args.n, seed=0)
    train, reference = split(train, n_holdout=args.n, seed=1)
    gens = {"holdout": models.get("holdout", records=reference), "marginals": models.get("marginals"),
            "memorizer": models.get("memorizer")}
    rng = np.random.default_rng(20261126)  # not the generators seed: memorizer copies must not be the T sample
    t_sub = train.subset(train.subject_ids[rng.choice(train.n_patients, args.n, replace=False)])
    print(f"train {train.n_patients}, subsamples of n = {args.n}; NNAAR by rule")
    print(f"{'generator':>10} {'ours':>8} {'strict':>8} {'paper':>8}   AA_TS ours / paper")
    for name, gen in gens.items():
        syn = gen.fit(train).generate(args.n, seed=0)
        T, E, S = encode_cohorts(t_sub, holdout, syn)
        d = {}
        for xn, X in (("T", T), ("E", E)):
            d[xn + "S"] = nearest(X, S).distance
            d["S" + xn] = nearest(S, X).distance
            d[xn + xn] = nearest(X, X, exclude_self=True).distance
        d["SS"] = nearest(S, S, exclude_self=True).distance
        zero = np.zeros(args.n)
        out, aa_ts = [], []
        for ties, self_in in ((0.5, False), (0.0, False), (0.0, True)):
            a = {x: aa(d[x + "S"], zero if self_in else d[x + x], d["S" + x], zero if self_in else d["SS"], ties)
                 for x in ("E", "T")}
            out.append(a["E"] - a["T"])
            aa_ts.append(a["T"])
        print(f"{name:>10} " + " ".join(f"{v:8.3f}" for v in out) + f"   {aa_ts[0]:.3f} / {aa_ts[2]:.3f}")


if __name__ == "__main__":
    main()
