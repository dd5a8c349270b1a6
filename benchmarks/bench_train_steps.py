"""Training steps per second of every neural generator, before and after the step changes, in one run.

Cohort: the demo recipe (``simulate(5500, seed=0)``, minus 500 holdout and 1,000 reference
patients: 4,000 training patients), each model at its ``demo`` preset, one thread. Each phase is
timed on ``--steps`` steps after 2 warm-up steps (``ehrlib.models.neural.StepProbe``), for

* ``before``: the step as it was: MedGAN's discriminator on the concatenated ``[x, mean(x)]``
  (one ``Linear(2V, 256)``, defined here as the baseline) and, for both GANs, each batch sliced from
  the CSR matrix and densified per step; GPT-2 networks (the GPT baseline, HALO's coarse model)
  with ``gelu_new`` (GELU's tanh approximation as Python-level tensor operations), and the GPT
  baseline's language-model head over every position of the padded batch, padding included
  (defined here as the baseline);
* ``after``: the library's step: ``x W_x + mean(x) W_m`` (the mean's half is one row), rows
  densified once (``ehrlib.models.neural.Rows``), the fused tanh GELU
  (``ehrlib.models.neural.GPT2_ACTIVATION``, the same function) and the head on predicted
  positions only.

PromptEHR (BART: exact GELU, already fused) has no step change: its row says ``unchanged`` and
gives one measurement. Prints ``ratio: X.XXx`` (after / before steps per second) per model and phase.

    OMP_NUM_THREADS=1 python benchmarks/bench_train_steps.py [--steps 30]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from ehrlib import models
from ehrlib.data import simulate
from ehrlib.data.splits import make_splits
from ehrlib.models.neural import StepProbe, pick_device


class ConcatDiscriminator(nn.Module):
    """The baseline: MedGAN's discriminator on ``cat([x, mean(x)])`` (the step before this release)."""

    def __init__(self, vocab_size: int, dim1: int, dim2: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * vocab_size, dim1), nn.ReLU(), nn.Linear(dim1, dim2), nn.ReLU(),
                                 nn.Linear(dim2, 1))

    def forward(self, x):
        return self.net(torch.cat([x, x.mean(0, keepdim=True).expand_as(x)], 1)).squeeze(1)


def full_head_loss(gen, ids, mask, labels):
    """The baseline GPT loss: logits at every position of the padded chunk, padding masked by label."""
    logits = gen.modules["gpt2"](input_ids=ids, attention_mask=mask).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                           ignore_index=-100, reduction="sum")


def with_gelu_new(module: nn.Module) -> nn.Module:
    """``module`` with every GPT-2 MLP's activation replaced by ``gelu_new`` (the baseline)."""
    from transformers.activations import ACT2FN

    for m in module.modules():
        if hasattr(m, "act") and hasattr(m, "c_fc"):
            m.act = ACT2FN["gelu_new"]
    return module


def prepared(name: str, train, before: bool, **kw):
    """A generator with data, networks and optimizers ready (what ``fit`` does first)."""
    gen = models.get(name, "demo", progress=False, **kw)
    gen.device = pick_device("cpu")
    torch.manual_seed(0)
    gen._prepare(train)
    gen.modules = {k: m.to(gen.device) for k, m in gen._build().items()}
    if before and name in ("medgan", "corgan"):
        gen.x._dense = None  # per-step CSR slicing
        if name == "medgan":
            c = gen.config
            gen.modules["discriminator"] = ConcatDiscriminator(len(gen.vocab), c.discriminator_dim1,
                                                               c.discriminator_dim2)
    if before and name in ("gpt", "halo"):
        for m in gen.modules.values():
            with_gelu_new(m)
        if name == "gpt":
            gen._chunk_loss = lambda ids, mask, labels: full_head_loss(gen, ids, mask, labels)
    gen.optimizers = gen._optimizers()
    gen.schedulers = gen._schedulers()
    return gen


def steps_per_second(gen, phase: int, steps: int) -> float:
    gen._phase = phase
    gen.step_probe = StepProbe(warmup=2, steps=steps)
    for m in gen.modules.values():
        m.train()
    gen._train_epoch(0, torch.Generator().manual_seed(1))
    rec = gen.step_probe.epochs[-1]
    return rec["timed"] / rec["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--models", nargs="*", help="only these models (default: every neural generator)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    train = make_splits(simulate(5500, seed=0), 500, 1000, seed=0)["train"]
    rows = [("medgan", {}, ("autoencoder", "adversarial")), ("medgan", {"data_mode": "count"}, ("adversarial",)),
            ("corgan", {}, ("autoencoder", "adversarial")), ("promptehr", {}, ("train",)),
            ("halo", {}, ("train",)), ("gpt", {}, ("train",))]
    print(f"{train.n_patients} training patients, demo presets, 1 thread, {args.steps} timed steps per phase")
    print(f"{'model':<16} {'phase':<12} {'before steps/s':>15} {'after steps/s':>14}")
    for name, kw, phases in rows:
        if args.models and name not in args.models:
            continue
        label = name + (f" ({kw['data_mode']})" if kw else "")
        changed = name != "promptehr"
        for phase in phases:
            index = ("autoencoder", "adversarial").index(phase) if name in ("medgan", "corgan") else 0
            after = steps_per_second(prepared(name, train, False, **kw), index, args.steps)
            if not changed:
                print(f"{label:<16} {phase:<12} {'unchanged':>15} {after:>14.1f}")
                continue
            before = steps_per_second(prepared(name, train, True, **kw), index, args.steps)
            print(f"{label:<16} {phase:<12} {before:>15.1f} {after:>14.1f}   ratio: {after / before:.2f}x")


if __name__ == "__main__":
    main()
