"""Multi-process training with PyTorch's ``DistributedDataParallel`` (DDP) under ``torchrun``.

Every neural generator's ``fit`` runs unchanged under ``torchrun --nproc_per_node N`` (and
``--nnodes M`` with a rendezvous endpoint): :class:`~ehrlib.models.neural.TorchGenerator` sees
the ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` variables torchrun sets, joins the process group
(``gloo`` on CPU, ``nccl`` on CUDA; one GPU per process, ``cuda:LOCAL_RANK``) and trains with
one DDP wrapper around all its networks. Process management is torchrun's; nothing here forks.

The batch rule (what stays the same as one process):

* Every rank draws the same global batches from the same seeded epoch generator as a single
  process does, and takes every ``WORLD_SIZE``-th row of each (``rows[rank::world]``): the
  per-rank batch is the preset's batch divided by the world size, so the effective (global)
  batch and the learning rate are the preset's, unchanged. Per-row random draws (GAN noise,
  interpolation weights) are drawn for the whole global batch and sharded the same way.
* DDP averages the gradients over ranks. The GPT loss is scaled so that the averaged gradient is
  exactly the single-process one (token sum over the global batch's token count); the other
  models average per-rank means (equal to the global mean when the shards are equal in size).
* A global batch too small to give every rank its minimum (1 row; 2 for models with BatchNorm)
  is skipped on every rank (the single-process run keeps the same condition with world size 1).
* Known differences from one process (so a multi-process run is deterministic for a given world
  size, not equal to the single-process run): BatchNorm statistics and MedGAN's minibatch
  averaging are per rank (per-rank batch); dropout masks, PromptEHR's corruption and its code
  shuffling draw from per-rank generators (seeded from the epoch seed and the rank);
  floating-point sums are reduced in another order.
* Epoch statistics are averaged over ranks at epoch end (one ``all_reduce`` per epoch), so
  every rank keeps the same history and takes the same early-stopping decision.
* Rank 0 alone writes checkpoints and the saved model; the other ranks wait at a barrier.
  Every rank reads the checkpoint when resuming, so ``checkpoint_dir`` must be on a filesystem
  every node sees.

:func:`launch_fit` starts ``python -m torch.distributed.run`` on the
``python -m ehrlib.models.train`` entry point (the training stage of a run).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ehrlib.errors import ConfigError, GeneratorError, RunError

log = logging.getLogger("ehrlib.models")

#: The environment variables torchrun sets in every worker process.
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """One process's place in a distributed run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_env(environ=None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from the torchrun variables, or ``None`` outside torchrun
    (or with a world of one process). A partial or malformed set is a :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    present = [v for v in TORCHRUN_VARS if v in environ]
    if not present:
        return None
    if len(present) != len(TORCHRUN_VARS):
        missing = [v for v in TORCHRUN_VARS if v not in environ]
        raise ConfigError(f"distributed training: {present} set but {missing} missing; launch with torchrun "
                          "(python -m torch.distributed.run), which sets all of them")
    try:
        rank, world, local = (int(environ[v]) for v in TORCHRUN_VARS)
    except ValueError:
        raise ConfigError("distributed training: " + ", ".join(f"{v}={environ[v]!r}" for v in TORCHRUN_VARS)
                          + "; expected integers") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"distributed training: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}; expected "
                          "0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0")
    return None if world == 1 else (rank, world, local)


def current() -> DistContext | None:
    """The process group this process already belongs to (world size > 1), else ``None``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    local = int(os.environ.get("LOCAL_RANK", 0))
    return DistContext(dist.get_rank(), dist.get_world_size(), local, str(dist.get_backend()))


def setup(device):
    """Join (or reuse) the process group when running under torchrun.

    Args:
        device: the device the config picked (``torch.device``); on CUDA it becomes
            ``cuda:LOCAL_RANK`` (one GPU per process).

    Returns:
        ``(context, device)``: ``context`` is ``None`` for a single process.
    """
    import torch
    import torch.distributed as dist

    ctx = current()
    if ctx is None:
        found = torchrun_env()
        if found is None:
            return None, device
        if not dist.is_available():
            raise GeneratorError("distributed training: this torch build has no torch.distributed")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            _check_local_rank(found[2])
            local = torch.device("cuda", found[2])
            torch.cuda.set_device(local)
            dist.init_process_group(backend=backend, device_id=local)  # env:// rendezvous set up by torchrun
        else:
            dist.init_process_group(backend=backend)
        ctx = current()
        log.info("distributed: rank %d of %d (local rank %d), backend %s", ctx.rank, ctx.world_size,
                 ctx.local_rank, backend)
    if device.type == "cuda":
        _check_local_rank(ctx.local_rank)
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    return ctx, device


def _check_local_rank(local_rank: int) -> None:
    import torch

    if local_rank >= torch.cuda.device_count():
        raise GeneratorError(f"distributed training: LOCAL_RANK={local_rank} but this node has "
                             f"{torch.cuda.device_count()} CUDA device(s); use --nproc_per_node <= that count "
                             "(one process per GPU)")


def barrier(ctx: DistContext | None) -> None:
    """Wait for every rank (no-op for a single process)."""
    if ctx is not None:
        import torch.distributed as dist

        dist.barrier()


def average_stats(ctx: DistContext | None, stats: dict, device) -> dict:
    """Each float of ``stats`` averaged over ranks (one ``all_reduce``); the keys must match on every rank."""
    if ctx is None or not stats:
        return stats
    import torch
    import torch.distributed as dist

    keys = sorted(stats)
    t = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= ctx.world_size
    return dict(zip(keys, t.cpu().tolist()))


def shard(ctx: DistContext | None, rows):
    """This rank's part of a global batch: every ``world_size``-th item from ``rank`` (identity for one process)."""
    return rows if ctx is None else rows[ctx.rank::ctx.world_size]


