"""Thread settings under load: a fixed torch training workload, idle and beside a competitor.

Each setting runs in a fresh worker process (OpenMP reads its environment once, at start):

* ``torch default``: what a user gets without any setting (the naive baseline);
* ``1 thread``; ``N threads, ACTIVE``; ``N threads, PASSIVE``;
* ``ehrlib auto``: :func:`ehrlib.threads.choose` measured inside the worker, as the library does.

"busy" starts one CPU-bound competing process (it spins in pure Python) for the duration of
the measurement; "idle" runs with nothing else started by the benchmark. Prints steps/s and the
ratio of each setting to the naive baseline under the same condition.

    python benchmarks/bench_threads.py [--steps 150] [--competitors 1] [--repeats 3]

Each cell is the median of ``--repeats`` worker runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import json, os, sys, time
auto = sys.argv[1] == "auto"
if auto:
    from ehrlib import threads
    plan = threads.apply(threads.choose())
import torch
torch.manual_seed(0)
steps = int(sys.argv[2])
model = torch.nn.Sequential(torch.nn.Linear(2000, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
                            torch.nn.Linear(512, 2000))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = (torch.rand(256, 2000) < 0.01).float()
def step():
    opt.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), x)
    loss.backward()
    opt.step()
for _ in range(10):
    step()
t0 = time.perf_counter()
for _ in range(steps):
    step()
dt = time.perf_counter() - t0
print(json.dumps({"steps_per_s": steps / dt, "threads": torch.get_num_threads(),
                  "wait": os.environ.get("OMP_WAIT_POLICY", "default")}))
"""

SPIN = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"


def settings(cpus: int) -> dict[str, dict | None]:
    n = max(2, cpus)
    return {
        "torch default": {},
        "1 thread": {"OMP_NUM_THREADS": "1"},
        f"{n} threads, ACTIVE": {"OMP_NUM_THREADS": str(n), "OMP_WAIT_POLICY": "ACTIVE"},
        f"{n} threads, PASSIVE": {"OMP_NUM_THREADS": str(n), "OMP_WAIT_POLICY": "PASSIVE"},
        "ehrlib auto": None,
    }


def run_worker(extra: dict | None, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(extra or {})
    mode = "auto" if extra is None else "fixed"
    out = subprocess.run([sys.executable, "-c", WORKER, mode, str(steps)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--competitors", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from ehrlib.threads import available_cpus

    cpus = available_cpus()
    rows = []
    for condition in ("idle", "busy"):
        spinners = []
        if condition == "busy":
            spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.competitors)]
            time.sleep(1.0)
        try:
            for name, extra in settings(cpus).items():
                runs = sorted((run_worker(extra, args.steps) for _ in range(args.repeats)),
                              key=lambda r: r["steps_per_s"])
                rows.append({"condition": condition, "setting": name, **runs[len(runs) // 2]})
        finally:
            for p in spinners:
                p.kill()
                p.wait()
    base = {r["condition"]: r["steps_per_s"] for r in rows if r["setting"] == "torch default"}
    print(f"{cpus} cores; {args.steps} steps; busy = {args.competitors} competing CPU-bound process(es)")
    print(f"{'condition':<9} {'setting':<22} {'threads':>7} {'wait':>8} {'steps/s':>8} {'vs default':>10}")
    for r in rows:
        print(f"{r['condition']:<9} {r['setting']:<22} {r['threads']:>7} {r['wait']:>8} {r['steps_per_s']:>8.2f} "
              f"{r['steps_per_s'] / base[r['condition']]:>9.2f}x")
    worst = {}
    for r in rows:
        worst[r["setting"]] = min(worst.get(r["setting"], float("inf")), r["steps_per_s"])
    print("worst case over idle/busy (steps/s): " + ", ".join(f"{k} {v:.2f}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
