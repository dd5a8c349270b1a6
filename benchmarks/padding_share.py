"""Padding share of the sequence models' training batches: random batches vs length buckets.

For the ``paper`` presets of PromptEHR (decoder positions), GPT (token positions) and HALO
(coarse-transformer rows) on a simulated cohort, one epoch's batches are drawn exactly as
training draws them (no training) and the share of padded positions is counted:
``1 - real positions / (batch size x longest member)``, summed over batches, and the positions
computed with buckets as a multiple of those with random batches (the naive baseline). HALO has no
bucketing option (its records are at most 48 rows); its random-batch share is shown for scale.

    python benchmarks/padding_share.py                 # 46,520 patients (the paper's size)
    python benchmarks/padding_share.py --n-patients 5000
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from ehrlib import models
from ehrlib.data import simulate
from ehrlib.models.neural import batches


def slots(lengths_per_batch) -> tuple[int, int]:
    """(real positions, padded positions) of an epoch's batches."""
    real = sum(int(np.sum(l)) for l in lengths_per_batch)
    return real, sum(int(np.max(l)) * len(l) for l in lengths_per_batch)


def promptehr(train, buckets: bool) -> tuple[int, int]:
    gen = models.get("promptehr", "paper", device="cpu")
    gen.config = dataclasses.replace(gen.config, length_buckets=buckets)
    gen._prepare(train)
    lengths = gen._lengths[gen._train_idx]
    return slots([lengths[b] for b in gen._epoch_batches(torch.Generator().manual_seed(0))])


def gpt(train, buckets: int) -> tuple[int, int]:
    gen = models.get("gpt", "paper", device="cpu", length_buckets=buckets)
    gen._prepare(train)
    return slots([gen._len[b].numpy() for b in gen._batches(torch.Generator().manual_seed(0))])


def halo(train) -> tuple[int, int]:
    gen = models.get("halo", "paper", device="cpu")
    gen._prepare(train)
    rows = np.diff(gen.row_offsets)[gen.train_idx]
    return slots([rows[b.numpy()] for b in batches(len(gen.train_idx), gen.config.batch_size,
                                                   torch.Generator().manual_seed(0))])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-patients", type=int, default=46_520)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    train = simulate(args.n_patients, seed=args.seed)
    print(f"simulated cohort: {train.n_patients:,} patients ({time.perf_counter() - t0:.0f} s)")
    rows = [
        ("promptehr", "decoder positions", promptehr(train, False), promptehr(train, True)),
        ("gpt", "token positions", gpt(train, 1), gpt(train, models.get("gpt", "paper").config.length_buckets)),
        ("halo", "coarse rows", halo(train), None),
    ]
    print(f"{'model':<10} {'what':<18} {'padding, random':>16} {'with buckets':>13} {'positions computed':>19}")
    for name, what, rand, buck in rows:
        pad = f"{1 - rand[0] / rand[1]:.1%}"
        if buck is None:
            print(f"{name:<10} {what:<18} {pad:>16} {'n/a':>13} {'n/a':>19}")
        else:
            ratio = f"{buck[1] / rand[1]:.2f}x random"
            print(f"{name:<10} {what:<18} {pad:>16} {1 - buck[0] / buck[1]:>13.1%} {ratio:>19}")

if __name__ == "__main__":
    main()
