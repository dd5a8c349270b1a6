"""Reading source tables with errors that name the file, column, row and value.

Rules for files (every loader goes through these):

* The format is read from the file's first bytes, not trusted from its name: gzip
  (``1f 8b``), parquet (``PAR1``) or text; zip archives (and ``.xlsx`` workbooks) and
  UTF-16 text are refused with what they are. A name that says one thing while the bytes say
  another (a CSV named ``.parquet``, a plain file named ``.gz``) is a :class:`CohortError`
  naming the file and what its content looks like. Suffixes are matched case-insensitively
  (``.PARQUET``, ``.CSV.GZ``).
* A truncated or damaged gzip file is a :class:`CohortError` naming the file.
* Text must be UTF-8: the error gives the byte offset (in the uncompressed text) and the
  line of the first invalid byte.
* The header line may be at most :data:`MAX_HEADER_BYTES`; values quoted in messages are
  cut to :data:`QUOTE_CHARS` characters and lists to a few items, so no message is huge.
* Integer and number columns are read as text and converted with an error that names the
  column, line and value.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.cohort import CohortError, short
from ehrlib.errors import ConfigError

DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
#: Longest header line accepted (bytes); longer ones are refused, not read.
MAX_HEADER_BYTES = 1 << 20
#: At most this many characters of any value are quoted in an error message.
QUOTE_CHARS = 60
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
NUMERIC = ("Int64", "int64", "float64")


def as_path(value, what: str = "path") -> Path:
    """``value`` as a Path; anything but a string or path-like is a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise ConfigError(f"{what}={short(value, 40)} ({type(value).__name__}): expected a file or folder path")
    return Path(value)


def find_table(root: Path, name: str) -> Path:
    """``root/NAME.csv`` or ``.csv.gz``, upper- or lower-case name (and suffix)."""
    for stem in (name, name.lower(), name.upper()):
        for ext in (".csv", ".csv.gz", ".CSV", ".CSV.GZ"):
            p = root / f"{stem}{ext}"
            if p.is_file():
                return p
    raise CohortError(
        f"table {name} not found in {root}: expected {name}.csv or {name}.csv.gz (upper- or lower-case name)"
    )


