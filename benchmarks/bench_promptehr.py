"""Time PromptEHR training and generation on the demo recipe, extrapolate the paper's budget.

Data: the demo recipe (simulate(12000, seed=0) split into a 10,000-patient train set).
Prints: training throughput (patients/s and decoder tokens/s) at the demo preset (one epoch)
and at the paper preset (BART-base, batch 16: a few batches timed, extrapolated to 20 epochs
on 45,520 patients; the paper reports ~16 h on one A100/H100), the padding fraction of
batches of 16 (random and length-bucketed), the time of ``generate(10_000)`` and the KV-cache
speed-up over re-running the decoder on the whole prefix at every step (``ratio: X.Xx``).
``--paper-epoch`` times one full epoch at the paper preset on a 46,520-patient simulated
cohort (for a GPU machine).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_promptehr.py [--quick] [--paper-epoch]``
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ehrlib.data import simulate, split
from ehrlib.models.promptehr import PromptEHR

N_PAPER_TRAIN = 45_520   # the paper's training patients (Section 2.4)
PAPER_EPOCHS = 20


def demo_train(seed: int = 0):
    cohort = simulate(12_000, seed=seed)
    train, _ = split(cohort, n_holdout=1_000, seed=seed)
    train, _ = split(train, n_holdout=1_000, seed=seed + 1)
    return train


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def time_batches(gen: PromptEHR, n_batches: int, seed: int = 0):
    """Seconds per optimisation step and decoder tokens per step over ``n_batches`` epoch batches."""
    import torch

    gen.modules = {k: m.to(gen.device) for k, m in gen._build().items()}
    gen.optimizers = gen._optimizers()
    gen.schedulers = gen._schedulers()
    model, opt = gen.modules["model"], gen.optimizers["adamw"]
    model.train()
    rng = torch.Generator().manual_seed(seed)
    np_rng = np.random.default_rng(seed)
    groups = gen._epoch_batches(rng)[: n_batches + 1]
    tokens, t0 = 0, None
    for i, rows in enumerate(groups):
        if i == 1:                      # the first step warms up allocators and kernels
            if gen.device.type == "cuda":
                torch.cuda.synchronize()
            t0, tokens = time.perf_counter(), 0
        inputs, labels = gen._batch(gen._train_idx[rows], np_rng)
        loss, k = gen._loss(inputs, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tokens += k
    if gen.device.type == "cuda":
        torch.cuda.synchronize()
    steps = len(groups) - 1
    return (time.perf_counter() - t0) / steps, tokens / steps


def padding_fraction(gen: PromptEHR, bucketed: bool, seed: int = 0) -> float:
    """Share of decoder positions that are padding over one epoch of batches."""
    import dataclasses

    import torch

    other = PromptEHR(dataclasses.replace(gen.config, length_buckets=bucketed))
    other._train_idx, other._lengths = gen._train_idx, gen._lengths
    real = padded = 0
    for rows in other._epoch_batches(torch.Generator().manual_seed(seed)):
        lengths = gen._lengths[gen._train_idx[rows]]
        real += int(lengths.sum())
        padded += int(lengths.max()) * len(rows)
    return 1 - real / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 demo patients, fewer batches, n=1,000")
    parser.add_argument("--paper-epoch", action="store_true", help="one paper-preset epoch on 46,520 patients")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    from ehrlib.models.neural import pick_device

    train, t_data = timed(demo_train, args.seed)
    if args.quick:
        train = train.subset(train.subject_ids[:2_000])
    device = pick_device("auto")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} thread(s) (OMP_NUM_THREADS); timings on a shared machine"
    print(f"data: demo recipe train {train!r} ({t_data:.1f} s); device: {where}")

    # demo preset: one full epoch
    demo = PromptEHR.from_profile("demo", progress=False, epochs=1, seed=args.seed)
    _, t_fit = timed(demo.fit, train)
    n_train = len(demo._train_idx)
    print(f"demo preset, 1 epoch ({n_train} patients, fit incl. validation): {t_fit:.1f} s, "
          f"{n_train / t_fit:.0f} patients/s, {demo.train_tokens_per_s:.0f} decoder tokens/s in the training loop")

    # paper preset: a few batches at batch 16, extrapolated
    paper = PromptEHR.from_profile("paper", progress=False, seed=args.seed)
    paper.device = device
    paper._prepare(train)
    n_batches = 2 if args.quick else 10
    per_step, tok_step = time_batches(paper, n_batches, args.seed)
    steps = PAPER_EPOCHS * -(-N_PAPER_TRAIN // paper.config.batch_size)
    hours = per_step * steps / 3600
    print(f"paper preset (BART-base, batch 16, random batches): {per_step:.2f} s/step over {n_batches} steps, "
          f"{paper.config.batch_size / per_step:.1f} patients/s, {tok_step / per_step:.0f} decoder tokens/s; "
          f"20 epochs x {N_PAPER_TRAIN} patients = {steps} steps ~ {hours:.1f} h here "
          f"(paper: ~16 h on one A100/H100)")
    pad_random = padding_fraction(paper, bucketed=False, seed=args.seed)
    pad_bucket = padding_fraction(paper, bucketed=True, seed=args.seed)
    print(f"padding at batch 16 (decoder positions): random {pad_random:.0%}, length-bucketed {pad_bucket:.0%}. "
          "Shorter paths to the paper's budget: length buckets or packing (removes most padding), bf16 "
          "autocast on the GPU, and the lm_head evaluated only at real tokens (done here).")

    # generation
    n_gen = 1_000 if args.quick else 10_000
    synthetic, t_gen = timed(demo.generate, n_gen, seed=args.seed)
    scale = 10_000 / n_gen
    print(f"generate({n_gen}) with the demo model: {t_gen:.1f} s"
          + (f" -> generate(10_000) ~ {t_gen * scale:.0f} s" if scale != 1 else "")
          + f"; {synthetic!r}")
    n_small = 60 if args.quick else 300
    _, t_cache = timed(demo._generate, n_small, args.seed)
    _, t_naive = timed(demo._generate, n_small, args.seed, use_cache=False)
    print(f"generate({n_small}): KV cache {t_cache:.2f} s, no cache (decoder re-run on the whole prefix) "
          f"{t_naive:.2f} s")
    print(f"ratio: {t_naive / t_cache:.1f}x")

    if args.paper_epoch:
        big = simulate(N_PAPER_TRAIN + 1_000, seed=args.seed)
        big, _ = split(big, n_holdout=1_000, seed=args.seed)
        full = PromptEHR.from_profile("paper", progress=True, epochs=1, seed=args.seed)
        _, t_epoch = timed(full.fit, big)
        print(f"paper preset, one epoch on {big.n_patients} patients ({where}): {t_epoch:.0f} s, "
              f"{full.train_tokens_per_s:.0f} decoder tokens/s; 20 epochs ~ {20 * t_epoch / 3600:.1f} h")


if __name__ == "__main__":
    main()
