"""Time the GPT-2 baseline: training throughput (demo and paper presets), generate(10,000), KV cache.

Data: the demo recipe (``simulate(12000, seed=0)``, 1,000 holdout and 1,000 reference patients
split off, 10,000 training patients). Training throughput is measured by fitting one epoch on a
random subset of the training patients (the paper preset on CPU: a few batches only) and
reported as patients/s and tokens/s; the full paper run (50 epochs at 46,520 patients) is
extrapolated from it (the paper reports about 2 h on one A100/H100). ``generate(10_000)`` is
timed on the demo model, and the KV-cache sampling loop is compared with re-reading the whole
prefix at every step (no cache) on the same records and seed, printed as ``ratio: X.Xx``.

``--paper-epoch`` times one full epoch at the paper preset on a 46,520-patient simulated cohort
(for a GPU machine; prints the device).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_gpt.py [--quick] [--paper-epoch]``
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ehrlib.data import simulate, split
from ehrlib.models.gpt import GPT

N_PAPER = 46_520       # patients in the paper's cohort
PAPER_EPOCHS = 50      # appendix F.5
N_SYNTHETIC = 10_000   # records generated per model (paper)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def subset(cohort, n, seed):
    ids = np.random.default_rng(seed).choice(np.asarray(cohort.subject_ids), size=min(n, cohort.n_patients), replace=False)
    return cohort.subset(ids)


def throughput(profile: str, cohort, **overrides):
    """One epoch on ``cohort``: (generator, seconds, patients/s, tokens/s) of the training steps."""
    gen, secs = timed(GPT.from_profile(profile, epochs=1, progress=False, **overrides).fit, cohort)
    n_train = len(gen._train_idx)
    return gen, secs, n_train / secs, gen.history[-1]["tokens"] / secs


def device_name(gen) -> str:
    if gen.device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(gen.device)})"
    return f"cpu ({torch.get_num_threads()} thread(s))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subsets (< ~2 minutes on a laptop CPU)")
    parser.add_argument("--paper-epoch", action="store_true", help="one full paper-preset epoch on 46,520 patients")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cohort = simulate(12_000, seed=args.seed)
    train, _holdout = split(cohort, n_holdout=1_000, seed=0)
    train, _reference = split(train, n_holdout=1_000, seed=1)
    print(f"demo recipe: {train.n_patients:,} training patients, {train.n_events:,} codes")

    # ---- demo preset: one epoch (quick: on 2,000 patients) and the demo-model generation
    n_demo = 2_000 if args.quick else train.n_patients
    gen, secs, pps, tps = throughput("demo", subset(train, n_demo, args.seed))
    demo_epochs = GPT.preset("demo").epochs
    print(f"demo preset on {device_name(gen)}: one epoch of {len(gen._train_idx):,} patients in {secs:.1f} s "
          f"({pps:,.0f} patients/s, {tps:,.0f} tokens/s); {demo_epochs} epochs at 10,000 patients "
          f"~ {demo_epochs * 0.95 * train.n_patients / pps / 60:.1f} min")

    n_gen = 2_000 if args.quick else N_SYNTHETIC
    synth, t_gen = timed(gen.generate, n_gen, seed=args.seed)
    print(f"generate({n_gen:,}): {t_gen:.1f} s ({n_gen / t_gen:,.0f} records/s), "
          f"{gen.last_generation['rejected']} empty records redrawn")
    if n_gen != N_SYNTHETIC:
        print(f"  generate({N_SYNTHETIC:,}) ~ {t_gen * N_SYNTHETIC / n_gen:.1f} s (scaled)")

    n_naive = 100 if args.quick else 300
    _, t_cache = timed(gen.sample_tokens, n_naive, torch.Generator().manual_seed(1), use_cache=True)
    _, t_naive = timed(gen.sample_tokens, n_naive, torch.Generator().manual_seed(1), use_cache=False)
    print(f"sampling {n_naive} records: KV cache {t_cache:.2f} s, no cache {t_naive:.2f} s "
          f"(generate({N_SYNTHETIC:,}) without cache ~ {t_naive * N_SYNTHETIC / n_naive:.0f} s)")
    print(f"ratio: {t_naive / t_cache:.1f}x")

    # ---- paper preset: a few batches on CPU (construction + steps), extrapolated
    n_paper = 64 if args.quick else 256  # one or four batches of 64
    gen, secs, pps, tps = throughput("paper", subset(train, n_paper, args.seed), val_fraction=0.0)
    n_params = sum(p.numel() for p in gen.modules["gpt2"].parameters())
    epoch_s = N_PAPER / pps
    print(f"paper preset on {device_name(gen)} ({n_params:,} parameters): {n_paper} patients in {secs:.1f} s "
          f"({pps:,.1f} patients/s, {tps:,.0f} tokens/s); one epoch at {N_PAPER:,} patients ~ {epoch_s / 60:.1f} min, "
          f"{PAPER_EPOCHS} epochs ~ {PAPER_EPOCHS * epoch_s / 3600:.1f} h (paper: ~2 h on one A100/H100)")

    if args.paper_epoch:
        big = simulate(N_PAPER, seed=args.seed)
        gen, secs, pps, tps = throughput("paper", big)
        print(f"paper preset, one full epoch on {device_name(gen)}: {N_PAPER:,} patients in {secs:.1f} s "
              f"({pps:,.0f} patients/s, {tps:,.0f} tokens/s); {PAPER_EPOCHS} epochs ~ {PAPER_EPOCHS * secs / 3600:.2f} h")
        synth, t_gen = timed(gen.generate, N_SYNTHETIC, seed=args.seed)
        print(f"paper preset generate({N_SYNTHETIC:,}) after one epoch: {t_gen:.1f} s")


if __name__ == "__main__":
    main()
