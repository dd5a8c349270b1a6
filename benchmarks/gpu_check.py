"""GPU check: how long and how much memory each model's ``paper`` training and generation take.

For each of the five neural models with the ``paper`` preset on a simulated cohort of the
paper's size (46,520 patients), the check runs the real ``fit`` with every epoch limited to
``--warmup + --steps`` training steps (``ehrlib.models.neural.StepProbe``: the last ``--steps``
are timed, CUDA synchronised at both ends), times ``generate(--n-generate)`` of that briefly
trained model, records peak GPU memory of each, and extrapolates the full ``paper`` training:
``sum over phases of epochs x steps per epoch x seconds per step``. It writes one JSON file and
prints one table.

What the extrapolation leaves out: per-epoch validation passes (5-10 % of the patients, forward
only), data preparation, checkpoint writes. Generation by a model trained for a few steps is
not generation by a trained model: an untrained GPT rarely emits ``[EOS]`` and samples up to its
context (an upper bound); the GANs may decode only empty records (then generation is reported as
not measured).

    python benchmarks/gpu_check.py                      # one GPU, the paper's sizes (< 8 min on an H100)
    python benchmarks/gpu_check.py --cpu-smoke          # CI: tiny cohort, smoke presets, CPU, seconds
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import sys
import time
from pathlib import Path

import torch

from ehrlib import models
from ehrlib.data import simulate
from ehrlib.errors import GeneratorError
from ehrlib.models.neural import StepProbe

NAMES = ("medgan", "corgan", "promptehr", "halo", "gpt")
GIB = 1024 ** 3


def phase_overrides(name: str) -> dict:
    """One epoch per training phase (the GANs: one autoencoder epoch, one adversarial epoch)."""
    return {"ae_epochs": 1, "gan_epochs": 1} if name in ("medgan", "corgan") else {"epochs": 1}


def phase_epochs(config) -> list[tuple[str, int]]:
    """``(phase, epochs)`` of the full training of ``config``, in the order ``fit`` runs them."""
    if hasattr(config, "gan_epochs"):
        return [("autoencoder", int(config.ae_epochs)), ("adversarial", int(config.gan_epochs))]
    return [("training", int(config.epochs))]


def _peak(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def _reset(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def check_model(name: str, train, profile: str, device: str, warmup: int, steps: int, n_generate: int) -> dict:
    """Time ``name``'s training steps and generation; see the module docstring."""
    full = models.get(name, profile).config
    gen = models.get(name, profile, device=device, progress=False, **phase_overrides(name))
    gen.step_probe = StepProbe(warmup, steps)
    dev = torch.device(device)
    _reset(dev)
    t0 = time.perf_counter()
    gen.fit(train)
    fit_s = time.perf_counter() - t0
    train_peak = _peak(dev)
    phases = []
    for (phase, epochs), rec in zip(phase_epochs(full), gen.step_probe.epochs):
        per_step = rec["seconds"] / rec["timed"] if rec["timed"] else None
        phases.append({"phase": phase, "epochs": epochs, "steps_per_epoch": rec["steps_per_epoch"],
                       "timed_steps": rec["timed"], "seconds_per_step": per_step,
                       "hours": None if per_step is None else epochs * rec["steps_per_epoch"] * per_step / 3600})
    _reset(dev)
    t0 = time.perf_counter()
    try:
        gen.generate(n_generate, seed=0)
        generate_s, generate_note = time.perf_counter() - t0, ""
    except GeneratorError as e:
        generate_s, generate_note = None, f"not measured: {e}"
    gen_peak = _peak(dev)
    hours = [p["hours"] for p in phases]
    result = {
        "model": name, "parameters": sum(p.numel() for m in gen.modules.values() for p in m.parameters()),
        "precision": "bf16 autocast" if gen.uses_bf16(dev) else "fp32", "phases": phases,
        "train_hours": None if None in hours else sum(hours), "probe_fit_seconds": fit_s,
        "generate_n": n_generate, "generate_seconds": generate_s, "generate_note": generate_note,
        "peak_gib_train": train_peak, "peak_gib_generate": gen_peak,
    }
    del gen
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return result


def table(results: list[dict]) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [f"{'model':<10} {'precision':<14} {'s/step':>16} {'steps/epoch':>14} {'train h':>8} "
             f"{'gen s':>7} {'peak GiB train':>14} {'peak GiB gen':>12}"]
    for r in results:
        per = "/".join(num(p["seconds_per_step"], ".4f") for p in r["phases"])
        spe = "/".join(str(p["steps_per_epoch"]) for p in r["phases"])
        lines.append(f"{r['model']:<10} {r['precision']:<14} {per:>16} {spe:>14} {num(r['train_hours'], '.2f'):>8} "
                     f"{num(r['generate_seconds'], '.1f'):>7} {num(r['peak_gib_train'], '.2f'):>14} "
                     f"{num(r['peak_gib_generate'], '.2f'):>12}")
    total = [r["train_hours"] for r in results]
    if None not in total:
        lines.append(f"total extrapolated training: {sum(total):.2f} h")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true",
                   help="the same code path, tiny: CPU, smoke presets, 200 patients, 2 timed steps, 50 records")
    p.add_argument("--models", default=",".join(NAMES))
    p.add_argument("--profile", default=None, help="default: paper (smoke with --cpu-smoke)")
    p.add_argument("--n-patients", type=int, default=None, help="default: 46520 (200 with --cpu-smoke)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per epoch (default 5; 1 with --cpu-smoke)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per epoch (default 30; 2 with --cpu-smoke)")
    p.add_argument("--n-generate", type=int, default=None, help="default 10000 (50 with --cpu-smoke)")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --cpu-smoke)")
    p.add_argument("--json", default="gpu_check.json", help="where the results are written")
    a = p.parse_args(argv)
    smoke = a.cpu_smoke
    profile = a.profile or ("smoke" if smoke else "paper")
    n_patients = a.n_patients or (200 if smoke else 46_520)
    warmup = a.warmup if a.warmup is not None else (1 if smoke else 5)
    steps = a.steps if a.steps is not None else (2 if smoke else 30)
    n_generate = a.n_generate or (50 if smoke else 10_000)
    device = a.device or ("cpu" if smoke else "cuda")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device here: run with --cpu-smoke (or --device cpu)")
    names = [n.strip() for n in a.models.split(",") if n.strip()]
    t0 = time.perf_counter()
    train = simulate(n_patients, seed=0)
    simulate_s = time.perf_counter() - t0
    results = []
    for name in names:
        print(f"[{time.perf_counter() - t0:6.0f} s] {name} ...", file=sys.stderr, flush=True)
        results.append(check_model(name, train, profile, device, warmup, steps, n_generate))
    dev = torch.device(device)
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or 'unknown'})",
        "torch": torch.__version__, "cuda": torch.version.cuda, "profile": profile, "n_patients": n_patients,
        "warmup_steps": warmup, "timed_steps": steps, "simulate_seconds": simulate_s,
        "wall_seconds": time.perf_counter() - t0, "models": results,
        "total_train_hours": (None if any(r["train_hours"] is None for r in results)
                              else sum(r["train_hours"] for r in results)),
    }
    Path(a.json).write_text(json.dumps(out, indent=2))
    print(f"{out['device']}, torch {out['torch']}, profile {profile}, {n_patients:,} patients, "
          f"{steps} timed steps per phase after {warmup} warm-up")
    print(table(results))
    print(f"wrote {a.json} ({out['wall_seconds']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