def keeps(ctx: DistContext | None, rows, minimum: int = 1) -> bool:
    """True if the global batch ``rows`` gives every rank at least ``minimum`` rows."""
    return len(rows) >= minimum * (1 if ctx is None else ctx.world_size)


def train_command(model: str, train_path, out_dir, profile: str, *, nproc: int = 1, nnodes: int | str = 1,
                  rdzv_endpoint: str | None = None, rdzv_id: str | None = None, node_rank: int | None = None,
                  checkpoint_dir=None, overrides: dict | None = None, resume: bool = True,
                  epochs_per_launch: int | None = None) -> list[str]:
    """The ``torchrun`` command line (a list of arguments) that trains ``model`` with
    ``python -m ehrlib.models.train``; see :func:`launch_fit`."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"launch_fit: nproc={nproc!r}; expected a positive integer (processes per node)")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}"]
    if rdzv_endpoint:
        cmd += ["--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}", f"--rdzv_id={rdzv_id or 'ehrlib'}"]
    elif str(nnodes) == "1":
        cmd += ["--standalone"]
    else:
        raise ConfigError(f"launch_fit: nnodes={nnodes!r} needs rdzv_endpoint='host:port' (a node every node "
                          "reaches)")
    if node_rank is not None:
        cmd += [f"--node_rank={node_rank}"]
    cmd += ["-m", "ehrlib.models.train", "--model", model, "--train", str(train_path), "--out", str(out_dir),
            "--profile", profile]
    if checkpoint_dir is not None:
        cmd += ["--checkpoint-dir", str(checkpoint_dir)]
    if not resume:
        cmd += ["--no-resume"]
    if epochs_per_launch is not None:
        cmd += ["--epochs-per-launch", str(int(epochs_per_launch))]
    for key, value in (overrides or {}).items():
        import json

        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd


def launch_fit(model: str, train_path, out_dir, profile: str = "demo", nproc: int = 1, *, nnodes: int | str = 1,
               rdzv_endpoint: str | None = None, rdzv_id: str | None = None, node_rank: int | None = None,
               checkpoint_dir=None, overrides: dict | None = None, resume: bool = True,
               epochs_per_launch: int | None = None, env: dict | None = None, timeout: float | None = None,
               stream: bool = False) -> Path:
    """Train ``model`` on the cohort at ``train_path`` with ``nproc`` processes (torchrun) and save it to ``out_dir``.

    Runs ``python -m torch.distributed.run ... -m ehrlib.models.train`` as a subprocess and waits;
    rank 0 saves the model into ``out_dir`` (all-or-nothing) and checkpoints into
    ``checkpoint_dir`` (default: ``out_dir/checkpoints``), so a launch after an interruption
    resumes from the last checkpoint.

    Args:
        model: a neural model name (``medgan``, ``corgan``, ``promptehr``, ``halo``, ``gpt``).
        train_path: the training cohort as written by ``Cohort.save`` (a parquet file or folder
            that ``Cohort.load`` reads).
        out_dir: where the trained model is saved.
        profile: the preset (``smoke``, ``demo``, ``paper``).
        nproc: processes on this node (one per GPU on CUDA machines).
        nnodes, rdzv_endpoint, rdzv_id, node_rank: for several machines: every node runs the
            same launch with the same ``rdzv_endpoint`` (``host:port`` of one node).
        overrides: config field overrides (e.g. ``{"epochs": 2}``; ``{"medgan.gan_epochs": 2}``
            for one model when ``model`` names several, ``"medgan,gpt"``).
        epochs_per_launch: train at most this many epochs and return with the checkpoint in
            place and no model saved (for wall-time-limited jobs: launch again to continue).
        env: extra environment variables for the workers.
        timeout: seconds before the launch is killed (``None``: no limit).
        stream: pass the workers' output (one JSON line of statistics per epoch, logs) through to
            this process's stdout/stderr as it comes, instead of capturing it for the error message.

    Returns:
        ``out_dir``. A failed launch is a :class:`RunError` with the tail of its output.
    """
    cmd = train_command(model, train_path, out_dir, profile, nproc=nproc, nnodes=nnodes,
                        rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id, node_rank=node_rank,
                        checkpoint_dir=checkpoint_dir, overrides=overrides, resume=resume,
                        epochs_per_launch=epochs_per_launch)
    full_env = {**os.environ, **(env or {})}
    root = str(Path(__file__).resolve().parents[2])  # the workers import this ehrlib
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, full_env.get("PYTHONPATH")) if p)
    log.info("launching: %s", " ".join(cmd))
    try:
        done = subprocess.run(cmd, env=full_env, capture_output=not stream, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunError(f"launch_fit({model!r}): torchrun did not finish within {timeout} s") from None
    if done.returncode != 0:
        tail = "(see the output above)" if stream else (done.stdout + done.stderr)[-3000:]
        raise RunError(f"launch_fit({model!r}): torchrun exited with status {done.returncode}:\n{tail}")
    return Path(out_dir)
