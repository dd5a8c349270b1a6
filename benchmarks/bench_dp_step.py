"""The cost of a DP-SGD step (Opacus: per-sample gradients, clipping, noise) against the
non-private step of the same network, in one run.

Cohort: ``simulate(--patients, seed=0)``; each pair at the ``--profile`` preset (default
``smoke``): MedGAN's autoencoder step (``medgan`` against ``dp_medgan``: the same encoder and
decoder, batch ``ae_batch_size``; the DP batch is Poisson-sampled at that expected size) and the
GPT baseline's step (``gpt`` against ``dp_gpt``: the same GPT-2, dropout 0, plain random batches
against Poisson batches of the same expected size). Each is timed on ``--steps`` steps after 2
warm-up steps (``ehrlib.models.neural.StepProbe``). Prints seconds per step and
``ratio: X.XXx`` (DP / non-private seconds per step) per model.

    OMP_NUM_THREADS=1 python benchmarks/bench_dp_step.py [--steps 20] [--patients 2000]
"""
from __future__ import annotations

import argparse
import warnings

from ehrlib import models
from ehrlib.data import simulate
from ehrlib.models.neural import StepProbe


def seconds_per_step(name: str, profile: str, train, steps: int, **overrides) -> float:
    gen = models.get(name, profile, progress=False, device="cpu", **overrides)
    gen.step_probe = StepProbe(warmup=2, steps=steps)
    gen.fit(train)
    first = gen.step_probe.epochs[0]  # the first epoch: MedGAN's autoencoder phase, GPT's only epoch
    return first["seconds"] / max(first["timed"], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--profile", default="smoke")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Full backward hook")
    train = simulate(args.patients, seed=0)
    delta = 0.1 / train.n_patients
    pairs = {
        "medgan autoencoder": (("medgan", dict(ae_epochs=1, gan_epochs=1, val_fraction=0.0, patience=0,
                                               check_every=0)),
                               ("dp_medgan", dict(ae_epochs=1, gan_epochs=1, delta=delta))),
        "gpt": (("gpt", dict(epochs=1, dropout=0.0, length_buckets=1, val_fraction=0.0, check_every=0)),
                ("dp_gpt", dict(epochs=1, delta=delta, max_positions=1024))),
    }
    for label, ((plain, plain_kw), (private, private_kw)) in pairs.items():
        dp_cfg = models.get(private, args.profile).config
        size = dp_cfg.ae_batch_size if private == "dp_medgan" else dp_cfg.batch_size
        keys = ("embedding_dim", "ae_lr") if private == "dp_medgan" else ("n_layer", "n_head", "n_embd", "lr")
        same = {k: getattr(dp_cfg, k) for k in keys}
        size_key = "ae_batch_size" if private == "dp_medgan" else "batch_size"
        base = seconds_per_step(plain, args.profile, train, args.steps, **{size_key: size}, **same, **plain_kw)
        dp = seconds_per_step(private, args.profile, train, args.steps, **private_kw)
        print(f"{label}: non-private {base * 1e3:.2f} ms/step, DP-SGD {dp * 1e3:.2f} ms/step "
              f"(batch {size}, {args.steps} steps); ratio: {dp / base:.2f}x")


if __name__ == "__main__":
    main()
