"""File I/O shared by every layer: atomic writes and content checksums.

Lowest layer: imports nothing from ``ehrlib``.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

#: Permissions of files written by :func:`atomic_write` (``mkstemp`` alone would leave 0600).
FILE_MODE = 0o644


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``, so a failure leaves ``path`` untouched.

    The temporary file sits beside ``path`` (same file system, so the rename is atomic) and is
    removed on any failure, including ``KeyboardInterrupt``. Its name carries the writer's process
    id (``.<name>.<pid>.<random>.tmp``), so :func:`clean_stale_temporaries` can remove the
    leftovers of a killed process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def blocking_file(path: str | os.PathLike) -> Path | None:
    """The first of ``path``'s parent folders that exists as something else than a folder (so
    nothing can be written at ``path``), or ``None``."""
    return next((q for q in Path(path).parents if q.exists() and not q.is_dir()), None)


def clean_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` when its process was killed.

    Only temporaries whose writer process no longer exists are removed (of target ``name``
    only, if given); those of a live process (a concurrent writer) are kept. Returns the removed paths.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.glob(f".{name or '*'}.*.tmp"):
        parts = p.name[:-len(".tmp")].split(".")
        pid = parts[-2] if len(parts) >= 4 else ""
        if pid.isdigit() and not process_alive(int(pid)) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def process_alive(pid: int) -> bool:
    """True unless process ``pid`` is known not to exist (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists under another user, or cannot tell: keep its files
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def frames_checksum(*frames) -> str:
    """sha256 over pandas frames' contents (``None`` entries skipped): same data, same checksum."""
    import pandas as pd

    h = hashlib.sha256()
    for frame in frames:
        if frame is not None:
            h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()
