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
* A path that is a folder where a file is expected (or the reverse), a file or folder the user
  may not read, and a 0-byte file are each said as such (:func:`require_file`,
  :func:`require_folder`), never as "no such file" or a raw ``PermissionError``.
* Rows that do not fit the header are refused naming the line: rows with another delimiter
  than the header's, rows with more fields than the header (a trailing comma on each data
  line), and a copy of the header line inside the file (two files concatenated).
"""
from __future__ import annotations

import gzip
import os
import stat
import sys
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


#: Audit event (:func:`sys.audit`) raised for every file or folder a loader looks for, found or not:
#: the stage context (:class:`ehrlib.runs.Stage`) records it as the stage's input, so a file that
#: appears later makes the stage out of date.
LOOK_EVENT = "ehrlib.look"


def looked_for(path) -> None:
    """Say that ``path`` was looked for (:data:`LOOK_EVENT`), whether or not it exists."""
    sys.audit(LOOK_EVENT, os.fspath(path))


def _stat(path: Path, what: str):
    """``os.stat(path)``, ``None`` when nothing is there; a CohortError when it may not be looked at.
    A file looked for, or anything not there, is said (:func:`looked_for`); a folder that is there is
    not (the files read in it are)."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        looked_for(path)
        return None
    except PermissionError:
        raise CohortError(f"{path}: cannot be read: permission denied (on the {what} or a folder above it); "
                          f"expected a {what} you may read") from None
    except OSError as e:
        raise CohortError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not stat.S_ISDIR(st.st_mode):
        looked_for(path)
    return st


def require_file(path: Path, expected: str = "a .csv, .csv.gz or .parquet file") -> Path:
    """``path`` if it is a file this process may read; else a :class:`CohortError` saying what it
    is instead: nothing (``no such file``), a folder, something else, or not readable."""
    st = _stat(path, "file")
    if st is None:
        message = f"{path}: no such file"
        if _stat(path.parent, "folder") is None:
            message += f" (its folder {path.parent} does not exist either)"
        raise CohortError(f"{message}; expected {expected}")
    if stat.S_ISDIR(st.st_mode):
        raise CohortError(f"{path}: is a folder, not a file; expected {expected}")
    if not stat.S_ISREG(st.st_mode):
        raise CohortError(f"{path}: is not a regular file (a device, socket or pipe); expected {expected}")
    if not os.access(path, os.R_OK):
        raise CohortError(f"{path}: cannot be read: permission denied; expected a file you may read")
    return path


def require_folder(path: Path, what: str) -> Path:
    """``path`` if it is a folder this process may list; else a :class:`CohortError` naming ``what``
    it should be (e.g. ``"MIMIC-III folder"``) and what it is instead."""
    st = _stat(path, "folder")
    if st is None:
        raise CohortError(f"{what} {path} does not exist")
    if not stat.S_ISDIR(st.st_mode):
        raise CohortError(f"{what} {path} is a file, not a folder; expected the folder that holds the tables")
    try:
        next(os.scandir(path), None)
    except PermissionError:
        raise CohortError(f"{what} {path}: cannot be read: permission denied; expected a folder you may list") from None
    return path


def find_table(root: Path, name: str) -> Path:
    """``root/NAME.csv`` or ``.csv.gz``, upper- or lower-case name (and suffix)."""
    for stem in (name, name.lower(), name.upper()):
        for ext in (".csv", ".csv.gz", ".CSV", ".CSV.GZ"):
            p = root / f"{stem}{ext}"
            if _stat(p, "file") is not None:
                return require_file(p, f"table {name} as a .csv or .csv.gz file")
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
    except PermissionError:
        raise CohortError(f"{path}: cannot be read: permission denied; expected a file you may read") from None
    except OSError as e:
        raise CohortError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not head:
        raise CohortError(f"{path}: the file is empty (0 bytes); expected a long-format table")
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


def delimiter_hint(header: list[str]) -> str:
    """``"; the header looks tab-delimited, ..."`` when a one-field header holds another delimiter."""
    if len(header) == 1:
        for d, name in DELIMITERS.items():
            if d in header[0]:
                return f"; the header looks {name}-delimited, expected comma-separated (re-save the file as CSV)"
    return ""


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
        hint = delimiter_hint(header)
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
        df = pd.read_csv(path, compression=compression, encoding="utf-8", keep_default_na=True,
                         na_values=[""], **kwargs)
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    except GZIP_ERRORS as e:
        raise _damaged(path, e) from None
    except PermissionError:
        raise CohortError(f"{path}: cannot be read: permission denied; expected a file you may read") from None
    except (ValueError, pd.errors.ParserError) as e:
        raise CohortError(f"{path}: could not parse as comma-separated values: {short(str(e), 200)}") from None
    _check_rows(df, path)
    return df


def _check_rows(df: pd.DataFrame, path: Path) -> None:
    """Refuse rows that do not fit the header (see the module docstring), naming the line."""
    if not isinstance(df.index, pd.RangeIndex):  # pandas takes extra leading fields as the index
        n = df.index.nlevels
        raise CohortError(
            f"{path}: the data rows have {len(df.columns) + n} fields but the header names {len(df.columns)} "
            f"(line 2 and on; e.g. a trailing comma at the end of each data line): expected as many fields as "
            "header columns; remove the trailing commas (or name the extra column in the header)")
    if df.empty or len(df.columns) < 2:
        return
    rest_missing = df.iloc[:, 1:].isna().all(axis=1).to_numpy(dtype=bool)
    if rest_missing.any():  # rows of one field under a header of several
        first = df.iloc[:, 0][rest_missing].astype("string")
        for d, name in DELIMITERS.items():
            other = first.str.contains(d, regex=False).fillna(False).to_numpy(dtype=bool)
            if other.any():
                i = int(np.flatnonzero(rest_missing)[np.flatnonzero(other)[0]])
                raise CohortError(
                    f"{path}: the header is comma-separated but line {i + 2} is {name}-delimited "
                    f"({short(df.iloc[i, 0], QUOTE_CHARS)}; {int(other.sum())} such line(s)): expected one delimiter, "
                    "commas; re-save the file as CSV")
    col0 = str(df.columns[0])
    spellings = {col0, col0.strip(), col0.strip().lower(), col0.strip().upper()}
    same = df.iloc[:, 0].isin(spellings).to_numpy(dtype=bool).copy()  # a fast first pass: the first field
    for col in df.columns[1:] if same.any() else ():
        name = str(col).strip().lower()
        same &= (df[col].astype("string").str.strip().str.lower() == name).fillna(False).to_numpy(dtype=bool)
    if same.any():
        i = int(np.flatnonzero(same)[0])
        raise CohortError(
            f"{path}: line {i + 2} repeats the header line ({int(same.sum())} such line(s); two files "
            "concatenated?): expected one header line at the top; remove the repeats")


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
