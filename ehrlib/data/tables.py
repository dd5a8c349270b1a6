"""Reading source tables with errors that name the file, column, row and value."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.cohort import CohortError

DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def find_table(root: Path, name: str) -> Path:
    """``root/NAME.csv`` or ``.csv.gz``, upper- or lower-case name."""
    for stem in (name, name.lower(), name.upper()):
        for ext in (".csv", ".csv.gz"):
            p = root / f"{stem}{ext}"
            if p.is_file():
                return p
    raise CohortError(
        f"table {name} not found in {root}: expected {name}.csv or {name}.csv.gz (upper- or lower-case name)"
    )


def _open_text(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_header(path: Path) -> list[str]:
    """The header fields of a comma-separated file, checking encoding and delimiter."""
    with _open_text(path) as fh:
        raw = fh.readline()
    try:
        line = raw.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise CohortError(f"{path}: header is not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
    if not line:
        raise CohortError(f"{path}: the file is empty; expected a comma-separated header line")
    return [c.strip().strip('"') for c in line.split(",")]


def read_csv(path: Path, required: dict[str, str], optional: dict[str, str] | None = None,
             aliases: dict[str, tuple[str, ...]] | None = None) -> pd.DataFrame:
    """Read the ``required`` (and present ``optional``) columns of a CSV, named in lower case.

    Args:
        required: canonical lower-case column name -> pandas dtype to read it as.
        optional: as ``required``, read only when present.
        aliases: canonical name -> other accepted header spellings (case-insensitive).

    Raises:
        CohortError: missing column (saying if the file looks like it uses another delimiter),
            a non-UTF-8 byte, or a malformed line.
    """
    optional = optional or {}
    aliases = aliases or {}
    header = read_header(path)
    lower = {h.lower(): h for h in header}
    chosen: dict[str, str] = {}
    for canon in [*required, *optional]:
        for cand in (canon, *aliases.get(canon, ())):
            if cand.lower() in lower:
                chosen[canon] = lower[cand.lower()]
                break
    missing = [c for c in required if c not in chosen]
    if missing:
        hint = ""
        if len(header) == 1:
            for d, name in DELIMITERS.items():
                if d in header[0]:
                    hint = f"; the header looks {name}-delimited, expected comma-separated"
        accepted = {c: [c, *aliases.get(c, ())] for c in missing}
        raise CohortError(f"{path}: missing column(s) {missing} (accepted names: {accepted}); found {header}{hint}")
    dtypes = {chosen[c]: {**required, **optional}[c] for c in chosen}
    try:
        df = pd.read_csv(path, usecols=list(chosen.values()), dtype=dtypes, encoding="utf-8",
                         keep_default_na=True, na_values=[""])
    except UnicodeDecodeError as e:
        raise CohortError(
            f"{path}: not UTF-8 text (invalid byte at position {e.start}); re-save the file as UTF-8"
        ) from None
    except (ValueError, pd.errors.ParserError) as e:
        raise CohortError(f"{path}: could not parse as comma-separated values: {e}") from None
    return df.rename(columns={v: k for k, v in chosen.items()})


def _py(value):
    """A plain Python value for messages (``1``, not ``np.int64(1)``)."""
    return value.item() if hasattr(value, "item") else value


def _line(values: pd.Series, i: int) -> int:
    """File line of positional row ``i`` (header is line 1; the index is read_csv's row number)."""
    label = values.index[i]
    return int(label) + 2 if isinstance(label, (int, np.integer)) else i + 2


def parse_datetimes(values: pd.Series, path: Path, column: str) -> pd.Series:
    """Parse ISO timestamps; an unparsable or missing value raises naming its row."""
    out = pd.to_datetime(values, format="ISO8601", errors="coerce")
    bad = out.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CohortError(
            f"{path}: column {column!r}, line {_line(values, i)}: value {_py(values.iloc[i])!r} is not a date-time "
            "(expected YYYY-MM-DD HH:MM:SS)"
        )
    return out


def require_known(values: pd.Series, known, path: Path, column: str, what: str) -> None:
    """Raise naming the first value of ``values`` that is not in ``known``."""
    bad = ~values.isin(known)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise CohortError(
            f"{path}: column {column!r}, line {_line(values, i)}: value {_py(values.iloc[i])!r} {what} "
            f"({int(bad.sum())} row(s) in all)"
        )


def require_present(values: pd.Series, path: Path, column: str) -> None:
    bad = values.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise CohortError(f"{path}: column {column!r}, line {_line(values, i)}: missing value")


def age_in_years(birth: pd.Series, when: pd.Series) -> np.ndarray:
    """Whole years between two timestamps, from calendar fields (no 292-year ns overflow)."""
    years = when.dt.year.to_numpy() - birth.dt.year.to_numpy()
    before = (when.dt.month.to_numpy() < birth.dt.month.to_numpy()) | (
        (when.dt.month.to_numpy() == birth.dt.month.to_numpy()) & (when.dt.day.to_numpy() < birth.dt.day.to_numpy())
    )
    return years - before.astype(int)
