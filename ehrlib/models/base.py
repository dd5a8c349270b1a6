"""The one interface every generator implements.

* ``fit(train, *, checkpoint_dir=None, resume=True, progress=None, callback=None)``: every
  generator accepts every option (the reference generators ignore what they do not use);
* ``training_key(train)``: what makes two trainings the same (a JSON-normal dict);
* ``generate(n, seed)``: a validated Cohort whose subjects get synthetic ids that never equal a
  training subject id (``SYNTH_000001``..., or another prefix when the training data uses it);
  ``seed`` follows one rule for every generator (:func:`check_seed`): an integer from 0 to
  :data:`MAX_SEED` (``2**63 - 1``, what numpy, torch and a JSON/parquet integer all hold), any
  other value a :class:`~ehrlib.errors.GeneratorError` naming it;
* ``save(directory)`` / ``from_saved(directory, meta)`` (``ehrlib.models.load``).

A save is all-or-nothing: the files are written into a new folder beside the target, with
``generator.json`` (name, config, the sha256 of every file) written last, and the new folder is
then renamed into place. An interrupted or concurrent save leaves either the old model or a new
one, never a mix; loading checks every file against ``generator.json``.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, ClassVar

from ehrlib.cohort import MAX_SEED, SYNTHETIC_PREFIX, Cohort, CohortError
from ehrlib.errors import ConfigError, GeneratorError, ModelLoadError
from ehrlib.io import blocking_file, process_alive, sha256_file

log = logging.getLogger("ehrlib.models")

META = "generator.json"
#: Version of the saved-folder layout (``generator.json`` with a ``files`` manifest).
SAVE_FORMAT = 2
#: Generated subject-id prefixes tried in order; the first no training subject id starts with wins.
SYNTHETIC_PREFIXES = (SYNTHETIC_PREFIX, "SYNTHETIC_", "EHRLIB_SYN_", "EHRLIB_SYNTHETIC_")
#: ``generate(n)`` refuses ``n`` above this (a bound on memory and time, not a model property).
MAX_GENERATE = 10_000_000


@dataclass(frozen=True)
class Config:
    """Base of every model's typed configuration."""


@dataclass(frozen=True)
class FitOptions:
    """The keyword options of :meth:`Generator.fit`, handed to ``_fit`` as one value."""

    checkpoint_dir: Path | None = None
    resume: bool = True
    progress: bool | None = None
    callback: Callable[[int, dict], None] | None = None


