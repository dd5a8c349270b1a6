"""``ehrbench preflight``: what a run of a profile will need, before it is submitted.

For each of the paper's five neural generators at the profile's preset, on the cohort the
profile trains on (the simulated cohort of the profile's size by default; ``--data`` for
another source):

* the vocabulary (distinct codes) and sequence size the model sees (its context: tokens for
  GPT and PromptEHR, visit rows for HALO; the GANs see one flat vector of the vocabulary);
* its parameter count;
* one real training step (``fit`` with every epoch limited to one step,
  :class:`ehrlib.models.neural.StepProbe`) and one generation batch on this machine: their time
  and the peak memory of this process (``ru_maxrss``, the most this process has held so far);
* the estimated GPU memory at the preset's batch size and precision, derived as: weights, their
  gradients and Adam's two moments (4 bytes each per parameter: 16 bytes per parameter, fp32
  master weights) plus the tensors autograd saved for the backward pass during the measured
  step (summed over one step, each storage counted once: an upper bound on the activations
  held at once; fp32 here, so also an upper bound under bf16 autocast) plus
  :data:`CUDA_OVERHEAD_GIB` for the CUDA context and allocator;
* the extrapolated training hours: seconds of the measured step x steps per epoch x the
  preset's epochs (appendix F's for ``paper``), per phase; an *estimate* (it leaves out
  validation passes, data preparation and checkpoints, and the first step carries one-time
  costs) on this machine's device, beside the paper's reported time (:data:`PAPER_HOURS`).

It fails early, naming the field to change, when a preset cannot work: a record beyond a
model's context (the model refuses it when it prepares its data) or an estimate above
``--gpu-memory``. The book's methods page shows the table of the ``paper`` profile.
"""
from __future__ import annotations

import gc
import logging
import resource
import time
from dataclasses import dataclass, field

import pandas as pd

from ehrlib.errors import EhrlibError, GeneratorError

log = logging.getLogger("ehrbench")

#: The paper's five neural generators, in the order of its tables.
MODELS = ("medgan", "corgan", "promptehr", "halo", "gpt")
#: GiB added to every estimate for the CUDA context and the caching allocator's slack.
CUDA_OVERHEAD_GIB = 1.0
#: Bytes per parameter: fp32 weights, gradients and Adam's first and second moments.
BYTES_PER_PARAMETER = 16
GIB = 1024 ** 3
#: The paper's reported training times (section 5, "Scaling to the full ICD-9 vocabulary", on
#: one A100/H100 GPU for 45,520 patients), as it words them.
PAPER_HOURS = {"medgan": "under 1 h", "corgan": "under 1 h", "promptehr": "about 16 h (20 epochs)",
               "halo": "under 6 h", "gpt": "about 2 h"}
#: Records of the generation batch on a CPU (on a GPU: the preset's sampling or training batch).
CPU_GENERATE = 16
#: Where the sequence size of each model comes from (its config field: what to change).
CONTEXT_FIELD = {"promptehr": "max_len", "halo": "n_ctx", "gpt": "max_positions"}


class PreflightError(EhrlibError):
    """A preset that cannot work: the message names the model and the field to change."""


@dataclass
class _Probe:
    """Limits every epoch to one step and sums the bytes autograd saves during it."""

    steps: int = 1
    epochs: list = field(default_factory=list)
    saved: list = field(default_factory=list)

    def run(self, items, device):
        from ehrlib.models.neural import StepProbe

        probe = StepProbe(0, self.steps)
        out = probe.run(items, device)
        self.epochs.append(probe.epochs[-1])
        return out


def _saved_bytes(counter: dict):
    import torch

    def pack(t):
        try:
            key = (t.untyped_storage().data_ptr(), t.device.type)
            if key not in counter["seen"]:
                counter["seen"].add(key)
                counter["bytes"] += t.untyped_storage().nbytes()
        except RuntimeError:  # a tensor without storage (sparse, meta)
            pass
        return t

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # kilobytes on Linux


