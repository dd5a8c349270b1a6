"""Time the main command's critical-path work at the commit issue 35 starts from and at this tree,
on the same machine in one invocation, and print the ratios; plus a fixed single-thread yardstick.

Workloads (each in a fresh subprocess per code tree, single-threaded, the trees alternated and
each timed ``--repeats`` times, the fastest kept; a loaded machine inflates both sides alike):

* ``fig3``: Figure 3 (:func:`ehrlib.metrics.longtail.longtail_ablation`, stage 40) in both
  protocols over the five percentiles, Random Forest panel included, B = 1000, on a small
  simulated cohort with the reference generators' cohorts as the models;
* ``fig3_prevalence``: the same without the privacy and discriminator panels (the bootstrap part);
* ``protocol_effects``: the deviations page's table (:func:`ehrlib.metrics.protocols.protocol_effects`,
  stage 34) for the holdout and memorizer cohorts;
* ``corgan_epoch`` / ``medgan_epoch``: one adversarial epoch of the demo preset on
  ``--patients`` training patients (stage 11 and 10; the CorGAN / MedGAN ratio is printed too);
* ``lstm``: one LSTM discriminator fit (stage 31's second kind) on 800 real vs 400 synthetic patients;
* ``yardstick``: a fixed workload (float64 matrix products in NumPy and a pure-Python loop) on one
  thread, the same code on both sides; its seconds say how fast this machine is, so a time measured
  here can be set beside the yardstick of the machine the reproducing page was timed on.

The numbers each workload computes are compared too (``same`` column: the Figure 3 and protocol
tables equal to the last digit at both commits, or their largest difference).

Run: ``nice -n 10 python benchmarks/bench_critical_path.py [--base bc3514c] [--repeats 2] [--patients 320]``
(makes a git worktree of the base commit under the system's temporary folder when ``--base-tree``
is not given).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "bc3514c"
TASKS = ("yardstick", "lstm", "fig3_prevalence", "fig3", "protocol_effects", "medgan_epoch", "corgan_epoch")


# ---------------------------------------------------------------------------- the workloads (run in a worker)
def _cohorts():
    from ehrlib import models
    from ehrlib.data import simulate, split

    cohort = simulate(2000, seed=0)
    train, holdout = split(cohort, n_holdout=250, seed=0)
    train, ref = split(train, n_holdout=400, seed=1)
    syn = {"holdout": ref,
           "marginals": models.get("marginals").fit(train).generate(400, seed=0),
           "memorizer": models.get("memorizer").fit(train).generate(400, seed=0)}
    return train, holdout, syn


def _fig3(panels):
    import warnings

    from ehrlib.metrics.context import EvaluationContext
    from ehrlib.metrics.longtail import longtail_ablation

    train, holdout, syn = _cohorts()
    start = time.perf_counter()
    context = EvaluationContext.build(train, holdout, syn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = [longtail_ablation(train, holdout, syn, protocol=p, n_bootstrap=1000, repeats=5, seed=0,
                                    context=context, panels=panels).assign(protocol=p) for p in ("corrected", "paper")]
    seconds = time.perf_counter() - start
    import pandas as pd

    table = pd.concat(frames, ignore_index=True)
    return seconds, table[["estimate", "ci_low", "ci_high"]].to_numpy().ravel().tolist()


def _protocol_effects():
    from ehrlib.metrics.context import EvaluationContext
    from ehrlib.metrics.protocols import protocol_effects

    train, holdout, syn = _cohorts()
    syn = {k: syn[k] for k in ("holdout", "memorizer")}
    start = time.perf_counter()
    context = EvaluationContext.build(train, holdout, syn)
    table = protocol_effects(train, holdout, syn, seed=0, context=context)
    return time.perf_counter() - start, table[["paper", "corrected"]].to_numpy().ravel().tolist()


def _epoch(name: str, patients: int):
    import torch

    from ehrlib.data import simulate, split
    from ehrlib.models import get
    from ehrlib.models.neural import Rows, pick_device

    cohort = simulate(5500, seed=0)  # the demo profile's sizes
    train, _ = split(cohort, n_holdout=500, seed=0)
    train, _ = split(train, n_holdout=1000, seed=1)
    gen = get(name, "demo", progress=False)
    gen.device = pick_device("cpu")
    torch.manual_seed(0)
    gen._prepare(train)
    gen.modules = {k: m.to(gen.device) for k, m in gen._build().items()}
    gen.optimizers = gen._optimizers()
    gen._phase = 1
    for m in gen.modules.values():
        m.train()
    gen.x = Rows(gen.x.matrix[:patients])
    start = time.perf_counter()
    stats = gen._train_epoch(gen.config.ae_epochs, torch.Generator().manual_seed(1))
    return time.perf_counter() - start, [stats["loss"], stats["d_loss"]]


def _lstm_fit():
    from ehrlib.data.encode import Vocabulary
    from ehrlib.metrics import discriminator as d

    train, _, syn = _cohorts()
    real = train.subset(train.subject_ids[:800])
    vocab = Vocabulary.from_cohorts(real, syn["marginals"])
    parts = d.balanced_split(real.n_patients, syn["marginals"].n_patients, 0.2, 0)
    start = time.perf_counter()
    _, p = d._lstm(real, syn["marginals"], vocab, parts, 0, d.LSTMConfig(), "cpu")
    return time.perf_counter() - start, p.tolist()


def _yardstick():
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((400, 400)), rng.random((400, 400))
    start = time.perf_counter()
    for _ in range(40):
        a = (a @ b) / 400.0
    total = 0
    for i in range(3_000_000):
        total += i * i % 7
    return time.perf_counter() - start, [float(a.sum()), float(total)]


def work(task: str, patients: int):
    if task == "yardstick":
        return _yardstick()
    if task == "fig3":
        return _fig3(None)
    if task == "lstm":
        return _lstm_fit()
    if task == "fig3_prevalence":
        return _fig3(("prevalence",))
    if task == "protocol_effects":
        return _protocol_effects()
    if task in ("corgan_epoch", "medgan_epoch"):
        return _epoch(task.split("_")[0], patients)
    raise SystemExit(f"unknown task {task!r}; expected one of {TASKS}")


# ---------------------------------------------------------------------------- the driver
def run_worker(tree: Path, task: str, patients: int) -> tuple[float, list]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", task, "--patients", str(patients)],
                         env=env, cwd=tree, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{task} at {tree} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["seconds"], result["values"]


def base_tree(commit: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"ehrlib-base-{commit}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True,
                       capture_output=True)
    return path


def largest_difference(a: list, b: list) -> str:
    import numpy as np

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        return f"shapes {x.shape} vs {y.shape}"
    both_nan = np.isnan(x) & np.isnan(y)
    diff = np.where(both_nan, 0.0, np.abs(x - y))
    worst = float(np.nanmax(diff)) if diff.size else 0.0
    if np.isnan(diff).any():
        return "NaN in one only"
    return "identical" if worst == 0 else f"max |diff| {worst:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--base", default=BASE, help="the starting commit (default: %(default)s)")
    ap.add_argument("--base-tree", type=Path, help="a checkout of the starting commit (default: a git worktree)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--patients", type=int, default=320, help="training patients of the epoch workloads")
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=TASKS)
    args = ap.parse_args()
    if args.worker:
        import ehrlib

        here = Path(ehrlib.__file__).resolve().parents[1]
        if here != Path.cwd().resolve():
            raise SystemExit(f"worker imported ehrlib from {here}, not from {Path.cwd()}")
        seconds, values = work(args.worker, args.patients)
        print(json.dumps({"seconds": seconds, "values": values}))
        return
    base = args.base_tree or base_tree(args.base)
    print(f"base: {args.base} at {base}; ours: {ROOT}; single-threaded workers; best of {args.repeats}")
    print(f"{'workload':<18} {'base s':>9} {'ours s':>9} {'ours/base':>10}  numbers")
    best = {}
    for task in args.tasks:
        times = {"base": [], "ours": []}
        values = {}
        for _ in range(args.repeats):
            for side, tree in (("base", base), ("ours", ROOT)):  # alternated: load changes hit both
                s, v = run_worker(tree, task, args.patients)
                times[side].append(s)
                values[side] = v
        b, o = min(times["base"]), min(times["ours"])
        best[task] = (b, o)
        print(f"{task:<18} {b:9.2f} {o:9.2f} {o / b:10.2f}  {largest_difference(values['base'], values['ours'])}",
              flush=True)
    if "corgan_epoch" in best and "medgan_epoch" in best:
        for i, side in enumerate(("base", "ours")):
            print(f"CorGAN / MedGAN adversarial epoch ({side}): {best['corgan_epoch'][i] / best['medgan_epoch'][i]:.2f}")
    if "yardstick" in best:
        print(f"yardstick: {min(best['yardstick']):.2f} s on this machine (fixed single-thread workload)")


if __name__ == "__main__":
    main()
