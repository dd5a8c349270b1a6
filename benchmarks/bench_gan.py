"""Time MedGAN (binary and count) and CorGAN: training throughput, generation, naive baseline.

Cohort: the demo recipe (simulate(12000, seed=0), minus 1,000 holdout and 1,000 reference
patients: 10,000 train patients, ~3,700 codes); ``--quick`` uses 2,000 of them.

Prints, per model and preset (demo, paper), training throughput in training-set patients per
second of epoch time, separately for the autoencoder phase and the adversarial phase (an
adversarial epoch of MedGAN makes ``d_steps`` discriminator passes and one generator pass per
batch; one of CorGAN makes one critic step per batch and a generator step every
``critic_steps`` batches), timed on a few batches and extrapolated, with the implied time of a
whole fit (demo on 10,000 patients; paper on 45,520 patients). Then the time of
``generate(10_000)`` (a model briefly fitted on the cohort; generation cost does not depend on
how long it trained, except through the share of empty records redrawn) and the ratio against a naive per-patient loop (one noise vector, one
forward pass and one Python record at a time) on a few patients, scaled to 10,000:
``ratio: X.Xx``.

``--paper-epoch`` times one full epoch of each phase at the paper preset on a 46,520-patient
simulated cohort (meant for a GPU machine; prints the device).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_gan.py [--quick] [--paper-epoch]``
"""
from __future__ import annotations

import argparse
import time

import torch

from ehrlib.cohort import Cohort
from ehrlib.data import simulate, split
from ehrlib.models import GeneratorError, get
from ehrlib.models.neural import Rows, pick_device

N_PAPER = 45_520  # paper training patients
N_GENERATE = 10_000
MODELS = [("medgan", {}), ("medgan", {"data_mode": "count"}), ("corgan", {})]


def label(name: str, kw: dict) -> str:
    return name + (f" ({kw['data_mode']})" if "data_mode" in kw else "")


def prepared(name: str, profile: str, train: Cohort, **kw):
    """An unfitted generator with data, networks and optimizers ready (what fit() does first)."""
    gen = get(name, profile, progress=False, **kw)
    gen.device = pick_device(gen.config.device)
    torch.manual_seed(0)
    gen._prepare(train)
    gen.modules = {k: m.to(gen.device) for k, m in gen._build().items()}
    gen.optimizers = gen._optimizers()
    return gen


def sync(gen) -> None:
    if gen.device.type == "cuda":
        torch.cuda.synchronize()


def time_epoch(gen, phase: str, n_patients: int | None) -> tuple[float, int]:
    """Seconds and patients of one epoch of ``phase`` (``ae`` or ``gan``) over the first ``n_patients``."""
    c = gen.config
    full = gen.x
    n = full.n if n_patients is None else min(full.n, n_patients)
    gen.x = Rows(full.matrix[:n])
    epoch = 0 if phase == "ae" else c.ae_epochs
    gen._phase = 0 if phase == "ae" else 1
    if phase == "ae" and c.ae_epochs == 0:
        return float("nan"), n
    for m in gen.modules.values():
        m.train()
    sync(gen)
    start = time.perf_counter()
    gen._train_epoch(epoch, torch.Generator().manual_seed(1))
    sync(gen)
    seconds = time.perf_counter() - start
    gen.x = full
    return seconds, n


def throughput(name: str, kw: dict, profile: str, train: Cohort, n_patients: int, n_fit: int) -> None:
    gen = prepared(name, profile, train, **kw)
    c = gen.config
    ae_s, ae_n = time_epoch(gen, "ae", n_patients)
    gan_s, gan_n = time_epoch(gen, "gan", n_patients)
    ae_pps, gan_pps = ae_n / ae_s, gan_n / gan_s
    fit_s = c.ae_epochs * n_fit / ae_pps + c.gan_epochs * n_fit / gan_pps
    print(f"{label(name, kw):16s} {profile:5s}  AE {ae_pps:9.0f} patients/s   adversarial {gan_pps:8.0f} patients/s"
          f"   -> fit of {c.ae_epochs}+{c.gan_epochs} epochs on {n_fit:,} patients ~ {fit_s:8.0f} s"
          f"  ({gen.device.type}, V={len(gen.vocab)})")