def _phases(config) -> list[tuple[str, int]]:
    if hasattr(config, "gan_epochs"):
        return [("autoencoder", int(config.ae_epochs)), ("adversarial", int(config.gan_epochs))]
    return [("training", int(config.epochs))]


def _probe_overrides(config) -> dict:
    """One epoch per phase, no validation split or fidelity checks (they do not change a step)."""
    out = {"ae_epochs": 1, "gan_epochs": 1} if hasattr(config, "gan_epochs") else {"epochs": 1}
    for name, value in (("val_fraction", 0.0), ("check_every", 0), ("patience", 0)):
        if hasattr(config, name):
            out[name] = value
    return out


def check_model(name: str, train, profile: str, device: str, n_generate: int | None = None,
                gpu_memory: float | None = None, overrides: dict | None = None) -> dict:
    """The preflight row of model ``name`` (see the module docstring).

    Raises:
        PreflightError: the preset cannot work on ``train`` (the field to change named).
    """
    import torch

    from ehrlib import models

    overrides = dict(overrides or {})
    try:
        full = models.get(name, profile, **overrides).config
    except GeneratorError as exc:
        raise PreflightError(f"preflight {name} (profile {profile}): {exc}") from None
    gen = models.get(name, profile, device=device, progress=False, **{**overrides, **_probe_overrides(full)})
    probe = _Probe()
    gen.step_probe = probe
    counter = {"bytes": 0, "seen": set()}
    t0 = time.perf_counter()
    try:
        with _saved_bytes(counter):
            gen.fit(train)
    except GeneratorError as exc:
        raise PreflightError(f"preflight {name} (profile {profile}): {exc}") from None
    fit_s = time.perf_counter() - t0
    rss_train = _rss_gib()
    params = sum(p.numel() for m in gen.modules.values() for p in m.parameters())
    steps = sum(r["timed"] for r in probe.epochs) or 1
    step_s = sum(r["seconds"] for r in probe.epochs)
    activations = counter["bytes"] / max(1, len(probe.epochs))  # one step per phase: the mean phase's step
    estimate = (params * BYTES_PER_PARAMETER + activations) / GIB + CUDA_OVERHEAD_GIB
    hours = sum(epochs * rec["steps_per_epoch"] * (rec["seconds"] / rec["timed"] if rec["timed"] else 0.0)
                for (phase, epochs), rec in zip(_phases(full), probe.epochs)) / 3600
    batch = int(getattr(full, "sample_batch_size", 0) or getattr(full, "batch_size", 0) or 64)
    n = int(n_generate or (batch if torch.device(device).type == "cuda" else min(batch, CPU_GENERATE)))
    t1 = time.perf_counter()
    try:
        gen.generate(n, seed=0)
        gen_s, gen_note = time.perf_counter() - t1, ""
    except GeneratorError as exc:  # an untrained GAN may decode only empty records
        gen_s, gen_note = None, f"not measured: {exc}"
    vocab = len(getattr(gen, "vocab", ()) or ())
    context = {"gpt": getattr(gen, "context", None), "halo": getattr(full, "n_ctx", None),
               "promptehr": getattr(full, "max_len", None)}.get(name)
    row = {
        "model": name, "vocabulary": vocab, "context": context, "context_field": CONTEXT_FIELD.get(name, ""),
        "truncated": getattr(gen, "n_truncated", None), "parameters": params,
        "batch_size": int(getattr(full, "batch_size", 0)), "precision": "bf16 autocast" if full.precision == "bf16" or (
            full.precision == "auto" and type(gen).allows_bf16) else "fp32", "device": str(gen.device),
        "step_seconds": step_s / steps, "probe_fit_seconds": fit_s, "peak_rss_gib_train": rss_train,
        "activations_gib": activations / GIB, "gpu_memory_gib_estimate": estimate,
        "epochs": "+".join(str(e) for _, e in _phases(full)),
        "steps_per_epoch": "+".join(str(r["steps_per_epoch"]) for r in probe.epochs),
        "train_hours_estimate": hours, "paper_reported": PAPER_HOURS[name],
        "generate_n": n, "generate_seconds": gen_s, "generate_note": gen_note, "peak_rss_gib_generate": _rss_gib(),
    }
    del gen
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    if gpu_memory is not None and estimate > gpu_memory:
        raise PreflightError(f"preflight {name} (profile {profile}): estimated {estimate:.1f} GiB of GPU memory at "
                             f"batch_size={row['batch_size']} does not fit --gpu-memory {gpu_memory:g}; lower "
                             f"models.{name}.batch_size in the profile (its activations, {row['activations_gib']:.1f} "
                             "GiB, scale with it) or use a larger GPU")
    return row


