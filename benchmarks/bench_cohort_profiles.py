"""Does the MIMIC-like simulated cohort make any training stage slower? (issue: no stage > 20% slower)

Fits every neural model with its ``demo`` preset, a few epochs, on two simulated cohorts of the
same size and seed: the MIMIC-like default (``code_profile="public"``) and the old
random-popularity cohort (``code_profile="random"``), same code, same threads, in this run; and
prints seconds and the ratio public / random per model (``> 1.20`` is flagged). The MIMIC-like
cohort has more codes per patient at the top of the distribution, so the flat models' inputs
differ in width and density; the sequence models' token counts differ too.

    OMP_NUM_THREADS=1 python benchmarks/bench_cohort_profiles.py [--patients 5500] [--models medgan halo]
"""
from __future__ import annotations

import argparse
import time

from ehrlib import models
from ehrlib.data import simulate, split
from ehrlib.data.simulate import SimulationConfig

#: a few epochs of each model (both phases of the GANs)
EPOCHS = {"medgan": dict(ae_epochs=2, gan_epochs=2), "corgan": dict(ae_epochs=1, gan_epochs=1),
          "promptehr": dict(epochs=1), "halo": dict(epochs=1), "gpt": dict(epochs=1)}
LIMIT = 1.20


def fit_seconds(name: str, train) -> float:
    t = time.perf_counter()
    models.get(name, "demo", progress=False, device="cpu", **EPOCHS[name]).fit(train)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=5500, help="simulated patients (the demo profile's size)")
    ap.add_argument("--models", nargs="+", default=list(EPOCHS), choices=list(EPOCHS))
    args = ap.parse_args()
    cohorts = {}
    for profile in ("public", "random"):
        cohort = simulate(args.patients, seed=0, config=SimulationConfig(code_profile=profile))
        cohorts[profile] = split(cohort, n_holdout=args.patients // 10, seed=0)[0]
        c = cohorts[profile]
        print(f"{profile:>6}: {c.n_patients} training patients, {c.events['code'].nunique()} codes, "
              f"{len(c.events) / c.n_patients:.1f} code rows per patient", flush=True)
    worst = 0.0
    print(f"{'model':>10} {'public s':>8} {'random s':>8} {'ratio':>6}")
    for name in args.models:
        s = {p: fit_seconds(name, cohorts[p]) for p in ("random", "public")}
        ratio = s["public"] / s["random"]
        worst = max(worst, ratio)
        print(f"{name:>10} {s['public']:8.1f} {s['random']:8.1f} {ratio:6.2f}{'  SLOWER > 20%' if ratio > LIMIT else ''}",
              flush=True)
    print(f"worst ratio public / random = {worst:.2f} (limit {LIMIT:.2f}: {'ok' if worst <= LIMIT else 'MISSED'})")


if __name__ == "__main__":
    main()
