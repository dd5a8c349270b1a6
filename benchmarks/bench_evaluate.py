"""``evaluate`` for one generator at paper scale, without the LSTM (target <= 2 min).

45,520 train, 1,000 holdout, 10,000 synthetic patients (the `marginals` reference generator)
from one simulated cohort; B = 1000 bootstrap, NNAAR R = 10, Random Forest discriminator.
Prints the time of each family and the total.

    OMP_NUM_THREADS=1 python benchmarks/bench_evaluate.py
"""
import time

from ehrlib import models
from ehrlib.data import simulate, split
from ehrlib.metrics import evaluate


def main():
    cohort = simulate(46_520 + 10_000, seed=0)
    train, holdout = split(cohort, n_holdout=1_000, seed=0)
    train, _unused = split(train, n_holdout=10_000, seed=1)
    synthetic = models.get("marginals").fit(train).generate(10_000, seed=0)
    print(f"train {train.n_patients}, holdout {holdout.n_patients}, synthetic {synthetic.n_patients}, "
          f"codes {len(set(train.codes()) | set(synthetic.codes()))}")
    total = 0.0
    for family in ("prevalence", "privacy", "discriminator"):
        t0 = time.perf_counter()
        evaluate(train, holdout, synthetic, families=[family], discriminator="rf", n_bootstrap=1000, repeats=10,
                 progress=False)
        dt = time.perf_counter() - t0
        total += dt
        print(f"{family:>13}: {dt:6.1f} s")
    print(f"evaluate, one generator, no LSTM: {total:.1f} s (target <= 120 s: {'ok' if total <= 120 else 'MISSED'})")


if __name__ == "__main__":
    main()
