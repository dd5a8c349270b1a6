"""What top-k / top-p truncation does to the GPT-2 baseline's marginals (book: Deviations).

Trains the GPT-2 baseline on the demo recipe's training split (``simulate(5500, seed=0)``, 4,000
training patients) with the ``demo`` preset (or ``--epochs E`` fixed epochs, no early stopping),
then samples 1,000 records from the same weights twice: with the paper's truncation (top-k 50,
nucleus p = 0.95, appendix F.5) and from the model's full distribution (top-k off, p = 1). Prints
prevalence R² against train, distinct codes and codes per patient of each, beside the real
reference split (1,000 patients the model never saw).

    OMP_NUM_THREADS=1 python benchmarks/gpt_sampling.py [--epochs 24]
"""
from __future__ import annotations

import argparse
import dataclasses

from ehrlib import models
from ehrlib.data import simulate
from ehrlib.data.encode import Vocabulary
from ehrlib.data.splits import make_splits
from ehrlib.metrics.prevalence import prevalence_vector, r2
from ehrlib.metrics.structure import summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="fixed epochs (default: the demo preset's stopping)")
    args = ap.parse_args()
    splits = make_splits(simulate(5500, seed=0), 500, 1000, seed=0)
    train, reference = splits["train"], splits["reference"]
    fixed = {} if args.epochs is None else {"epochs": args.epochs, "patience": 0}
    gen = models.get("gpt", "demo", progress=False, **fixed).fit(train)
    print(f"GPT-2 baseline, demo preset{'' if not fixed else f', {args.epochs} fixed epochs'}: "
          f"{len(gen.history)} epochs, best val_loss epoch {gen.stopping[-1]['best_epoch']}")
    rows = [("reference (real)", reference)]
    for label, k, p in (("top-k 50, top-p 0.95 (paper)", 50, 0.95), ("full distribution", 0, 1.0)):
        gen.config = dataclasses.replace(gen.config, top_k=k, top_p=p)
        rows.append((label, gen.generate(1000, seed=0)))
    vocab = Vocabulary.from_cohorts(train, *[c for _, c in rows])
    truth = prevalence_vector(train, vocab)
    print(f"{'sampling':<30} {'R² vs train':>12} {'distinct codes':>15} {'codes/patient':>14}")
    for label, cohort in rows:
        s = summary(cohort)
        print(f"{label:<30} {r2(truth, prevalence_vector(cohort, vocab)):>12.3f} {s['unique_codes']:>15} "
              f"{s['codes_per_patient']:>14.2f}")


if __name__ == "__main__":
    main()