def file_kind(path: Path) -> str:
    """``"gzip"``, ``"parquet"`` or ``"text"`` from the file's first bytes, checked against its name.

    Raises:
        CohortError: the file cannot be opened, or its name and content disagree.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as e:
        raise CohortError(f"{path}: cannot be read ({e.strerror or e})") from None
    kind = "gzip" if head[:2] == GZIP_MAGIC else "parquet" if head == PARQUET_MAGIC else "text"
    if head == ZIP_MAGIC:
        raise CohortError(
            f"{path}: a zip archive (or an Excel .xlsx workbook), not CSV or parquet; unzip it, or save the sheet as "
            "UTF-8 CSV"
        )
    if head[:2] in UTF16_BOMS:
        raise CohortError(f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark); re-save the file as UTF-8")
    name = path.name.lower()
    named = "parquet" if name.endswith(".parquet") else "gzip" if name.endswith(".gz") else "text"
    if named != kind:
        looks = {"gzip": "gzip-compressed data", "parquet": "a parquet file",
                 "text": f"text starting {short(head.decode('latin-1'), QUOTE_CHARS)}"}[kind]
        expected = {"parquet": "a parquet file", "gzip": "gzip-compressed CSV", "text": "CSV text"}[named]
        raise CohortError(
            f"{path}: the name says {expected} but the content is {looks}; rename the file to match its content"
        )
    return kind


def _open_binary(path: Path):
    return gzip.open(path, "rb") if file_kind(path) == "gzip" else open(path, "rb")


def _damaged(path: Path, exc: BaseException) -> CohortError:
    return CohortError(f"{path}: truncated or damaged gzip file ({type(exc).__name__}: {short(str(exc), QUOTE_CHARS)})")


GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def first_invalid_utf8(path: Path) -> tuple[int, int, bytes] | None:
    """``(byte offset, line number, bad bytes)`` of the first non-UTF-8 byte, or ``None``.

    The offset counts bytes of the uncompressed text from 0; lines count from 1.
    """
    offset = 0
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return offset + e.start, lineno, raw[e.start:e.start + 4]
            offset += len(raw)
    return None


def _utf8_error(path: Path) -> CohortError:
    where = first_invalid_utf8(path)
    if where is None:
        return CohortError(f"{path}: not UTF-8 text; re-save the file as UTF-8")
    offset, line, bad = where
    return CohortError(
        f"{path}: not UTF-8 text: invalid byte {bad[:1]!r} at byte offset {offset} (line {line}); "
        "re-save the file as UTF-8"
    )


def read_header(path: Path) -> list[str]:
    """The header fields of a comma-separated file, checking format, encoding and length."""
    try:
        with _open_binary(path) as fh:
            raw = fh.readline(MAX_HEADER_BYTES + 1)
    except GZIP_ERRORS as e:
        raise _damaged(path, e) from None
    if len(raw) > MAX_HEADER_BYTES:
        raise CohortError(
            f"{path}: the header line is longer than {MAX_HEADER_BYTES} bytes (starts "
            f"{short(raw[:QUOTE_CHARS].decode('utf-8', 'replace'), QUOTE_CHARS)}); expected a short "
            "comma-separated header such as subject_id,visit_id,code"
        )
    try:
        line = raw.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    if not line:
        raise CohortError(f"{path}: the file is empty; expected a comma-separated header line")
    fields = [c.strip().strip('"') for c in line.split(",")]
    seen: dict[str, str] = {}
    for f in fields:
        if f and f.lower() in seen:
            raise CohortError(
                f"{path}: the header names column {short(f, QUOTE_CHARS)} twice (as {short(seen[f.lower()], QUOTE_CHARS)} "
                "and again); expected each column once"
            )
        seen[f.lower()] = f
    return fields


def short_list(values, n: int = 8) -> str:
    """A list for messages: at most ``n`` items, each cut to :data:`QUOTE_CHARS` characters."""
    values = list(values)
    items = ", ".join(short(v, QUOTE_CHARS) for v in values[:n])
    more = f", ... ({len(values)} in all)" if len(values) > n else ""
    return f"[{items}{more}]"


def read_csv(path: Path, required: dict[str, str], optional: dict[str, str] | None = None,
             aliases: dict[str, tuple[str, ...]] | None = None) -> pd.DataFrame:
    """Read the ``required`` (and present ``optional``) columns of a CSV, named in lower case.

    Args:
        required: canonical lower-case column name -> pandas dtype to read it as.
        optional: as ``required``, read only when present.
        aliases: canonical name -> other accepted header spellings (case-insensitive).

    Raises:
        CohortError: missing column (saying if the file looks like it uses another delimiter),
            a non-UTF-8 byte (offset and line), a truncated gzip file, a malformed line, or a
            value that is not a number in a number column (column, line and value named).
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
        raise CohortError(
            f"{path}: missing column(s) {missing} (accepted names: {accepted}); found {short_list(header)}{hint}"
        )
    kinds = {**required, **optional}
    # every column is read (no ``usecols``): pandas ignores extra fields on a line when
    # ``usecols`` is given, and a line with more fields than the header is a broken line
    df = read_text_table(path, dtype="string")
    df.columns = [str(c).strip().strip('"') for c in df.columns]
    df = df.loc[:, list(chosen.values())].rename(columns={v: k for k, v in chosen.items()})
    for canon in chosen:
        if kinds[canon] not in NUMERIC and kinds[canon] != "string":
            df[canon] = df[canon].astype(kinds[canon])
        if kinds[canon] in NUMERIC:
            df[canon] = to_number(df[canon], path, chosen[canon], kinds[canon])
    return df


def read_text_table(path: Path, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv`` of a (possibly gzipped) UTF-8 CSV with every failure a CohortError."""
    compression = "gzip" if file_kind(path) == "gzip" else None
    try:
        return pd.read_csv(path, compression=compression, encoding="utf-8", keep_default_na=True,
                           na_values=[""], **kwargs)
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    except GZIP_ERRORS as e:
        raise _damaged(path, e) from None
    except (ValueError, pd.errors.ParserError) as e:
        raise CohortError(f"{path}: could not parse as comma-separated values: {short(str(e), 200)}") from None


def to_number(values: pd.Series, path: Path, column: str, dtype: str = "float64") -> pd.Series:
    """Convert text to numbers; a value that is not one (or not a whole number for ``Int64``) raises."""
    num = pd.to_numeric(values.str.strip(), errors="coerce")
    bad = (num.isna() & values.notna()).astype(bool)
    if dtype in ("Int64", "int64"):
        bad = bad | (num.notna() & (num % 1 != 0)).fillna(False).astype(bool)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        what = "an integer" if dtype in ("Int64", "int64") else "a number"
        raise CohortError(
            f"{path}: column {column!r}, line {_line(values, i)}: value {short(values.iloc[i], QUOTE_CHARS)} "
            f"is not {what} ({int(bad.sum())} row(s) in all)"
        )
    if dtype in ("Int64", "int64"):
        return num.astype("Int64")
    return num.astype("float64")


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
            f"{path}: column {column!r}, line {_line(values, i)}: value {short(_py(values.iloc[i]), QUOTE_CHARS)} is not a date-time "
            "(expected YYYY-MM-DD HH:MM:SS)"
        )
    return out


def require_known(values: pd.Series, known, path: Path, column: str, what: str) -> None:
    """Raise naming the first value of ``values`` that is not in ``known``."""
    bad = ~values.isin(known)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise CohortError(
            f"{path}: column {column!r}, line {_line(values, i)}: value {short(_py(values.iloc[i]), QUOTE_CHARS)} {what} "
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