def check_count(owner: str, what: str, value, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``minimum``; else GeneratorError."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise GeneratorError(f"{owner}: {what}={value!r}; expected {expected}")
    return int(value)


def check_seed(owner: str, seed, *, label: str | None = None) -> int:
    """The one seed rule of every generator (``generate(n, seed)`` and the config's ``seed``): ``seed``
    as an int if it is an integer (not a bool) from 0 to :data:`~ehrlib.cohort.MAX_SEED`
    (``2**63 - 1``, the bound of :func:`ehrlib.cohort.check_seed` too); else
    :class:`~ehrlib.errors.GeneratorError` naming ``owner`` (or ``label``, e.g. ``"HALOConfig.seed"``)
    and the value.

    numpy alone would take any non-negative integer, but torch's generators stop at 64 bits; one
    bound for all keeps a seed that works for one model working for every other.
    """
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise GeneratorError(f"{label or owner + ': seed'}={seed!r}; expected an integer >= 0 and <= 2**63 - 1 "
                             f"({MAX_SEED})")
    return int(seed)


def synthetic_prefix(train_ids) -> str:
    """The first of :data:`SYNTHETIC_PREFIXES` that no id in ``train_ids`` starts with."""
    ids = [str(s) for s in train_ids]
    for prefix in SYNTHETIC_PREFIXES:
        if not any(s.startswith(prefix) for s in ids):
            return prefix
    raise GeneratorError(f"every synthetic id prefix {list(SYNTHETIC_PREFIXES)} is used by a training subject id; "
                         "rename the training subjects")


class Generator(ABC):
    """A synthetic-EHR generator."""

    name: str = "generator"
    config_class: ClassVar[type[Config]] = Config
    #: True for generators whose saved folder holds real patient records with their real ids.
    holds_real_records: ClassVar[bool] = False
    config: Config

    def __init__(self, config: Config | None = None):
        self.config = config if config is not None else type(self).default_config()
        self.fitted = False
        self.id_prefix = SYNTHETIC_PREFIX

    @classmethod
    def default_config(cls) -> Config:
        return cls.config_class()

    @classmethod
    def config_from_dict(cls, values: dict, where: str = "config") -> Config:
        """The typed config from saved JSON values: an unknown field is a :class:`ConfigError`; a field
        missing from ``values`` (added to the class since) takes its default."""
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: expected an object of config fields, got {type(values).__name__}")
        known = {f.name for f in fields(cls.config_class)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown {cls.config_class.__name__} field(s) {unknown}; "
                              f"expected some of {sorted(known)}")
        return cls.config_class(**values)

    # ---------------------------------------------------------------- public API
    def fit(self, train: Cohort, *, checkpoint_dir=None, resume: bool = True, progress: bool | None = None,
            callback: Callable[[int, dict], None] | None = None) -> "Generator":
        """Fit on the training cohort; returns ``self``.

        Args:
            train: the training cohort.
            checkpoint_dir: neural models checkpoint here while training (``None``: in memory only).
            resume: continue from a checkpoint in ``checkpoint_dir`` when there is one.
            progress: show a progress bar (``None``: the config's choice).
            callback: ``callback(epoch, stats)`` after each epoch.

        The reference generators have no epochs and ignore the last four options.
        """
        if not isinstance(train, Cohort):
            raise GeneratorError(f"{self.name}: fit(train) expects a Cohort, got {type(train).__name__}")
        if train.n_patients == 0:
            raise CohortError(f"{self.name}: cannot fit on an empty cohort")
        options = FitOptions(Path(checkpoint_dir) if checkpoint_dir is not None else None, bool(resume), progress,
                             callback)
        self._fit(train, options)
        self.id_prefix = synthetic_prefix(train.subject_ids)
        self.fitted = True
        return self

    def training_key(self, train: Cohort) -> dict:
        """What makes two trainings the same: model name, training config and training data.

        ``fit_or_load`` reuses a saved model whose key equals this one.
        """
        return {"name": self.name, "config": self.training_config(), "data": train.checksum()}

    def training_config(self) -> dict:
        """The config as JSON-normal data, without fields that do not change what training computes."""
        return json.loads(json.dumps(asdict(self.config)))

    def generate(self, n: int, seed: int = 0) -> Cohort:
        """``n`` synthetic patients (fewer only if the generator emits empty records), deterministic by seed."""
        n = check_count(self.name, "n", n)
        seed = check_seed(self.name, seed)
        if n > MAX_GENERATE:
            raise GeneratorError(f"{self.name}: n={n:,} is above the limit of {MAX_GENERATE:,} records per call; "
                                 "generate in several calls with different seeds")
        if not self.fitted:
            raise GeneratorError(f"{self.name}: call fit(train) before generate()")
        self._check_generate(n)
        cohort = self._generate(n, seed)
        return cohort.renamed(self.id_prefix).validate()

    def save(self, directory) -> Path:
        """Write the model into ``directory`` all-or-nothing (see the module docstring); returns it.

        An existing ``directory`` is replaced only if it is empty or a saved generator.
        """
        return write_model_folder(directory, self, extra={})

    @classmethod
    def from_saved(cls, directory: Path, meta: dict) -> "Generator":
        """The generator saved in ``directory`` (``meta``: its checked ``generator.json``)."""
        d = Path(directory)
        try:
            config = cls.config_from_dict(meta.get("config"), where=f"{d / META}: 'config'")
        except ConfigError as e:
            raise ModelLoadError(f"{e}; the config class changed since this model was saved: retrain it") from None
        except GeneratorError as e:  # a field of the right name with a now-invalid value
            raise ModelLoadError(f"{d / META}: 'config': {e}") from None
        gen = cls(config)
        gen._load_state(d)
        gen.fitted = bool(meta.get("fitted", True))
        gen.id_prefix = meta.get("id_prefix", SYNTHETIC_PREFIX)
        return gen

    # ---------------------------------------------------------------- for subclasses
    @abstractmethod
    def _fit(self, train: Cohort, options: FitOptions) -> None: ...

    @abstractmethod
    def _generate(self, n: int, seed: int) -> Cohort: ...

    def _check_generate(self, n: int) -> None:
        """Refuse sizes this generator cannot serve (before any work)."""

    def _save_state(self, directory: Path) -> None: ...

    def _load_state(self, directory: Path) -> None: ...


# -------------------------------------------------------------------- model folders
def _temp_name(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _stale(target: Path) -> list[Path]:
    """Temporaries of saves into ``target`` whose process has died (newest first)."""
    out = []
    if not target.parent.is_dir():
        return out
    for p in target.parent.glob(f".{target.name}.*"):
        parts = p.name[len(target.name) + 2:].split("-")
        if len(parts) == 3 and parts[0] in ("new", "old") and parts[1].isdigit() and not process_alive(int(parts[1])):
            out.append(p)
    return sorted(out, key=_mtime, reverse=True)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def recover(target) -> bool:
    """Put back the previous model of a save killed between its two renames (``target`` missing,
    its old version set aside by a dead process). Returns True if a model was restored."""
    target = Path(target)
    if target.exists():
        return False
    for p in _stale(target):
        if p.name.startswith(f".{target.name}.old-") and (p / META).is_file():
            try:
                os.rename(p, target)
            except OSError:
                return target.exists()
            log.warning("%s: restored the previous model, set aside by a save that was killed mid-swap", target)
            return True
    return False


def clean_stale(target) -> list[Path]:
    """Remove the temporary folders of saves into ``target`` whose process has died (after
    :func:`recover`). Returns what was removed. Temporaries of a live process are kept."""
    target = Path(target)
    recover(target)
    removed = []
    for p in _stale(target):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed.append(p)
    if removed:
        log.info("removed %d stale temporaries of interrupted saves into %s", len(removed), target)
    return removed


#: What an existing folder may hold, besides a saved model, and still be replaced by a save.
_REPLACEABLE = {"checkpoints", "trained_on.json"}


def write_model_folder(directory, generator: Generator, extra: dict) -> Path:
    """Save ``generator`` into ``directory`` through a new folder swapped into place.

    ``extra`` entries are added to ``generator.json`` (``fit_or_load`` stores the training key).
    """
    target = Path(directory)
    check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = _temp_name(target, "new")
    tmp.mkdir()
    try:
        generator._save_state(tmp)
        files = {str(p.relative_to(tmp).as_posix()): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        meta = {"name": generator.name, "format": SAVE_FORMAT, "config": asdict(generator.config),
                "fitted": generator.fitted, "id_prefix": generator.id_prefix,
                "holds_real_records": generator.holds_real_records, **extra, "files": files}
        (tmp / META).write_text(json.dumps(meta, indent=2))
        for p in [tmp, *tmp.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def check_replaceable(target) -> None:
    """Raise :class:`GeneratorError` unless a model save may replace ``target``: absent, empty, a
    saved generator, or only ``fit_or_load``'s checkpoints (never a user's folder or file)."""
    target = Path(target)
    try:
        entries = {p.name for p in target.iterdir()}
    except FileNotFoundError:  # absent, or moved aside this instant by a concurrent save
        entries = set()
    except NotADirectoryError:
        blocked = blocking_file(target)
        if blocked is not None:
            raise GeneratorError(f"{target}: cannot be made: {blocked} is a file, not a folder") from None
        raise GeneratorError(f"{target}: exists and is not a folder; refusing to replace it with a model") from None
    if entries and META not in entries and not entries <= _REPLACEABLE:
        raise GeneratorError(f"{target}: a folder that is not a saved generator ({len(entries)} entries, e.g. "
                             f"{sorted(entries)[0]!r}); refusing to replace it: save into a new or empty folder")


def _swap_in(new: Path, target: Path, attempts: int = 100) -> None:
    """Rename ``new`` onto ``target``, moving an existing ``target`` aside first (and removing it).

    Two concurrent saves each retry until their own folder is in place: the last one wins whole.
    """
    for _ in range(attempts):
        try:
            os.rename(new, target)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.EACCES):
                raise
        old = _temp_name(target, "old")
        try:
            os.rename(target, old)
        except FileNotFoundError:
            continue  # another save moved it aside: try again
        shutil.rmtree(old, ignore_errors=True)
    raise GeneratorError(f"{target}: could not move the new model into place after {attempts} attempts "
                         "(another process keeps writing it)")


def read_meta(directory) -> dict:
    """The checked ``generator.json`` of a saved model folder; :class:`ModelLoadError` otherwise."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ModelLoadError(f"{d}: a file, not a model folder; pass the folder that Generator.save wrote")
    if not d.is_dir() and not recover(d):
        raise ModelLoadError(f"{d}: no such model folder")
    path = d / META
    if not path.is_file():
        raise ModelLoadError(f"{d}: not a saved generator ({META} is missing)")
    try:
        meta = json.loads(path.read_text())
    except OSError as e:  # e.g. moved away by a concurrent save
        raise ModelLoadError(f"{path}: cannot be read ({type(e).__name__}); if another process is saving this "
                             "model, load it again when it is done") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e}); the file is damaged: save or train the model again") \
            from None
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != SAVE_FORMAT or not isinstance(meta.get("files"), dict):
        raise ModelLoadError(f"{path}: saved without a file manifest (format {meta.get('format')!r}, expected "
                             f"{SAVE_FORMAT}) by an older ehrlib; train and save the model again")
    return meta


def verify_files(directory, meta: dict) -> None:
    """Check every file listed in ``meta['files']`` exists with its recorded sha256."""
    d = Path(directory)
    for rel, digest in meta["files"].items():
        p = d / rel
        try:
            actual = sha256_file(p)
        except OSError:
            raise ModelLoadError(f"{d}: file {rel!r} listed in {META} is missing; the folder is incomplete") from None
        if actual != digest:
            raise ModelLoadError(f"{d}: file {rel!r} does not match the sha256 in {META} (truncated, corrupt, or "
                                 "written by another save); save or train the model again")


class reading:
    """``with reading(folder, "file")``: any failure inside becomes one :class:`ModelLoadError`
    naming the folder and the file (library exceptions and their hints are not passed on)."""

    def __init__(self, directory, filename: str, what: str = "model state"):
        self.directory, self.filename, self.what = Path(directory), filename, what

    def __enter__(self):
        return self.directory / self.filename

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (ModelLoadError, KeyboardInterrupt, SystemExit)):
            return False
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in reason or len(reason) > 300:
            reason = type(exc).__name__
        raise ModelLoadError(f"{self.directory}: cannot read {self.what} from {self.filename!r} ({reason})") from None