def naive_generate(gen, n: int, seed: int) -> Cohort:
    """One patient at a time: one noise vector, one forward pass, one Python record."""
    g = torch.Generator().manual_seed(seed)
    for m in gen.modules.values():
        m.eval()
    codes, records = gen.vocab.codes, []
    dim = gen.config.embedding_dim if gen.name == "medgan" else gen.config.latent_dim
    while len(records) < n:
        z = torch.randn(1, dim, generator=g).to(gen.device)
        with torch.no_grad():
            out = gen.fake(z) if gen.name == "medgan" else gen.modules["nets"].generate(z)
        row = out[0].cpu().tolist()
        if gen.name == "medgan" and gen.config.data_mode == "count":
            counts = {codes[j]: int(round(v)) for j, v in enumerate(row) if round(v) >= 1}
            if counts:
                records.append([[c for c, k in counts.items() if k > v] for v in range(max(counts.values()))])
        else:
            visit = [codes[j] for j, v in enumerate(row) if v >= 0.5]
            if visit:
                records.append([visit])
    return Cohort.from_visits(records)


def generation(name: str, kw: dict, train: Cohort, n_naive: int) -> None:
    # a brief fit: MedGAN (demo sizes, 2+1 epochs); CorGAN needs its smoke preset's 8+5 epochs
    # before it emits non-empty records
    if name == "medgan":
        gen = get(name, "demo", progress=False, ae_epochs=2, gan_epochs=1, **kw).fit(train)
    else:
        gen = get(name, "smoke", progress=False, **kw).fit(train)
    start = time.perf_counter()
    try:
        out = gen.generate(N_GENERATE, seed=0)
    except GeneratorError as e:  # a briefly trained model may still emit only empty records
        print(f"{label(name, kw):16s} generate({N_GENERATE:,}) skipped: {e}")
        return
    fast = time.perf_counter() - start
    start = time.perf_counter()
    naive_generate(gen, n_naive, seed=0)
    naive = (time.perf_counter() - start) * N_GENERATE / n_naive
    print(f"{label(name, kw):16s} generate({N_GENERATE:,}): {fast:6.2f} s ({out.n_patients} patients);"
          f" naive per-patient loop ({n_naive} patients, scaled): {naive:7.1f} s; ratio: {naive / fast:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000-patient cohort and fewer batches (< ~2 min)")
    ap.add_argument("--paper-epoch", action="store_true", help="one full paper-preset epoch per phase on 46,520 patients")
    args = ap.parse_args()
    cohort = simulate(12_000, seed=0)
    train, _ = split(cohort, n_holdout=1_000, seed=0)
    train, _ = split(train, n_holdout=1_000, seed=1)
    if args.quick:
        train = Cohort.from_events(train.events[train.events.subject_id.isin(train.subject_ids[:2_000])])
    device = pick_device("auto")
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"torch threads: {torch.get_num_threads()}, train: {train.n_patients:,} patients")
    n_timed = 512 if args.quick else 2_048
    print(f"training throughput (one epoch over {n_timed:,} patients per phase, extrapolated):")
    for name, kw in MODELS:
        throughput(name, kw, "demo", train, n_timed, train.n_patients)
        throughput(name, kw, "paper", train, n_timed, N_PAPER)
    print("generation:")
    for name, kw in MODELS:
        generation(name, kw, train, n_naive=30 if args.quick else 100)
    if args.paper_epoch:
        big = simulate(N_PAPER + 1_000, seed=0)
        print(f"one paper-preset epoch per phase on {big.n_patients:,} patients:")
        for name, kw in MODELS:
            gen = prepared(name, "paper", big, **kw)
            ae_s, n = time_epoch(gen, "ae", None)
            gan_s, _ = time_epoch(gen, "gan", None)
            c = gen.config
            print(f"{label(name, kw):16s} AE epoch {ae_s:7.1f} s, adversarial epoch {gan_s:7.1f} s"
                  f" -> paper fit ~ {(c.ae_epochs * ae_s + c.gan_epochs * gan_s) / 3600:.2f} h ({gen.device})")


if __name__ == "__main__":
    main()
