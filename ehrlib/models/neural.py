"""What every neural generator shares: typed configs with profile presets, device choice,
an epoch loop with a progress bar, atomic periodic checkpoints, exact resume, and saving.

A neural generator subclasses :class:`TorchGenerator` and implements

* ``_prepare(train)``: data-derived state (vocabulary, priors, encoded tensors);
* ``_extra_state()`` / ``_set_extra_state(state)``: that state as JSON (what ``generate`` needs);
* ``_build()``: the untrained networks, a ``dict`` name -> ``nn.Module``;
* ``_optimizers()``: a ``dict`` name -> optimizer (and optionally ``_schedulers()``);
* ``_train_epoch(epoch, generator)``: one epoch, returning a ``dict`` of floats
  (a ``val_loss`` entry turns on best-checkpoint keeping and early stopping);
* ``_generate(n, seed)``.

Determinism: before each epoch the global torch RNG is seeded from ``(config.seed, epoch)`` and
the epoch gets its own ``torch.Generator``; so a fit resumed from the checkpoint after epoch k
replays epochs k+1... exactly as an uninterrupted fit would (on CPU).

Training steps go through three helpers, so that one loop serves one process, several
processes and the GPU:

* ``self._steps(batches)``: the epoch's batches (a :class:`StepProbe` may limit and time them);
* ``self._keeps(rows, minimum)`` / ``self._part(rows)``: under ``torchrun`` every rank draws the
  same global batch and keeps every ``world_size``-th row (``ehrlib.models.distributed`` states
  the batch rule); for one process they keep everything;
* ``self._synced(loss_fn, *args)``: the loss computed under the training precision and through
  the ``DistributedDataParallel`` wrapper (gradients averaged over ranks in ``backward``).

On CUDA only (the CPU computes exactly as before): TF32 matmuls and convolutions, bf16
autocast of the training losses (``precision="auto"``; models may refuse it per loss),
batches copied from pinned memory without blocking, and step losses summed on the device
(:class:`Running`), read once per epoch, so no step waits for a host copy of its loss.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ehrlib import profiles
from ehrlib.cohort import Cohort
from ehrlib.errors import ConfigError
from ehrlib import threads
from ehrlib.io import atomic_write, clean_stale_temporaries
from ehrlib.models import distributed
from ehrlib.models.base import Config, FitOptions, Generator, GeneratorError, check_seed, reading

log = logging.getLogger("ehrlib.models")

#: The profile names (defined once, in ``ehrlib.profiles``).
PROFILES = profiles.NAMES
#: Config fields that do not change what training computes: a checkpoint or a saved model
#: written with other values of them is still reused.
RUNTIME_FIELDS = ("device", "progress", "checkpoint_every", "precision")
#: ``precision`` values: ``auto`` (bf16 autocast on a CUDA device with bf16 support, for the
#: models that allow it; float32 elsewhere), ``fp32`` (never autocast), ``bf16`` (autocast on any
#: device, the CPU too: slow there, for tests of the code path).
PRECISIONS = ("auto", "fp32", "bf16")


def training_config(config) -> dict:
    """A config (dataclass or its saved dict) as JSON-normal data without :data:`RUNTIME_FIELDS`:
    what must match to resume or reuse a training."""
    if dataclasses.is_dataclass(config):
        config = asdict(config)
    d = json.loads(json.dumps(config or {}))
    return {k: v for k, v in d.items() if k not in RUNTIME_FIELDS}
CHECKPOINT = "checkpoint.pt"


class _Call(torch.nn.Module):
    """Holds the modules for DDP; ``forward(fn, *args)`` runs ``fn(*args)`` (any loss computation
    over the modules), so every loss of every model passes through ``DistributedDataParallel``."""

    def __init__(self, modules):
        super().__init__()
        self.inner = modules

    def forward(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


class StepProbe:
    """Limits every epoch of a fit to ``warmup + steps`` steps and times the last ``steps``
    (CUDA synchronised at both ends), for benchmarks: set ``generator.step_probe`` before ``fit``.

    ``epochs`` gets one dict per epoch: ``steps_per_epoch`` (of the whole epoch), ``timed`` (steps
    timed) and ``seconds``.
    """

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = int(warmup), int(steps)
        self.epochs: list[dict] = []

    def run(self, items, device):
        items = list(items)
        record = {"steps_per_epoch": len(items), "timed": 0, "seconds": 0.0}
        self.epochs.append(record)
        return self._timed(items[:self.warmup + self.steps], record, device)

    def _timed(self, items, record, device):
        import time

        start = None
        for i, item in enumerate(items):
            if i == self.warmup:
                _synchronize(device)
                start = time.perf_counter()
            yield item
        if start is not None:
            _synchronize(device)
            record["seconds"] = time.perf_counter() - start
            record["timed"] = len(items) - self.warmup


def _synchronize(device) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def fast_cuda() -> None:
    """Let CUDA matmuls and convolutions use TF32 (a GPU-only switch: CPU results are unchanged)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def pick_device(device: str = "auto"):
    """``"auto"`` picks CUDA when available, else CPU; ``"cpu"``/``"cuda"``/``"cuda:1"`` are taken as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise GeneratorError(f"device={device!r}: {e}; expected 'auto', 'cpu' or 'cuda[:i]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GeneratorError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return dev


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: distinct per (seed, epoch), stable across runs and resumes."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63 - 1)


@dataclass(frozen=True)
class TorchConfig(Config):
    """Fields every neural generator has (model configs add theirs)."""

    seed: int = 0                # every random choice in training derives from it
    device: str = "auto"         # auto | cpu | cuda | cuda:i
    checkpoint_every: int = 1    # epochs between checkpoints (when fit is given a checkpoint_dir)
    patience: int = 0            # a phase stops after this many evaluations without improvement (0: fixed epochs)
    min_delta: float = 0.0       # an improvement must beat the best by this share of it (0.005: by 0.5%)
    val_fraction: float = 0.0    # training patients held out for validation (0: none; models may default higher)
    check_every: int = 0         # epochs between fidelity checks against the validation patients (0: none)
    check_records: int = 1000    # records drawn per check (at most the number of validation patients)
    progress: bool = True        # tqdm progress bar over epochs
    precision: str = "auto"      # auto | fp32 | bf16: autocast of training losses (auto: bf16 on CUDA only)

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise :class:`GeneratorError` naming the field for values of the wrong type or out of range."""
        for f in dataclasses.fields(self):
            self._typed(f.name, f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        check_seed(type(self).__name__, self.seed, label=f"{type(self).__name__}.seed")
        self._positive("checkpoint_every")
        if self.patience < 0:
            raise GeneratorError(f"{type(self).__name__}.patience={self.patience}; expected >= 0")
        if self.check_every < 0:
            raise GeneratorError(f"{type(self).__name__}.check_every={self.check_every}; expected >= 0 (0: no checks)")
        self._positive("check_records")
        self._unit_interval("min_delta")
        if not 0 <= self.val_fraction < 0.5:
            raise GeneratorError(f"{type(self).__name__}.val_fraction={self.val_fraction!r}; expected a value in "
                                 "[0, 0.5)")
        self._choice("precision", PRECISIONS)

    def _typed(self, name: str, kind: str) -> None:
        value = getattr(self, name)
        expected = {"int": "an integer", "float": "a finite number", "bool": "True or False", "str": "a string"}
        ok = {
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
            "bool": lambda v: isinstance(v, bool),
            "str": lambda v: isinstance(v, str),
        }.get(kind)
        if ok is not None and not ok(value):
            raise GeneratorError(f"{type(self).__name__}.{name}={value!r}; expected {expected[kind]}")

    def _positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise GeneratorError(f"{type(self).__name__}.{name}={value!r}; expected a positive number")

    def _non_negative(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise GeneratorError(f"{type(self).__name__}.{name}={value!r}; expected a number >= 0")

    def _unit_interval(self, *names: str) -> None:
        """Each field in [0, 1) (rates, betas, fractions)."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise GeneratorError(f"{type(self).__name__}.{name}={value!r}; expected a number in [0, 1)")

    def _choice(self, name: str, options) -> None:
        value = getattr(self, name)
        if value not in options:
            raise GeneratorError(f"{type(self).__name__}.{name}={value!r}; expected one of {list(options)}")

    @property
    def epochs_total(self) -> int:
        """Epochs of the whole fit at most (the sum of the phases' caps)."""
        return int(getattr(self, "epochs"))


@dataclass(frozen=True)
class Phase:
    """One phase of a fit: ``name``, an epoch cap, and what decides when it stops.

    ``criterion`` is ``"val_loss"`` (lower is better: the likelihood models and the autoencoder
    phases), ``"fidelity"`` (higher is better: the adversarial phases; see
    :mod:`ehrlib.models.fidelity`) or ``None`` (fixed epochs). With ``patience`` > 0 a phase stops
    after that many evaluations of its criterion without improvement; its best epoch's weights are
    restored when it ends, by patience or by its cap.
    """

    name: str
    epochs: int
    criterion: str | None
    checks: bool = True  # whether the fidelity check runs in this phase (not while a GAN's generator is untrained)


class TorchGenerator(Generator):
    """Base of the neural generators: training loop, checkpoints, resume, save/load."""

    config_class: ClassVar[type[TorchConfig]] = TorchConfig
    #: ``None``: the presets are the profiles' YAML files (``ehrlib.profiles``). A generator
    #: outside the registry (a test's toy model) may give ``{profile: field overrides}`` here.
    presets: ClassVar[dict[str, dict] | None] = None

    #: The fewest rows a rank may get of a batch (2 for models with BatchNorm in training).
    min_shard_rows: ClassVar[int] = 1
    #: Config fields holding batch sizes that are split over ranks in distributed training.
    batch_fields: ClassVar[tuple[str, ...]] = ("batch_size",)
    #: Whether the training losses may run under bf16 autocast (``precision``).
    allows_bf16: ClassVar[bool] = True

    def __init__(self, config: TorchConfig | None = None):
        super().__init__(config)
        self.modules: dict = {}
        self.history: list[dict] = []
        self.stopping: list[dict] = []  # one dict per phase: how it ended (cap or patience) and its best epoch
        self.last_drawn = None  # records drawn by the last _generate (empty ones redrawn), where it counts them
        self.validation = None  # the held-out training patients (a Cohort), set by _prepare
        self._phase, self._phase_start, self._waited = 0, 0, 0
        self.device = None
        self._dist = None   # a distributed.DistContext under torchrun, else None
        self._ddp = None    # the DistributedDataParallel wrapper of all modules while training
        self._bf16 = False  # training losses under bf16 autocast (see ``precision``)
        self.step_probe = None  # a StepProbe (benchmarks/gpu_check.py): limit and time each epoch's steps

    # ---------------------------------------------------------------- configuration
    @classmethod
    def default_config(cls) -> TorchConfig:
        """The ``demo`` preset."""
        return cls.preset("demo")

    @classmethod
    def preset(cls, profile: str = "demo", **overrides) -> TorchConfig:
        """The typed config of ``profile`` (``smoke``, ``demo``, ``paper``) with ``overrides`` applied.

        The profile's preset for this model comes from ``ehrlib/profiles/<profile>.yaml`` (or from
        the class's own ``presets`` dict, for a generator outside the registry).
        """
        profiles.check_name(profile)
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        if cls.presets is not None:
            preset, source = dict(cls.presets.get(profile, {})), f"{cls.__name__}.presets"
        else:
            p = profiles.get(profile)
            preset, source = p.preset(cls.name), p.source
        unknown = sorted(set(preset) - fields)
        if unknown:
            raise ConfigError(f"{source}: unknown key 'models.{cls.name}.{unknown[0]}'; expected a field of "
                              f"{cls.config_class.__name__}: {sorted(fields)}")
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise GeneratorError(f"{cls.name}: unknown config field(s) {unknown}; expected some of {sorted(fields)}")
        try:
            cls.config_class(**preset)
        except GeneratorError as e:
            raise ConfigError(f"{source}: models.{cls.name}: {e}") from None
        config = cls.config_class(**{**preset, **overrides})
        check_stopping(config, f"{cls.name} ({profile} preset{' with ' + ', '.join(sorted(overrides)) if overrides else ''})")
        return config

    @classmethod
    def from_profile(cls, profile: str = "demo", **overrides) -> "TorchGenerator":
        return cls(cls.preset(profile, **overrides))

    # ---------------------------------------------------------------- training
    def training_config(self) -> dict:
        """The config without :data:`RUNTIME_FIELDS`: what must match to resume or reuse."""
        return training_config(self.config)

    def _fit(self, train: Cohort, options: FitOptions) -> None:
        """The epoch loop (``options``: checkpoint folder, resume, progress bar, callback; see ``fit``)."""
        from tqdm import tqdm

        cfg = self.config
        self._dist, self.device = distributed.setup(pick_device(cfg.device))
        self._check_world()
        self._bf16 = self.uses_bf16()
        if self.device.type == "cpu":
            threads.configure_torch()  # a thread count that cannot stall beside other busy processes
        else:
            fast_cuda()
        self._data_checksum = train.checksum()
        torch.manual_seed(cfg.seed)
        self.validation = None  # set again by _prepare: never the one of an earlier fit
        self._prepare(train)
        check_validation_patients(self, train.n_patients)
        self.modules = {k: m.to(self.device) for k, m in self._build().items()}
        self.optimizers = self._optimizers()
        self.schedulers = self._schedulers()
        self.history, self.stopping, self._best, start = [], [], None, 0
        self._phase, self._phase_start, self._waited = 0, 0, 0
        self._reference = self._check_reference()
        ckpt = options.checkpoint_dir / CHECKPOINT if options.checkpoint_dir is not None else None
        main = self._dist is None or self._dist.is_main
        if ckpt is not None and main:
            clean_stale_temporaries(ckpt.parent, CHECKPOINT)  # left by a killed fit
        distributed.barrier(self._dist)
        if ckpt is not None and options.resume and ckpt.is_file():
            start = self._restore(ckpt)
        distributed.barrier(self._dist)  # every rank has read the checkpoint before rank 0 replaces it
        self._ddp = self._wrap_ddp()
        phases = self.phases()
        total = cfg.epochs_total
        n_params = sum(p.numel() for m in self.modules.values() for p in m.parameters())
        log.info("%s: training on %s, %d patients, %s parameters, epochs %d..%d at most (%s)", self.name,
                 self.device, train.n_patients, f"{n_params:,}", start + 1, total,
                 ", ".join(f"{ph.name}: {ph.epochs}, {self._stop_rule(ph)}" for ph in phases))
        show = (cfg.progress if options.progress is None else bool(options.progress)) and main
        bar = tqdm(total=total, initial=start, desc=f"{self.name} ({self.device.type})", unit="epoch",
                   disable=not show, leave=False)
        seconds = self.history[-1].get("seconds", 0.0) if self.history else 0.0
        epoch = start
        while self._phase < len(phases):
            phase = phases[self._phase]
            if phase.epochs == 0:  # e.g. no autoencoder pretraining
                self._end_phase(phase, "cap", epoch)
                continue
            # the global RNG (dropout) gets its own stream per rank; the batch generator is shared
            torch.manual_seed(epoch_seed(cfg.seed, epoch) + (0 if self._dist is None else self._dist.rank))
            rng = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch) + 1)
            for m in self.modules.values():
                m.train()
            began = time.perf_counter()
            stats = {k: float(v) for k, v in self._train_epoch(epoch, rng).items()}
            stats = distributed.average_stats(self._dist, stats, self.device)
            seconds += time.perf_counter() - began
            in_phase = epoch + 1 - self._phase_start
            capped = in_phase >= phase.epochs
            if self._reference is not None and phase.checks and (capped or in_phase % cfg.check_every == 0):
                stats.update(self._fidelity_check())
            stats["epoch"], stats["seconds"] = epoch + 1, seconds
            self.history.append(stats)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items() if k not in ("epoch", "seconds")})
            patient = self._track_best(phase, stats)
            if capped or patient:
                self._end_phase(phase, "cap" if capped and not patient else "patience", epoch + 1)
            epoch += 1
            last = self._phase >= len(phases)
            if ckpt is not None and (epoch % cfg.checkpoint_every == 0 or last or capped or patient):
                if main:
                    self._checkpoint(ckpt, epoch)
                distributed.barrier(self._dist)
            if options.callback is not None:
                options.callback(epoch - 1, stats)
        bar.close()
        self._ddp = None
        for m in self.modules.values():
            m.eval()

    # ---------------------------------------------------------------- phases and stopping
    def phases(self) -> list[Phase]:
        """The fit's phases (one by default: ``epochs`` epochs, stopped on ``val_loss``; the
        pretrained GANs have an autoencoder phase and an adversarial one)."""
        return [Phase("train", self.config.epochs_total, "val_loss")]

    @property
    def phase_name(self) -> str:
        """The name of the phase being trained (for ``_train_epoch``)."""
        return self.phases()[min(self._phase, len(self.phases()) - 1)].name

    def _stop_rule(self, phase: Phase) -> str:
        if phase.criterion is None or self.config.patience == 0 or (
                phase.criterion == "fidelity" and self._reference is None):
            return "fixed epochs" + (", best val_loss kept" if phase.criterion == "val_loss" else "")
        unit = "epochs" if phase.criterion == "val_loss" else f"checks every {self.config.check_every} epochs"
        return f"stops on {phase.criterion} after {self.config.patience} {unit} without improvement"

    def _check_reference(self):
        """The validation patients' side of the fidelity check (``None`` when checks are off or no
        patient is held out)."""
        from ehrlib.models import fidelity

        val = getattr(self, "validation", None)
        if not self.config.check_every or val is None or val.n_patients == 0:
            return None
        return fidelity.Reference(val, self.vocab)

    def _fidelity_check(self) -> dict:
        """Draw a sample as large as the validation set (at most ``check_records``) with the fixed
        check seed and score it (:mod:`ehrlib.models.fidelity`); the training RNG is untouched."""
        from ehrlib.models import fidelity

        began = time.perf_counter()
        for m in self.modules.values():
            m.eval()
        n = min(self.config.check_records, self._reference.n)
        state = torch.random.get_rng_state()
        self.last_drawn = None
        try:
            sample = self._generate(n, fidelity.CHECK_SEED)
        except GeneratorError:  # (almost) nothing but empty records yet: scored as no record kept
            sample, drawn = None, n
        else:
            drawn = self.last_drawn or n
        finally:
            torch.random.set_rng_state(state)
        out = self._reference.score(sample, drawn)
        out["check_seconds"] = time.perf_counter() - began
        return out

    def _track_best(self, phase: Phase, stats: dict) -> bool:
        """Keep the phase's best modules by its criterion; True when patience is exhausted."""
        key = phase.criterion
        if key is None or key not in stats or not math.isfinite(stats[key]):
            return False
        score = stats[key] if key == "val_loss" else -stats[key]
        if self._best is None or score < self._best["score"] - self.config.min_delta * abs(self._best["score"]):
            self._best = {"score": score, "epoch": stats["epoch"], "criterion": key,
                          "modules": {k: copy.deepcopy({n: t.detach().cpu() for n, t in m.state_dict().items()})
                                      for k, m in self.modules.items()}}
            self._waited = 0
            return False
        self._waited += 1
        usable = key == "val_loss" or self._reference is not None
        return usable and self.config.patience > 0 and self._waited >= self.config.patience

    def _end_phase(self, phase: Phase, reason: str, epochs_done: int) -> None:
        """Restore the phase's best modules, record how it stopped, move to the next phase."""
        best = self._best
        if best is not None:
            for k, m in self.modules.items():
                m.load_state_dict(best["modules"][k])
        self.stopping.append({"phase": phase.name, "stopped_by": reason, "epochs": epochs_done - self._phase_start,
                              "cap": phase.epochs, "last_epoch": epochs_done,
                              "best_epoch": None if best is None else int(best["epoch"]),
                              "criterion": None if best is None else best["criterion"]})
        log.info("%s: %s phase ended by its %s after %d epochs%s", self.name, phase.name,
                 "epoch cap" if reason == "cap" else "patience", epochs_done - self._phase_start,
                 "" if best is None else f"; its epoch {int(best['epoch']) - self._phase_start} ({best['criterion']}) restored")
        self._best, self._waited = None, 0
        self._phase, self._phase_start = self._phase + 1, epochs_done

    # ---------------------------------------------------------------- distributed training
    def _check_world(self) -> None:
        """Under torchrun: every batch size must give each rank ``min_shard_rows`` rows."""
        if self._dist is None:
            return
        world = self._dist.world_size
        for name in self.batch_fields:
            size = getattr(self.config, name)
            if size < self.min_shard_rows * world:
                raise GeneratorError(f"{self.name}: {name}={size} cannot be split over {world} processes "
                                     f"(at least {self.min_shard_rows} rows each); use fewer processes or a "
                                     f"batch size >= {self.min_shard_rows * world}")

    def _wrap_ddp(self):
        """One ``DistributedDataParallel`` over all modules (``None`` for a single process)."""
        if self._dist is None:
            return None
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # find_unused_parameters: each step trains some of the modules (autoencoder, critic, ...).
        # broadcast_buffers=False: ranks may run different numbers of forward passes per step
        # (GPT's chunks); buffers (BatchNorm statistics) are rank 0's when it saves.
        import inspect

        sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                else "broadcast_buffers")
        return DistributedDataParallel(_Call(torch.nn.ModuleDict(self.modules)), device_ids=ids,
                                       find_unused_parameters=True, **{sync: False})

    def uses_bf16(self, device=None) -> bool:
        """Whether training on ``device`` (default: the config's) runs its losses under bf16 autocast."""
        p = self.config.precision
        if p == "fp32" or not self.allows_bf16:
            return False
        if p == "bf16":
            return True
        device = device if device is not None else (self.device or pick_device(self.config.device))
        return device.type == "cuda" and torch.cuda.is_bf16_supported()

    def _autocast(self):
        """bf16 autocast on the training device when :meth:`uses_bf16`, else a no-op context."""
        import contextlib

        if not self._bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _synced(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` (a training loss) under the training precision, run through the
        DDP wrapper so that its backward pass averages the gradients over ranks (a plain call for
        a single process)."""
        with self._autocast():
            if self._ddp is None:
                return fn(*args, **kwargs)
            return self._ddp(fn, *args, **kwargs)

    def _no_sync(self, skip: bool):
        """A context in which backward passes accumulate gradients without averaging them over
        ranks (gradient accumulation) when ``skip``; otherwise (or for one process) a no-op."""
        import contextlib

        return self._ddp.no_sync() if (skip and self._ddp is not None) else contextlib.nullcontext()

    def _steps(self, items):
        """An epoch's steps (batches) as given, or as the :attr:`step_probe` limits and times them."""
        return items if self.step_probe is None else self.step_probe.run(items, self.device)

    def _part(self, rows):
        """This rank's rows of a global batch (or of a tensor of per-row draws): ``rows[rank::world]``."""
        return distributed.shard(self._dist, rows)

    def _keeps(self, rows, minimum: int = 1) -> bool:
        """True if the global batch gives every rank at least ``minimum`` rows (``len >= minimum`` alone)."""
        return distributed.keeps(self._dist, rows, minimum)

    @property
    def world_size(self) -> int:
        return 1 if self._dist is None else self._dist.world_size

    def save(self, directory) -> Path:
        """As :meth:`Generator.save`; in distributed training rank 0 alone writes, the others wait."""
        ctx = self._dist if self._dist is not None and distributed.current() is not None else None
        if ctx is None or ctx.is_main:
            out = super().save(directory)
        else:
            out = Path(directory)
        distributed.barrier(ctx)
        return out

    def _checkpoint(self, path: Path, epochs_done: int) -> None:
        state = {
            "name": self.name,
            "config": asdict(self.config),
            "data": self._data_checksum,
            "epochs_done": epochs_done,
            "phase": [self._phase, self._phase_start, self._waited],
            "stopping": self.stopping,
            "world_size": self.world_size,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "history": self.history,
            "best": self._best,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    def _restore(self, path: Path) -> int:
        """Load a checkpoint written by ``_checkpoint``; returns the number of epochs done."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # a truncated or foreign file (torch's own hint is not passed on)
            raise GeneratorError(f"{path}: not a readable checkpoint ({type(e).__name__}); remove it or fit with "
                                 "resume=False") from None
        if not isinstance(state, dict) or state.get("name") != self.name \
                or training_config(state.get("config")) != training_config(self.config):
            raise GeneratorError(f"{path}: written by {state.get('name')!r} with another config; "
                                 "remove it or fit with resume=False")
        if state.get("data") != self._data_checksum:
            raise GeneratorError(f"{path}: written while training on other data (checksum differs); "
                                 "remove it or fit with resume=False")
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.history = list(state["history"])
        self._best = state["best"]
        self._phase, self._phase_start, self._waited = (int(v) for v in state["phase"])
        self.stopping = list(state["stopping"])
        done = int(state["epochs_done"])
        log.info("%s: resumed from %s after epoch %d", self.name, path, done)
        return done

    # ---------------------------------------------------------------- save / load
    def _save_state(self, d: Path) -> None:
        """Weights (one safetensors file per module) and ``state.json`` into ``d``, the new
        folder of an all-or-nothing save (``Generator.save``)."""
        from safetensors.torch import save_model

        for k, m in self.modules.items():
            save_model(m, str(d / f"{k}.safetensors"))
        state = {"extra": self._extra_state(), "history": self.history, "stopping": self.stopping}
        (d / "state.json").write_text(json.dumps(state))

    def _load_state(self, d: Path) -> None:
        from safetensors.torch import load_model

        with reading(d, "state.json") as path:
            state = json.loads(path.read_text())
            self._set_extra_state(state["extra"])
            self.history = state.get("history", [])
            self.stopping = state.get("stopping", [])
        self.device = pick_device(self.config.device)
        with reading(d, "state.json", "the networks' sizes"):
            self.modules = self._build()
        for k, m in self.modules.items():
            with reading(d, f"{k}.safetensors", f"the {k} weights"):
                load_model(m, str(d / f"{k}.safetensors"), device="cpu")
            m.to(self.device).eval()

    # ---------------------------------------------------------------- for subclasses
    def _prepare(self, train: Cohort) -> None:
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _set_extra_state(self, state: dict) -> None:
        pass

    def _build(self) -> dict:
        raise NotImplementedError

    def _optimizers(self) -> dict:
        raise NotImplementedError

    def _schedulers(self) -> dict:
        return {}

    def _train_epoch(self, epoch: int, rng) -> dict:
        raise NotImplementedError


def draw_nonempty(n: int, sample, keep, *, generator, batch_size: int, rounds: int, name: str):
    """``n`` records from ``sample(k, generator)`` with the empty ones redrawn.

    A record with no code is not a record of the schema, so every neural generator rejects it and
    draws again, in further batches from the same seeded ``generator`` (so the result depends
    only on the seed). After ``rounds`` rounds a :class:`GeneratorError` says the model emits
    (almost) only empty records. The rejection rate is logged at INFO.

    Args:
        sample: ``sample(k, generator)`` -> ``k`` records (a numpy array, rows are records, or a list).
        keep: ``keep(records)`` -> boolean numpy array, True for the records with a code.

    Returns:
        ``(records, drawn)``: the first ``n`` kept records (array or list, as ``sample`` returns)
        and how many were drawn in all.
    """
    import numpy as np

    parts, have, drawn = [], 0, 0
    for _ in range(int(rounds)):
        need = n - have
        for start in range(0, need, batch_size):
            batch = sample(min(batch_size, need - start), generator)
            ok = np.flatnonzero(np.asarray(keep(batch), dtype=bool))
            drawn += len(batch)
            parts.append(batch[ok] if isinstance(batch, np.ndarray) else [batch[i] for i in ok])
            have += len(ok)
        if have >= n:
            break
    else:
        raise GeneratorError(f"{name}: only {have} of {drawn} generated records hold any code after {rounds} "
                             "rounds of redrawing; the model emits empty records (train longer?)")
    log.info("%s: generated %d records, %d drawn (%.2f%% had no code and were redrawn)",
             name, n, drawn, 100.0 * (drawn - have) / drawn)
    records = np.concatenate(parts, axis=0) if isinstance(parts[0], np.ndarray) else [r for p in parts for r in p]
    return records[:n], drawn


GPT2_ACTIVATION = "gelu_pytorch_tanh"
"""GPT-2's activation for every GPT-2 network here (GPT baseline, HALO's coarse model): GPT-2's own
tanh approximation of GELU (``gelu_new``, the Hugging Face default), computed by PyTorch's fused
``gelu(approximate="tanh")`` instead of ``gelu_new``'s chain of Python-level tensor operations (the
same function to float rounding: a faster step, not another model; the book's methods page)."""


def transformers_module(*names: str):
    """Classes of ``transformers`` by name, imported without tqdm's "IProgress not found" warning.

    ``transformers`` imports ``tqdm.auto``, which warns in a notebook without ipywidgets (every
    executed notebook of the book would show it); our own progress bars are plain tqdm.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import transformers

        return tuple(getattr(transformers, name) for name in names)


def filter_logits(logits, top_k: int = 0, top_p: float = 1.0):
    """Logits with everything outside the top-k and the top-p nucleus set to ``-inf``.

    Top-k keeps the ``k`` largest logits (ties with the k-th kept; 0: off); top-p then keeps the
    smallest set of most likely tokens whose probability reaches ``top_p`` (always at least one).
    The one top-k/top-p filter of every sampling model (GPT, PromptEHR).
    """
    out = logits.clone()
    if top_k and top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly more likely tokens
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def optimizer_step(optimizer, loss, *, clip_norm: float = 0.0, parameters=None, set_to_none: bool = True,
                   sync: bool = True):
    """One optimiser step on ``loss``: zero the gradients, backpropagate, optionally clip the
    gradient norm of ``parameters`` at ``clip_norm`` (0: off), step; returns ``loss.item()``
    (``sync=False``: the detached loss tensor, so a GPU step waits for no host copy)."""
    optimizer.zero_grad(set_to_none=set_to_none)
    loss.backward()
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
    optimizer.step()
    return loss.item() if sync else loss.detach()


class Running:
    """A weighted sum of step losses kept on the loss's device (no host copy per step); read it
    once at epoch end with :meth:`value`. Summed in float64: equal to summing ``loss.item()``."""

    def __init__(self):
        self.total = None

    def add(self, loss, weight=1) -> None:
        v = loss.detach().double() * weight
        self.total = v if self.total is None else self.total + v

    def value(self) -> float:
        return 0.0 if self.total is None else float(self.total)


def batches(n: int, batch_size: int, rng, shuffle: bool = True):
    """Index tensors of consecutive minibatches over ``range(n)`` (a permutation drawn from ``rng``)."""
    order = torch.randperm(n, generator=rng) if shuffle else torch.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def to_device(tensor, device):
    """``tensor`` (on the CPU) on ``device``: through pinned memory without blocking on CUDA."""
    if device is None:
        return tensor
    if torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def sparse_rows_to_dense(matrix, rows, device):
    """Rows of a scipy CSR matrix as a dense float tensor on ``device`` (pinned copy on CUDA)."""
    sub = matrix[rows.numpy() if hasattr(rows, "numpy") else rows]
    return to_device(torch.as_tensor(sub.toarray(), dtype=torch.float32), device)


#: Largest records matrix (bytes as float32) that :class:`Rows` keeps dense in memory.
DENSE_LIMIT = 1 << 29


class Rows:
    """The rows of a flat records matrix (scipy CSR), handed out as dense float tensors.

    A matrix of at most :data:`DENSE_LIMIT` bytes as float32 (the demo's 3,600 x 3,000 is 43 MB)
    is made dense once, so a training step indexes a tensor instead of slicing and densifying
    CSR rows; a larger one (the paper's 46k x 7k is 1.3 GB) is densified batch by batch. Both
    give the same values.
    """

    def __init__(self, matrix):
        self.matrix = matrix
        self.n, self.width = matrix.shape
        self._dense = (torch.as_tensor(matrix.toarray(), dtype=torch.float32)
                       if self.n * self.width * 4 <= DENSE_LIMIT else None)

    @property
    def shape(self):
        return self.matrix.shape

    def dense(self, rows, device):
        """Rows ``rows`` (an index tensor) as a dense float32 tensor on ``device``."""
        if self._dense is None:
            return sparse_rows_to_dense(self.matrix, rows, device)
        return to_device(self._dense[rows], device)


def check_stopping(config: TorchConfig, where: str) -> None:
    """A stopping criterion that cannot run is a :class:`ConfigError` at construction: ``patience``
    stops on ``val_loss`` or the fidelity check, both measured on the validation patients, so it
    needs a validation share (``val_fraction`` > 0)."""
    if config.patience > 0 and config.val_fraction <= 0:
        raise ConfigError(f"{where}: patience={config.patience} with val_fraction={config.val_fraction}: patience "
                          "stops on val_loss or the fidelity check of the validation patients, and val_fraction=0 "
                          "holds none out; set val_fraction (e.g. 0.1) or patience=0 (fixed epochs)")


def check_validation_patients(gen, n_train: int) -> None:
    """At fit: ``patience`` with a validation share that holds nobody out of ``n_train`` patients is
    a :class:`ConfigError` naming both fields (training would run the fixed epochs instead)."""
    cfg = gen.config
    if cfg.patience <= 0:
        return
    val = getattr(gen, "validation", None)
    n_val = val.n_patients if val is not None else None
    if n_train < 2 or n_val == 0:
        raise ConfigError(f"{gen.name}: patience={cfg.patience} with val_fraction={cfg.val_fraction} of {n_train} "
                          "training patient(s) holds nobody out, so there is no val_loss to stop on; train on more "
                          "patients, raise val_fraction, or set patience=0 (fixed epochs)")


def validation_split(n: int, fraction: float, seed: int):
    """``(train_idx, val_idx)``: a seeded ``fraction`` of ``range(n)`` held out (at least one row
    when ``fraction`` > 0 and ``n`` > 1; none when ``fraction`` is 0), both sorted."""
    import numpy as np

    n_val = 0 if fraction <= 0 or n < 2 else min(max(int(round(fraction * n)), 1), n - 1)
    perm = np.random.default_rng([int(seed), 4_242]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def training_log(directory) -> dict:
    """``{"history": [...], "stopping": [...]}`` of a neural model saved in ``directory`` (read from
    its ``state.json``, without loading the weights): its learning curve and how each phase ended."""
    with reading(Path(directory), "state.json") as path:
        state = json.loads(path.read_text())
    return {"history": list(state.get("history", [])), "stopping": list(state.get("stopping", []))}
