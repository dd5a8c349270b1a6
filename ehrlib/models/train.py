"""The training stage as a command: ``python -m ehrlib.models.train`` (one process, or every
worker of ``torchrun``).

Example (two processes on one machine; see :mod:`ehrlib.models.distributed`)::

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m ehrlib.models.train \\
        --model halo --train runs/x/data/train.parquet --out runs/x/models/halo --profile paper

The model is trained and saved as ``ehrlib.models.fit_or_load`` does it: checkpointed after every
epoch (``checkpoint_every``) into ``--checkpoint-dir`` (default ``OUT/checkpoints/<training key
hash>``), then saved into ``--out`` with its training key (rank 0 writes; the others wait), so a
pipeline stage calling ``fit_or_load`` with the same model, profile, overrides and data loads it
instead of training again. A model already up to date in ``--out`` is not retrained (unless
``--no-resume``). Running the same command again after an interruption resumes from the last
checkpoint.
``--epochs-per-launch K`` trains at most K epochs and exits with the checkpoint in place (for
jobs with a wall-time limit: launch again to continue). Several models (``--model a,b``) train
one after the other in the same launch, each saved into ``OUT/<name>``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ehrlib.errors import ConfigError, EhrlibError

log = logging.getLogger("ehrlib.models")


class _EpochBudget(Exception):
    """Raised by the epoch callback when ``--epochs-per-launch`` epochs are done."""


def _overrides(items) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE (VALUE in JSON, e.g. epochs=2 or lr=0.001)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string, e.g. device=cpu
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ehrlib.models.train", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="medgan, corgan, promptehr, halo or gpt (or several, a,b)")
    p.add_argument("--train", required=True, help="the training cohort (as written by Cohort.save)")
    p.add_argument("--out", required=True, help="the folder the trained model is saved into")
    p.add_argument("--profile", default="demo", help="smoke, demo or paper (default: demo)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="default: OUT/checkpoints/<training key hash>, as ehrlib.models.fit_or_load")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    p.add_argument("--epochs-per-launch", type=int, default=None,
                   help="train at most this many epochs, then exit leaving the checkpoint (launch again to go on)")
    p.add_argument("--set", action="append", metavar="[MODEL.]FIELD=VALUE",
                   help="a config override, for every model or for MODEL only (repeatable)")
    return p


def train_one(name: str, train, out: Path, profile: str, checkpoint_dir: Path | None, resume: bool,
              overrides: dict, epochs_per_launch: int | None) -> bool:
    """Fit and save one model as ``ehrlib.models.fit_or_load`` does (same training key, same
    checkpoint folder: a later ``fit_or_load`` with the same arguments loads this model); False
    if ``epochs_per_launch`` stopped it before the end."""
    from ehrlib import models

    mine = {k: v for k, v in overrides.items() if "." not in k}
    mine.update({k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith(name + ".")})
    gen = models.get(name, profile, **{"progress": False, **mine})
    key = gen.training_key(train)
    if resume and models.up_to_date(out, key):
        print(f"{name}: up to date in {out} (same training key); nothing to do", flush=True)
        return True
    models.check_replaceable(out)
    checkpoint_dir = checkpoint_dir if checkpoint_dir is not None else models.checkpoint_folder(out, key)
    done = {"n": 0}

    def callback(epoch, stats):
        from ehrlib.models import distributed

        ctx = distributed.current()
        if ctx is None or ctx.is_main:
            print(json.dumps({"model": name, **stats}), flush=True)
        done["n"] += 1
        if epochs_per_launch is not None and done["n"] >= epochs_per_launch and epoch + 1 < gen.config.epochs_total:
            raise _EpochBudget(epoch + 1)

    try:
        gen.fit(train, checkpoint_dir=checkpoint_dir, resume=resume, callback=callback)
    except _EpochBudget as stop:
        print(f"{name}: stopped after epoch {stop.args[0]} of {gen.config.epochs_total} (--epochs-per-launch); "
              f"the checkpoint is in {checkpoint_dir}: launch again to resume", flush=True)
        return False
    models.save_trained(out, gen, key)
    return True


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parser().parse_args(argv)
    from ehrlib.cohort import Cohort
    from ehrlib.models import NEURAL, distributed

    names = [n.strip() for n in args.model.split(",") if n.strip()]
    try:
        unknown = [n for n in names if n not in NEURAL]
        if unknown or not names:
            raise ConfigError(f"--model {args.model!r}: expected neural model names from {list(NEURAL)}")
        if args.epochs_per_launch is not None and args.epochs_per_launch < 1:
            raise ConfigError(f"--epochs-per-launch {args.epochs_per_launch}; expected a positive integer")
        overrides = _overrides(args.set)
        train = Cohort.load(args.train)
        out = Path(args.out)
        finished = True
        for name in names:
            target = out if len(names) == 1 else out / name
            ckpt = Path(args.checkpoint_dir) if args.checkpoint_dir else None
            if len(names) > 1 and ckpt is not None:
                ckpt = ckpt / name
            finished &= train_one(name, train, target, args.profile, ckpt, not args.no_resume, overrides,
                                  args.epochs_per_launch)
    except EhrlibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    ctx_note = "" if finished else " (not finished: launch again to resume)"
    print(f"done{ctx_note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
