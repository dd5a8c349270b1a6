"""Time HALO: training throughput (demo and paper presets), generate(10,000), and the exact
skip-ahead sampler against a per-code loop.

Data: the demo recipe (``simulate(12000, seed=0)``, two splits: 10,000 training patients,
~3.7k codes). Training throughput times a few optimisation steps (after one warm-up step) and
reports patients/s and visits/s; the paper preset's full run (80 epochs on 46,520 patients,
90 % of them in training) is extrapolated from its per-batch time. ``generate(10_000)`` uses
the demo preset trained for ``--gen-epochs`` epochs (generation cost follows visit sizes and
counts, which the prior-initialised output bias already gets roughly right). The sampler ratio
compares, on the same model and histories, the batched skip-ahead sampler of one visit row with
the per-code loop (one full head pass per column; a prefix of columns timed and scaled to the
row width), and, for a one-layer head, with a per-code loop that updates the logits incrementally. Paper reference: HALO trains in < 6 h on one A100/H100.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_halo.py [--quick] [--paper-epoch]``
(``--paper-epoch``: one full epoch at the paper preset on a 46,520-patient simulated cohort;
meant for a GPU machine.)
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ehrlib.data import simulate, split
from ehrlib.models.halo import HALO
from ehrlib.models.neural import batches

N_PAPER = 46_520       # patients in the paper's cohort
PAPER_EPOCHS = 80


def demo_train():
    cohort = simulate(12_000, seed=0)
    train, _ = split(cohort, n_holdout=1_000, seed=0)
    train, _ = split(train, n_holdout=1_000, seed=1)
    return train


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def setup(profile: str, train, **overrides) -> HALO:
    gen = HALO.from_profile(profile, progress=False, **overrides)
    from ehrlib.models.neural import pick_device

    gen.device = pick_device(gen.config.device)
    gen._prepare(train)
    gen.modules = {k: m.to(gen.device) for k, m in gen._build().items()}
    gen.optimizers = gen._optimizers()
    return gen


def step_time(gen: HALO, n_steps: int) -> tuple[float, int, int]:
    """Seconds per optimisation step, patients and visits seen, over ``n_steps`` steps."""
    rng = torch.Generator().manual_seed(0)
    order = batches(len(gen.train_idx), gen.config.batch_size, rng)
    opt = gen.optimizers["adam"]
    n_vis = np.diff(gen.row_offsets) - 1 - int(gen.config.labels)
    for m in gen.modules.values():
        m.train()
    done, patients, visits = 0, 0, 0
    for i, idx in enumerate(order[:n_steps + 1]):
        if i == 1:
            sync()
            t0 = time.perf_counter()
        rows = gen.train_idx[idx.numpy()]
        loss = gen._batch_loss(rows)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 1:
            done += 1
            patients += len(rows)
            visits += int(n_vis[rows].sum())
    sync()
    return (time.perf_counter() - t0) / done, patients, visits


def report_training(label: str, gen: HALO, n_steps: int) -> float:
    sec, patients, visits = step_time(gen, n_steps)
    total = sec * n_steps
    n_params = sum(p.numel() for m in gen.modules.values() for p in m.parameters())
    print(f"{label}: {n_params / 1e6:.1f}M parameters, batch {gen.config.batch_size}, "
          f"{sec:.3f} s/batch, {patients / total:,.0f} patients/s, {visits / total:,.0f} visits/s")
    return sec


def sampler_ratio(gen: HALO, n: int, prefix: int) -> None:
    """Skip-ahead vs per-code loop on one visit row for ``n`` histories."""
    head = gen.modules["head"].eval()
    _, _, width = gen._columns()
    allowed = gen._allowed(False, gen.device)
    h = torch.randn(n, gen.config.n_embd, generator=torch.Generator().manual_seed(0)).to(gen.device)
    g = torch.Generator().manual_seed(1)
    sync()
    t0 = time.perf_counter()
    x = head.sample(h, allowed, g)
    sync()
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    head.sample_naive(h, allowed, g, stop=prefix)
    sync()
    naive = (time.perf_counter() - t0) * width / prefix
    print(f"one visit row for {n} patients ({x.sum(1).mean().item():.1f} columns set on average, width {width}): "
          f"skip-ahead {fast:.3f} s, per-code loop {naive:.1f} s (timed {prefix} columns, scaled)")
    print(f"ratio: {naive / fast:.1f}x")
    if head.layers == 1:
        # a cheaper per-code loop: the 1-layer head's logits are updated incrementally per commit
        t0 = time.perf_counter()
        with torch.no_grad():
            pre = head.first(h)
            for j in range(prefix):
                u = torch.rand(n, generator=g).to(gen.device)
                hit = u < torch.sigmoid(pre[:, j]) * allowed[j]
                pre[hit] += head.code_rows(torch.full((int(hit.sum()),), j, device=gen.device))
        sync()
        inc = (time.perf_counter() - t0) * width / prefix
        print(f"per-code loop with incremental logits: {inc:.1f} s (scaled); ratio vs it: {inc / fast:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed steps (under ~2 minutes)")
    ap.add_argument("--paper-epoch", action="store_true", help="time one full paper-preset epoch on 46,520 patients")
    ap.add_argument("--gen-epochs", type=int, default=None, help="demo epochs before timing generate (default 1; quick 0)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}")
    else:
        print(f"device: cpu, {torch.get_num_threads()} thread(s) (timings are noisy on a shared machine)")
    train = demo_train()
    print(f"demo train set: {train.n_patients:,} patients, {train.n_visits:,} visits")

    demo = setup("demo", train)
    report_training("demo preset", demo, 10 if args.quick else 40)

    paper = setup("paper", train)
    sec = report_training("paper preset (demo-size cohort)", paper, 1 if args.quick else 3)
    per_epoch = int(np.ceil(N_PAPER * (1 - paper.config.val_fraction) / paper.config.batch_size))
    est = sec * per_epoch * PAPER_EPOCHS
    print(f"paper run estimate on {device}: {per_epoch} batches/epoch x {PAPER_EPOCHS} epochs x {sec:.3f} s "
          f"= {est / 3600:.1f} h (paper: < 6 h on one A100/H100; validation passes not included)")
    del paper

    if args.paper_epoch:
        big = simulate(N_PAPER, seed=0)
        gen = HALO.from_profile("paper", progress=True, epochs=1)
        t0 = time.perf_counter()
        gen.fit(big)
        sync()
        t = time.perf_counter() - t0
        print(f"paper preset, one full epoch on {N_PAPER:,} patients: {t:.0f} s "
              f"-> {PAPER_EPOCHS} epochs ~ {t * PAPER_EPOCHS / 3600:.1f} h")

    gen_epochs = args.gen_epochs if args.gen_epochs is not None else (0 if args.quick else 1)
    gen = HALO.from_profile("demo", progress=False, epochs=max(gen_epochs, 1))
    if gen_epochs == 0:
        gen = setup("demo", train)   # untrained coarse net, prior-initialised output bias
        gen.fitted = True
    else:
        gen.fit(train)
    t0 = time.perf_counter()
    synth = gen.generate(10_000, seed=0)
    t = time.perf_counter() - t0
    print(f"generate(10_000) after {gen_epochs} demo epoch(s): {t:.1f} s "
          f"({synth.n_visits / synth.n_patients:.2f} visits/patient, {synth.n_events / synth.n_visits:.1f} codes/visit)")
    sampler_ratio(gen, n=256, prefix=16 if args.quick else 64)


if __name__ == "__main__":
    main()