def training_cohort(profile: str, data: str = "simulated", seed: int = 0):
    """The cohort the profile's generators train on: the simulated cohort of the profile's
    training size (patients less holdout and reference), or ``data``'s cohort."""
    from ehrlib import profiles
    from ehrlib.data import load

    p = profiles.get(profile)
    n_train = p.data.n_patients - p.data.n_holdout - p.data.n_reference
    if data == "simulated":
        return load("simulated", n_patients=n_train, seed=seed)
    return load(data, seed=seed)


def preflight(profile: str = "paper", data: str = "simulated", gpu_memory: float | None = None,
              device: str | None = None, models: tuple[str, ...] = MODELS, n_generate: int | None = None,
              seed: int = 0, overrides: dict | None = None) -> pd.DataFrame:
    """The preflight table (one row per model; see the module docstring); ``overrides`` maps a
    model to config fields set over its preset (what the profile would change).

    Raises:
        PreflightError: at the first model whose preset cannot work (the field to change named).
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    train = training_cohort(profile, data, seed)
    log.info("preflight: %d patients (%s) in %.0f s", len(train),
             data, time.perf_counter() - t0)
    rows = []
    for name in models:
        t1 = time.perf_counter()
        rows.append(check_model(name, train, profile, device, n_generate, gpu_memory, (overrides or {}).get(name)))
        log.info("preflight: %-9s %.0f s", name, time.perf_counter() - t1)
    table = pd.DataFrame(rows)
    table.attrs["seconds"] = time.perf_counter() - t0
    return table


def format_table(table: pd.DataFrame) -> str:
    """The table as ``ehrbench preflight`` prints it."""
    def num(v, fmt):
        return "-" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)

    lines = [f"{'model':<10}{'vocab':>7}{'context':>18}{'params':>13}{'batch':>6}  {'precision':<14}{'s/step':>8}"
             f"{'RSS GiB':>8}{'GPU GiB est':>12}{'epochs':>9}{'steps/ep':>11}{'hours est':>10}  "
             f"{'gen n':>5}{'gen s':>7}  paper reported"]
    for r in table.to_dict("records"):
        ctx = "-" if r["context"] is None or r["context"] != r["context"] else f"{int(r['context'])} {r['context_field']}"
        lines.append(f"{r['model']:<10}{r['vocabulary']:>7}{ctx:>18}{r['parameters']:>13,}{r['batch_size']:>6}  "
                     f"{r['precision']:<14}{num(r['step_seconds'], '.3f'):>8}{num(r['peak_rss_gib_train'], '.2f'):>8}"
                     f"{num(r['gpu_memory_gib_estimate'], '.2f'):>12}{r['epochs']:>9}{r['steps_per_epoch']:>11}"
                     f"{num(r['train_hours_estimate'], '.2f'):>10}  {r['generate_n']:>5}"
                     f"{num(r['generate_seconds'], '.1f'):>7}  {r['paper_reported']}")
    dev = table["device"].iloc[0] if len(table) else "?"
    lines.append(f"hours est: an estimate for one {dev} device (measured step x steps per epoch x epochs); GPU GiB est: "
                 f"16 B per parameter + autograd's saved tensors of one step + {CUDA_OVERHEAD_GIB:g} GiB")
    return "\n".join(lines)
