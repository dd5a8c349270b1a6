"""Cost of the privacy-power stage (35) on a demo-sized input, against the privacy family it sits beside.

Input: ``simulate(5500)`` split as the demo profile splits it (4,000 train, 500 holdout, 1,000
reference), 1,000 records per generator. Measures, in one process and on the same cohorts:

* the stage's work: :func:`ehrlib.metrics.membership.calibration_rows` (both attacks on the
  holdout, marginals and four partial-memorizer rows, B = 1,000 bootstrap intervals, exact copies);
* the stage-32 addition per generator: both attacks on one release
  (:func:`ehrlib.metrics.membership.membership_attacks`);
* the baseline: the corrected privacy family (:func:`ehrlib.metrics.privacy.privacy_metrics`,
  NNAAR R = 10, MIA, copies, DCR) on one release, what stage 32 computes per generator today.

Prints CPU seconds (``time.process_time``: a loaded machine inflates wall time, not CPU time),
wall seconds, and the ratios to the baseline, plus the power table's AUCs and the detected rates.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_privacy_power.py [--patients 5500]``
"""
from __future__ import annotations

import argparse
import time

from ehrlib import models
from ehrlib.data import make_splits, simulate
from ehrlib.metrics import membership
from ehrlib.metrics.privacy import privacy_metrics


def timed(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=5500)
    ap.add_argument("--synthetic", type=int, default=1000)
    args = ap.parse_args()
    splits = make_splits(simulate(args.patients, seed=0), 500, 1000, seed=0)
    train, holdout, reference = splits["train"], splits["holdout"], splits["reference"]
    print(f"train {train.n_patients}, holdout {holdout.n_patients}, reference {reference.n_patients}, "
          f"{args.synthetic} records per generator")
    memorizer = models.get("memorizer").fit(train).generate(args.synthetic, seed=0)
    membership.membership_attacks(train, holdout, memorizer, reference, n_bootstrap=10)  # imports, warm-up
    _, base_cpu, base_wall = timed(lambda: privacy_metrics(train, holdout, memorizer, repeats=10))
    density_reference, _ = membership.split_reference(reference)
    _, add_cpu, add_wall = timed(lambda: membership.membership_attacks(train, holdout, memorizer, density_reference))
    power, cpu, wall = timed(lambda: membership.calibration_rows(train, holdout, reference,
                                                                 n_synthetic=args.synthetic, seed=0))
    print(f"baseline: privacy family on one release    {base_cpu:6.1f} s CPU ({base_wall:6.1f} s wall)")
    print(f"stage 32 addition: both attacks, one release {add_cpu:6.1f} s CPU ({add_wall:6.1f} s wall), "
          f"ratio {add_cpu / base_cpu:.2f}")
    print(f"stage 35: calibration rows (6 releases)      {cpu:6.1f} s CPU ({wall:6.1f} s wall), "
          f"ratio {cpu / base_cpu:.2f}")
    print(power[["attack", "generator", "auc", "auc_low", "auc_high", "tpr_at_0_1pct", "tpr_at_1pct", "tpr_at_1pct_low",
                 "tpr_at_1pct_high", "detected", "exact_copies"]].to_string(index=False))
    print(membership.detection(power).to_string(index=False))


if __name__ == "__main__":
    main()
