"""The bad-input corpus of the data layer: one table, one row per case.

Each case builds its input in a fresh folder and calls one public entry point (``read_long``,
``load_mimic3``, ``load_mimic4``, ``load``, ``simulate``, ``split``, ``Cohort.from_events``,
``Cohort.load``). Expected is an error class (the call must raise it, with a short message
containing the words), a warning class (the call must succeed, warn with the words, and pass
the case's check of the result), or ``None`` (a tricky but valid input that must load). In
every case nothing in the folder may change (no file written, removed or modified) and no
exception other than an ``EhrlibError`` may escape.

Cases are classes of input (file formats, encodings, permissions, delimiters and rows that do not
fit the header, visit orders, code shapes and code kinds, demographics, sizes and seeds, writing),
so new cases of the same kinds can be added as rows. The words are looked for in the message with
the test's own folder left out, so no word can come from pytest's folder name.
"""
from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from ehrlib.cohort import Cohort, CohortWarning
from ehrlib.data import load, load_meds, load_mimic3, load_mimic4, read_long, simulate, split, write_meds
from ehrlib.errors import CohortError, ConfigError, EhrlibError, GeneratorError, RunError

MAX_MESSAGE = 1000  # characters: messages name the problem, they do not dump the input
LONG = "SUBJECT_ID,HADM_ID,ICD9_CODE\n1,1,4019\n1,1,0389\n1,2,V5861\n2,1,25000\n"


# ---------------------------------------------------------------- input builders

def text(name: str, content: str | bytes):
    def build(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        return p
    return build


def gz(name: str, content: str, truncate: int | None = None):
    def build(tmp: Path) -> Path:
        data = gzip.compress(content.encode())
        (tmp / name).write_bytes(data[:truncate] if truncate else data)
        return tmp / name
    return build


def gzb(name: str, content: bytes):
    def build(tmp: Path) -> Path:
        (tmp / name).write_bytes(gzip.compress(content))
        return tmp / name
    return build


def zipped(name: str):
    def build(tmp: Path) -> Path:
        import zipfile

        with zipfile.ZipFile(tmp / name, "w") as z:
            z.writestr("long.csv", LONG)
        return tmp / name
    return build


def parquet(name: str, frame: pd.DataFrame, truncate: int | None = None):
    def build(tmp: Path) -> Path:
        frame.to_parquet(tmp / "x.tmp.parquet", index=False)
        data = (tmp / "x.tmp.parquet").read_bytes()
        (tmp / "x.tmp.parquet").unlink()
        (tmp / name).write_bytes(data[:truncate] if truncate else data)
        return tmp / name
    return build


def folder(name: str):
    def build(tmp: Path) -> Path:
        (tmp / name).mkdir()
        return tmp / name
    return build


def under_file(name: str):
    """A path whose parent folder is a file (``f/<name>``)."""
    def build(tmp: Path) -> Path:
        (tmp / "f").write_text("a file, not a folder")
        return tmp / "f" / name
    return build


def denied(call, what: str = "file", name: str | None = None):
    """``call`` run as a user the operating system refuses: ``what="file"``: the input (or its
    file ``name`` inside it) has no read permission (``stat`` works, ``open`` fails, as after
    ``chmod 000``); ``"folder"``: the input's folder has no search permission (``stat`` of
    anything in it fails); ``"listing"``: the input folder cannot be listed. Simulated, since the
    tests may run as root, whom permissions do not stop."""
    import builtins
    from unittest import mock

    def wrapped(arg):
        target = os.fspath(arg if name is None else Path(arg) / name)
        real_open, real_stat, real_access, real_scandir = builtins.open, os.stat, os.access, os.scandir

        def refused(p, inside: bool) -> bool:
            if isinstance(p, int) or not isinstance(p, (str, bytes, os.PathLike)):
                return False
            q = os.fsdecode(os.fspath(p))
            return q.startswith(str(Path(target).parent) + os.sep) if inside else q == target

        def fake_stat(p, *a, **k):
            if what == "folder" and refused(p, inside=True):
                raise PermissionError(13, "Permission denied", os.fspath(p))
            return real_stat(p, *a, **k)

        def fake_open(p, *a, **k):
            if (what == "file" and refused(p, inside=False)) or (what == "folder" and refused(p, inside=True)):
                raise PermissionError(13, "Permission denied", os.fspath(p))
            return real_open(p, *a, **k)

        def fake_access(p, mode, *a, **k):
            return False if what == "file" and refused(p, inside=False) else real_access(p, mode, *a, **k)

        def fake_scandir(p=".", *a, **k):
            if what == "listing" and refused(p, inside=False):
                raise PermissionError(13, "Permission denied", os.fspath(p))
            return real_scandir(p, *a, **k)

        with mock.patch("builtins.open", fake_open), mock.patch("os.stat", fake_stat), \
                mock.patch("os.access", fake_access), mock.patch("os.scandir", fake_scandir):
            return call(arg)
    return wrapped


def in_folder(name: str, inner):
    """``inner`` built inside a subfolder ``name`` (for a folder without search permission)."""
    def build(tmp: Path) -> Path:
        (tmp / name).mkdir()
        return inner(tmp / name)
    return build


def long_rows(rows, header="SUBJECT_ID,HADM_ID,ICD9_CODE", name="long.csv"):
    return text(name, header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


MIMIC3 = {
    "PATIENTS": [("subject_id", "gender", "dob"), (1, "M", "2050-01-01 00:00:00"), (2, "F", "2060-05-01 00:00:00")],
    "ADMISSIONS": [("subject_id", "hadm_id", "admittime"), (1, 11, "2100-01-01 00:00:00"),
                   (1, 12, "2101-01-01 00:00:00"), (2, 21, "2100-06-01 00:00:00")],
    "DIAGNOSES_ICD": [("subject_id", "hadm_id", "icd9_code"), (1, 11, "4019"), (1, 11, "0389"),
                      (1, 12, "V5861"), (2, 21, "25000"), (2, 21, "4019")],
}


def mimic3(edit=None, gzip_table: str | None = None, truncate: int | None = None):
    """A three-admission MIMIC-III folder; ``edit(tables)`` changes the row lists first."""
    def build(tmp: Path) -> Path:
        tables = {k: [list(r) for r in v] for k, v in MIMIC3.items()}
        if edit:
            edit(tables)
        root = tmp / "mimic3"
        root.mkdir()
        for name, rows in tables.items():
            content = "".join(",".join(map(str, r)) + "\n" for r in rows)
            if name == gzip_table:
                data = gzip.compress(content.encode())
                (root / f"{name}.csv.gz").write_bytes(data[:truncate] if truncate else data)
            else:
                (root / f"{name}.csv").write_text(content)
        return root
    return build


def mimic4(edit=None):
    def build(tmp: Path) -> Path:
        tables = {
            "patients": [("subject_id", "gender", "anchor_age", "anchor_year"), (1, "M", 60, 2100), (2, "F", 30, 2100)],
            "admissions": [("subject_id", "hadm_id", "admittime"), (1, 11, "2101-01-01 00:00:00"),
                           (2, 21, "2100-06-01 00:00:00")],
            "diagnoses_icd": [("subject_id", "hadm_id", "icd_code", "icd_version"), (1, 11, "4019", 9),
                              (1, 11, "I10", 10), (2, 21, "25000", 9), (2, 21, "E119", 10)],
        }
        tables = {k: [list(r) for r in v] for k, v in tables.items()}
        if edit:
            edit(tables)
        hosp = tmp / "mimic4" / "hosp"
        hosp.mkdir(parents=True)
        for name, rows in tables.items():
            data = "".join(",".join(map(str, r)) + "\n" for r in rows).encode()
            (hosp / f"{name}.csv.gz").write_bytes(gzip.compress(data))
        return tmp / "mimic4"
    return build


def setcell(table, row, col, value):
    def edit(tables):
        tables[table][row][col] = value
    return edit


def addrow(table, row):
    def edit(tables):
        tables[table].append(list(row))
    return edit


def nothing(tmp: Path):
    return None


def events(rows, columns=("subject_id", "visit_id", "code")):
    return pd.DataFrame(rows, columns=list(columns))


# ---------------------------------------------------------------- result checks

def codes_are(*expected):
    def check(c: Cohort):
        assert sorted(c.codes()) == sorted(expected)
    return check


def records_are(expected):
    def check(c: Cohort):
        assert c.records() == expected
    return check


def ages_are(expected: dict):
    """``None`` stands for a missing age."""
    def check(c: Cohort):
        got = {s: (None if pd.isna(a) else a) for s, a in zip(c.demographics.subject_id, c.demographics.age)}
        assert got == expected
    return check


def visits_are(n):
    def check(c: Cohort):
        assert c.n_visits == n
    return check


JUNK_CODES = ["DROP TABLE patients;--", "=HYPERLINK(\"x\")", "../../etc/passwd", "C:\\codes\\x", "40 19",
              "x" * 5_000_000]
SMALL = Cohort.from_events(events([(s, 0, "4019") for s in range(4)]))
BAD_UTF8 = LONG.encode() + b"3,1,40\xe919\n"  # invalid byte at offset len(LONG) + 6, line 6

# ---------------------------------------------------------------- MEDS, run folders, models, user generators
def meds_export(then=None, name: str = "m"):
    """A dataset ``write_meds`` wrote into ``<tmp>/<name>``, then ``then(folder)`` (a user's edit)."""
    def build(tmp: Path) -> Path:
        write_meds(SMALL, tmp / name)
        if then is not None:
            then(tmp / name)
        return tmp / name
    return build


def put(rel: str, content: str | None = "mine"):
    """``then`` for :func:`meds_export`: a file (``None``: a folder) the user adds at ``rel``."""
    def edit(root: Path) -> None:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir() if content is None else target.write_text(content)
    return edit


def rewrite(root):
    """``write_meds`` of another cohort over ``root``."""
    return write_meds(Cohort.from_events(events([(s, 0, "0389") for s in range(6)])), root)


def from_cwd(sub: str, target: str):
    """``write_meds(target)`` run with ``<input>/<sub>`` as the working directory."""
    def call(tmp: Path):
        here = os.getcwd()
        os.chdir(tmp / sub)
        try:
            return rewrite(target)
        finally:
            os.chdir(here)
    return call


def meds_data(shards: dict, splits=None, types: dict | None = None):
    """A MEDS folder with ``data/<name>.parquet`` per ``shards`` entry (a DataFrame; ``types``:
    Arrow types by column) and ``metadata/subject_splits.parquet`` (a DataFrame, or bytes written as is)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def build(tmp: Path) -> Path:
        root = tmp / "meds"
        (root / "data").mkdir(parents=True)
        for name, frame in shards.items():
            kinds = {k: pa.string() if v == "string" else v for k, v in (types or {}).items()}
            schema = pa.schema([(c, kinds.get(c, {"subject_id": pa.int64(), "time": pa.timestamp("us"),
                                                         "code": pa.string()}.get(c, pa.int64())))
                                for c in frame.columns])
            pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False),
                           root / "data" / f"{name}.parquet")
        if splits is not None:
            (root / "metadata").mkdir()
            path = root / "metadata" / "subject_splits.parquet"
            if isinstance(splits, bytes):
                path.write_bytes(splits)
            else:
                pq.write_table(pa.Table.from_pandas(splits, preserve_index=False), path)
        return root
    return build


def dx_rows(subjects, hadm=True, when="2100-01-01"):
    """Admission and diagnosis events of ``subjects`` (one visit each), with ``hadm_id`` when asked."""
    rows = []
    for s in subjects:
        for code in ("HOSPITAL_ADMISSION", "DIAGNOSIS//ICD//9//4019"):
            rows.append({"subject_id": s, "time": pd.Timestamp(when), "code": code, **({"hadm_id": 100 + s} if hadm else {})})
    return pd.DataFrame(rows)


def with_splits():
    """``meds_splits`` of the dataset ``load_meds`` reads."""
    from ehrlib.data import meds_splits

    return lambda root: meds_splits(root, load_meds(root))


def run_folder(edit):
    """A run folder ``<tmp>/runs/r`` holding a manifest, then ``edit(folder)``."""
    def build(tmp: Path):
        from ehrlib.runs import Run

        run = Run(tmp / "runs" / "r")
        run.path.mkdir(parents=True)
        run.manifest_path.write_text('{"stages": {"00_data": {"params": {"data": "simulated"}}}}')
        edit(run)
        return run
    return build


def holding_writer(run):
    with run.writer():
        pass


def user_spec(cls: str):
    from ehrlib.models.user import UserGenerator

    return UserGenerator(cls.lower(), f"test_bad_inputs:{cls}", "test")


def user_fit(cls: str, n: int = 3):
    """``fit_and_generate`` of the generator class ``cls`` of this module on the saved ``SMALL``."""
    def call(train_path):
        from ehrlib.models import user

        return user.fit_and_generate(user_spec(cls), train_path, n, 0, 60)
    return call


class Mutator:
    """fit drops a training row in place: the cohort it was given changes."""

    def fit(self, train):
        train.events.drop(index=train.events.index[:1], inplace=True)
        return self

    def generate(self, n, seed=0):
        return Cohort.from_events(events([(f"S{i}", 0, "4019") for i in range(n)]))


class RenamesCodes(Mutator):
    """fit rewrites a code of the training cohort in place."""

    def fit(self, train):
        train.events.loc[train.events.index[0], "code"] = "0389"
        return self


class MutatesInGenerate(Mutator):
    """fit keeps the training cohort; generate then changes it."""

    def fit(self, train):
        self.train = train
        return self

    def generate(self, n, seed=0):
        self.train.events["code"] = "0389"
        return super().generate(n, seed)


class Faithful(Mutator):
    """Leaves the training cohort alone and returns only codes it had."""

    def fit(self, train):
        return self


class Scribbler:
    """Writes into its working directory (kept apart) and returns codes training never had."""

    def fit(self, train):
        Path("scratch.txt").write_text("left behind")
        return self

    def generate(self, n, seed=0):
        return Cohort.from_events(events([(f"S{i}", 0, code) for i in range(n) for code in ("4019", "XYZZY", "I10")]))


def saved_small(tmp: Path) -> Path:
    return SMALL.save(tmp / "train.parquet")


def unseen(expected: dict):
    """Check of ``code_report`` against ``SMALL`` (codes 4019 only)."""
    def check(cohort):
        from ehrlib.models.user import code_report

        report = code_report(cohort, SMALL)
        assert {k: report[k] for k in expected} == expected, report
        assert not Path("scratch.txt").exists()  # the generator's working directory was its own
    return check


def get_model(name: str, profile: str | None = "smoke", **fields):
    from ehrlib import models

    def call(_):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the reference generators' unused profile
            return models.get(name, profile, **fields)
    return call


def fit_model(name: str, n_patients: int, **fields):
    def call(_):
        from ehrlib import models

        train = Cohort.from_events(events([(s, v, c) for s in range(n_patients) for v, c in ((0, "4019"), (1, "0389"))]))
        return models.get(name, "smoke", progress=False, **fields).fit(train)
    return call

def _marginals():
    from ehrlib import models

    return models.get("marginals").fit(SMALL)


GOOD = [(s, v, c) for s in range(1, 5) for v, c in ((1, "4019"), (1, "0389"), (2, "25000"), (2, "V5861"))]

# ---------------------------------------------------------------- the corpus
# id: (builder(tmp) -> input, call(input) -> result, expected, words, check of the result)

CASES = {
    # ---- files: existence, format by content, compression, encoding, header size, parsing
    "missing file": (lambda t: t / "nope.csv", read_long, CohortError, ["nope.csv", "no such file"], None),
    "folder instead of file": (folder("d.csv"), read_long, CohortError, ["d.csv", "is a folder, not a file"], None),
    "file in a folder that does not exist": (lambda t: t / "gone" / "x.csv", read_long, CohortError,
                                             ["x.csv", "no such file", "does not exist either"], None),
    "file instead of a MIMIC folder": (text("m.csv", LONG), load_mimic3, CohortError,
                                       ["m.csv", "is a file, not a folder"], None),
    "file instead of a MIMIC-IV folder": (text("m.csv", LONG), load_mimic4, CohortError,
                                          ["m.csv", "is a file, not a folder"], None),
    "Cohort.load of a folder": (folder("c.parquet"), Cohort.load, CohortError, ["c.parquet", "is a folder"], None),

    # ---- permissions (simulated: see ``denied``)
    "no read permission on the file": (text("x.csv", LONG), denied(read_long), CohortError,
                                       ["x.csv", "cannot be read: permission denied"], None),
    "no read permission on a parquet file": (parquet("x.parquet", events([(1, 0, "4019")])), denied(read_long),
                                             CohortError, ["x.parquet", "permission denied"], None),
    "no search permission on the file's folder": (in_folder("locked", text("x.csv", LONG)),
                                                  denied(read_long, "folder"), CohortError,
                                                  ["x.csv", "permission denied", "a folder above it"], None),
    "no read permission on a MIMIC table": (mimic3(), denied(load_mimic3, name="DIAGNOSES_ICD.csv"), CohortError,
                                            ["DIAGNOSES_ICD.csv", "permission denied"], None),
    "no permission to list the MIMIC folder": (mimic3(), denied(load_mimic3, "listing"), CohortError,
                                               ["MIMIC-III folder", "permission denied"], None),
    "no read permission on a MIMIC-IV table": (mimic4(), denied(load_mimic4, name="hosp/patients.csv.gz"),
                                               CohortError, ["patients.csv.gz", "permission denied"], None),
    "no read permission for Cohort.load": (parquet("c.parquet", events([(1, 0, "4019")])), denied(Cohort.load, "folder"),
                                           CohortError, ["c.parquet", "permission denied"], None),
    "load long: no read permission": (text("x.csv", LONG), denied(lambda p: load(f"long:{p}")), CohortError,
                                      ["x.csv", "permission denied"], None),

    # ---- writing a cohort
    "save where a parent folder is a file": (under_file("c.parquet"), SMALL.save, CohortError,
                                             ["c.parquet", "cannot be written", "is a file, not a folder"], None),
    "save onto a folder": (folder("c.parquet"), SMALL.save, CohortError, ["c.parquet", "it is a folder"], None),
    "model save where a parent folder is a file": (under_file("model"), lambda p: _marginals().save(p), GeneratorError,
                                                   ["model", "cannot be made", "is a file, not a folder"], None),
    "path is not a path": (nothing, read_long, ConfigError, ["path", "NoneType"], None),
    "unsupported suffix": (text("x.json", '{"a": 1}'), read_long, CohortError, ["x.json", "unsupported file type"], None),
    "truncated csv.gz": (gz("x.csv.gz", LONG * 200, truncate=60), read_long, CohortError,
                         ["x.csv.gz", "truncated or damaged gzip"], None),
    "csv named .parquet": (text("x.parquet", LONG), read_long, CohortError,
                           ["x.parquet", "parquet", "content is text"], None),
    "csv named .PARQUET": (text("x.PARQUET", LONG), read_long, CohortError, ["x.PARQUET", "content is text"], None),
    "parquet named .csv": (parquet("x.csv", events([(1, 0, "4019")])), read_long, CohortError,
                           ["x.csv", "content is a parquet file"], None),
    "text named .csv.gz": (text("x.csv.gz", LONG), read_long, CohortError, ["x.csv.gz", "gzip"], None),
    "truncated parquet": (parquet("x.parquet", events([(i, 0, "4019") for i in range(500)]), truncate=200),
                          read_long, CohortError, ["x.parquet", "not a readable parquet file"], None),
    "parquet with codes stored as numbers": (parquet("x.parquet", pd.DataFrame({"subject_id": ["1", "1"], "visit_id": [0, 0],
                                                                                 "code": [389, 4019]})), read_long,
                                             CohortError, ["x.parquet", "holds numbers", "leading zeros"], None),
    "upper-case .PARQUET is read": (parquet("x.PARQUET", events([(1, 0, "4019"), (1, 1, "0389")])), read_long,
                                    None, [], records_are([[["4019"], ["0389"]]])),
    "upper-case .CSV.GZ is read": (gz("x.CSV.GZ", LONG), read_long, None, [], visits_are(3)),
    "non-UTF-8 byte": (text("x.csv", BAD_UTF8), read_long, CohortError,
                       ["x.csv", "UTF-8", f"byte offset {len(LONG) + 6}", "line 6"], None),
    "non-UTF-8 byte in gzip": (gzb("x.csv.gz", BAD_UTF8), read_long, CohortError,
                               ["x.csv.gz", f"byte offset {len(LONG) + 6}", "line 6"], None),
    "latin-1 header": (text("x.csv", "SUBJECT_ID,HADM_ID,ICD9_C\xd3DE\n1,1,4019\n".encode("latin-1")), read_long,
                       CohortError, ["UTF-8", "byte offset 25", "line 1"], None),
    "UTF-16 text": (text("x.csv", LONG.encode("utf-16")), read_long, CohortError, ["x.csv", "UTF-16"], None),
    "zip archive named .csv": (zipped("x.csv"), read_long, CohortError, ["x.csv", "zip archive"], None),
    "UTF-8 BOM header is read": (text("x.csv", "\ufeff" + LONG), read_long, None, [], visits_are(3)),
    "empty file": (text("x.csv", ""), read_long, CohortError, ["x.csv", "empty"], None),
    "empty .csv.gz (0 bytes)": (text("x.csv.gz", b""), read_long, CohortError, ["x.csv.gz", "empty (0 bytes)"], None),
    "empty .parquet (0 bytes)": (text("x.parquet", b""), read_long, CohortError, ["x.parquet", "empty (0 bytes)"], None),
    "empty MIMIC table (0 bytes)": (mimic3(gzip_table="DIAGNOSES_ICD", truncate=None, edit=lambda t: t.update(DIAGNOSES_ICD=[])),
                                    load_mimic3, CohortError, ["DIAGNOSES_ICD.csv.gz", "empty"], None),
    "gzip of nothing": (gz("x.csv.gz", ""), read_long, CohortError, ["x.csv.gz", "empty"], None),
    "header only": (text("x.csv", "SUBJECT_ID,HADM_ID,ICD9_CODE\n"), read_long, CohortError, ["empty cohort"], None),
    "huge header": (text("x.csv", "SUBJECT_ID,ICD9_CODE," + "A" * 3_000_000 + "\n1,4019,x\n"), read_long,
                    CohortError, ["x.csv", "header line is longer"], None),
    "many columns, none usable": (text("x.csv", ",".join(f"col{i}" for i in range(5000)) + "\n"), read_long,
                                  CohortError, ["missing column", "5000 in all"], None),
    "a column named twice": (text("x.csv", "SUBJECT_ID,subject_id,ICD9_CODE\n1,2,4019\n"), read_long, CohortError,
                             ["x.csv", "'subject_id' twice"], None),
    "semicolon-delimited": (text("x.csv", LONG.replace(",", ";")), read_long, CohortError,
                            ["x.csv", "semicolon-delimited, expected comma-separated"], None),
    "tab-delimited": (text("x.csv", LONG.replace(",", "\t")), read_long, CohortError,
                      ["x.csv", "tab-delimited, expected comma-separated"], None),
    "semicolon-delimited MIMIC table": (mimic3(edit=lambda t: t.update(PATIENTS=[[";".join(map(str, r))]
                                                                            for r in t["PATIENTS"]])),
                                        load_mimic3, CohortError, ["PATIENTS.csv", "semicolon-delimited"], None),
    "comma header over tab-separated rows": (text("x.csv", "SUBJECT_ID,HADM_ID,ICD9_CODE\n1\t1\t4019\n2\t1\t0389\n"),
                                             read_long, CohortError, ["x.csv", "line 2 is tab-delimited",
                                                                      "2 such line(s)", "comma"], None),
    "comma header over semicolon rows in MIMIC": (
        mimic3(edit=lambda t: t.update(DIAGNOSES_ICD=[t["DIAGNOSES_ICD"][0], ["1;11;4019"], ["2;21;4019"]])),
        load_mimic3, CohortError, ["DIAGNOSES_ICD.csv", "semicolon-delimited"], None),
    "trailing comma on data rows only": (text("x.csv", "SUBJECT_ID,HADM_ID,ICD9_CODE\n1,1,4019,\n2,1,0389,\n"),
                                         read_long, CohortError, ["x.csv", "4 fields but the header names 3",
                                                                  "trailing comma"], None),
    "trailing comma on MIMIC data rows": (
        mimic3(edit=lambda t: t.update(DIAGNOSES_ICD=[t["DIAGNOSES_ICD"][0]] + [r + [""] for r in t["DIAGNOSES_ICD"][1:]])),
        load_mimic3, CohortError, ["DIAGNOSES_ICD.csv", "trailing comma"], None),
    "header repeated mid-file": (text("x.csv", LONG + LONG), read_long, CohortError,
                                 ["x.csv", "line 6 repeats the header", "concatenated"], None),
    "header repeated in a MIMIC table": (mimic3(addrow("DIAGNOSES_ICD", ("subject_id", "hadm_id", "icd9_code"))),
                                         load_mimic3, CohortError, ["DIAGNOSES_ICD.csv", "line 7 repeats the header"],
                                         None),
    "missing visit id": (long_rows([(1, "", "4019"), (1, 2, "0389")]), read_long, CohortError,
                         ["long.csv", "visit column 'HADM_ID', line 2: missing visit id"], None),
    "ragged line": (text("x.csv", LONG + "3,1,4019,extra,fields\n"), read_long, CohortError,
                    ["x.csv", "could not parse"], None),
    "icd_version that does not exist": (text("x.csv", LONG), lambda p: read_long(p, icd_version=11), ConfigError,
                                        ["icd_version=11", "9, 10 or None"], None),
    "code_map of the wrong type": (text("x.csv", LONG), lambda p: read_long(p, code_map=5), ConfigError,
                                   ["code_map"], None),
    "index without code_map entry": (text("x.csv", "patient_id,visit_id,code\n0,0,1\n0,0,7\n"),
                                     lambda p: read_long(p, code_map=["0389", "4019"]), CohortError,
                                     ["line 3", "'7'", "code_map"], None),

    # ---- visit order
    "numeric visits order numerically": (long_rows([(1, 10, "4019"), (1, 2, "0389"), (1, 1, "V5861")]), read_long,
                                         None, [], records_are([[["V5861"], ["0389"], ["4019"]]])),
    "ISO-date visits order by time": (long_rows([(1, "2101-02-01", "4019"), (1, "2100-12-31", "0389")]), read_long,
                                      None, [], records_are([[["0389"], ["4019"]]])),
    "text visit ids, several per subject": (long_rows([(1, "adm_b", "4019"), (1, "adm_a", "0389"), (2, "x", "0389")]),
                                            read_long, CohortError, ["neither numbers nor ISO", "1 subject(s)",
                                                                     "time_column"], None),
    "time zones mixed with naive times": (
        long_rows([(1, "2100-01-01T00:00:00+01:00", "4019"), (1, "2100-01-02", "0389")]), read_long, CohortError,
        ["neither numbers nor ISO", "cannot be known"], None),
    "numbers mixed with dates": (long_rows([(1, "3", "4019"), (1, "2100-01-01", "0389")]), read_long, CohortError,
                                 ["neither numbers nor ISO", "cannot be known"], None),
    "text visit ids, one per subject": (long_rows([(1, "adm_b", "4019"), (1, "adm_b", "0389"), (2, "x", "0389")]),
                                        read_long, None, [], visits_are(2)),
    "unrecognised visit column": (long_rows([(1, "2100-01-02", "4019"), (1, "2100-01-01", "0389")],
                                            header="SUBJECT_ID,ENC_WHEN,ICD9_CODE"), read_long, CohortError,
                                  ["no visit column recognised", "ENC_WHEN", "visit_column"], None),
    "named visit column": (long_rows([(1, "2100-01-02", "4019"), (1, "2100-01-01", "0389")],
                                     header="SUBJECT_ID,ENC_WHEN,ICD9_CODE"),
                           lambda p: read_long(p, visit_column="enc_when"), None, [],
                           records_are([[["0389"], ["4019"]]])),
    "admission time column found by name": (
        long_rows([(1, 900, "2100-05-01 00:00:00", "4019"), (1, 100, "2100-01-01 00:00:00", "0389"),
                   (1, 500, "2100-03-01 00:00:00", "V5861")], header="SUBJECT_ID,HADM_ID,ADMITTIME,ICD9_CODE"),
        read_long, None, [], records_are([[["0389"], ["V5861"], ["4019"]]])),
    "admission time column found by name, not a time": (
        long_rows([(1, 1, "soon", "4019")], header="SUBJECT_ID,HADM_ID,ADMIT_DATE,ICD9_CODE"), read_long,
        CohortError, ["ADMIT_DATE", "recognised by its name", "time_column=False"], None),
    "time_column=False ignores it": (
        long_rows([(1, 1, "soon", "4019"), (1, 2, "x", "0389")], header="SUBJECT_ID,HADM_ID,ADMIT_DATE,ICD9_CODE"),
        lambda p: read_long(p, time_column=False), None, [], records_are([[["4019"], ["0389"]]])),
    "visit ids ordered by a time column": (
        long_rows([(1, "b", "2100-03-01 10:00:00", "4019"), (1, "a", "2100-05-01", "0389"),
                   (1, "b", "2100-03-01 11:00:00", "25000")], header="SUBJECT_ID,HADM_ID,ADMITTIME,ICD9_CODE"),
        lambda p: read_long(p, time_column="ADMITTIME"), None, [], records_are([[["25000", "4019"], ["0389"]]])),
    "time column that is not a time": (long_rows([(1, 1, "soon", "4019"), (1, 2, "later", "0389")],
                                                 header="SUBJECT_ID,HADM_ID,WHEN,ICD9_CODE"),
                                       lambda p: read_long(p, time_column="WHEN"), CohortError,
                                       ["WHEN", "neither numbers nor ISO"], None),
    "visit_column that does not exist": (text("x.csv", LONG), lambda p: read_long(p, visit_column="enc"),
                                         CohortError, ["visit_column='enc'", "not a column", "HADM_ID"], None),
    "no visit column at all (MedGAN layout)": (long_rows([(1, "4019"), (1, "0389"), (2, "V5861")],
                                                         header="SUBJECT_ID,ICD9_CODE"), read_long, CohortWarning,
                                               ["no visit column", "one visit"], visits_are(2)),
    "visit_column=False": (long_rows([(1, 5, "4019"), (1, 6, "0389")], header="SUBJECT_ID,SEQ,ICD9_CODE"),
                           lambda p: read_long(p, visit_column=False), None, [], visits_are(1)),
    "visit keys of mixed types": (lambda t: events([(1, 1, "4019"), (1, "a", "0389")]), Cohort.from_events,
                                  CohortError, ["mixed types", "visit_id"], None),
    "missing visit key": (lambda t: events([(1, None, "4019")]), Cohort.from_events, CohortError,
                          ["missing visit key"], None),

    # ---- codes
    "junk codes among good ones": (long_rows(GOOD + [(9, 1, c) for c in JUNK_CODES]), read_long, CohortWarning,
                                   ["long.csv", "6 of 22", "not ICD-9 codes", "DROP TABLE", "dropped"],
                                   codes_are("4019", "0389", "25000", "V5861")),
    "mostly junk codes": (long_rows([(1, 1, c) for c in JUNK_CODES] + [(1, 1, "4019")]), read_long, CohortError,
                          ["6 of 7", "not ICD-9 codes", "right column"], None),
    "ICD-10 file read as ICD-9": (long_rows([(1, 1, "I10"), (1, 1, "E119"), (2, 1, "S72001A")]), read_long,
                                  CohortError, ["not ICD-9 codes", "ICD version", "ICD-10 shape", "icd_version=10"],
                                  None),
    "ICD-10 E-codes that have the ICD-9 shape": (
        long_rows(GOOD + [(9, 1, "E119"), (9, 1, "E785"), (9, 2, "E039"), (9, 2, "E871"), (9, 2, "E1122")]), read_long,
        CohortWarning, ["long.csv", "4 of 21 code(s)", "'E119'", "look like ICD-10", "icd_version=10"],
        codes_are("4019", "0389", "25000", "V5861", "E119", "E785", "E039", "E871", "E1122")),
    "dotted ICD-10 file read as ICD-9": (long_rows([(1, 1, "E11.9"), (1, 1, "I10"), (2, 1, "J18.9")]), read_long,
                                         CohortError, ["not ICD-9 codes", "ICD-10 shape", "icd_version=10"], None),
    "ICD-10 E-codes only, ICD-9 shaped": (long_rows([(1, 1, "E119"), (1, 1, "E785"), (2, 1, "E6601")]), read_long,
                                          CohortWarning, ["3 of 3 code(s)", "look like ICD-10", "icd_version=10"],
                                          visits_are(2)),
    "ICD-10 E-code in MIMIC": (mimic3(addrow("DIAGNOSES_ICD", (2, 21, "E785"))), load_mimic3, CohortWarning,
                               ["DIAGNOSES_ICD.csv", "1 of 6 code(s)", "'E785'", "icd_version=10"], visits_are(3)),
    "real E-codes are not ICD-10": (long_rows(GOOD + [(9, 1, "E8497"), (9, 1, "E0000"), (9, 1, "E030"), (9, 1, "E888")]),
                                    read_long, None, [], visits_are(9)),
    "leading zeros lost (a spreadsheet's numbers)": (
        long_rows([(1, 1, "389"), (1, 1, "4019"), (1, 2, "845"), (2, 1, "414"), (2, 1, "25000")]), read_long,
        CohortWarning, ["long.csv", "3 of 5 code(s)", "'389' for '0389'", "lost their leading zeros", "as text"],
        codes_are("389", "4019", "845", "414", "25000")),
    "a code of two digits beside zero-led codes": (long_rows(GOOD + [(9, 1, "42")]), read_long, CohortWarning,
                                                   ["'42' for '042'", "lost their leading zeros", "not ICD-9 codes"],
                                                   codes_are("4019", "0389", "25000", "V5861")),
    "leading zeros lost in MIMIC": (mimic3(setcell("DIAGNOSES_ICD", 2, 2, "389")), load_mimic3, CohortWarning,
                                    ["DIAGNOSES_ICD.csv", "'389' for '0389'", "as text"], visits_are(3)),
    "older ICD-9 codes beside zero-led ones are not lost zeros": (
        long_rows(GOOD + [(9, 1, "7070"), (9, 1, "7798")]), read_long, None, [], visits_are(9)),
    "ICD-10 file read as ICD-10": (long_rows([(1, 1, "I10"), (1, 1, "E11.9"), (2, 1, "S72001A")]),
                                   lambda p: read_long(p, icd_version=10), CohortWarning, ["written with a dot"],
                                   codes_are("I10", "E119", "S72001A")),
    "paths are not dotted codes": (long_rows(GOOD + [(9, 1, "../x.y")]), read_long, CohortWarning,
                                   ["not ICD-9 codes", "../x.y"], codes_are("4019", "0389", "25000", "V5861")),
    "digits of another script": (long_rows(GOOD + [(9, 1, "\uff14\uff10\uff11\uff19")]), read_long, CohortWarning,
                                 ["1 of 17", "not ICD-9 codes"], codes_are("4019", "0389", "25000", "V5861")),
    "dotted codes": (long_rows([(1, 1, "401.9"), (1, 1, "E878.1"), (1, 1, "V58.61")]), read_long, CohortWarning,
                     ["3 code(s) written with a dot", "'401.9'"], codes_are("4019", "E8781", "V5861")),
    "missing codes and repeats are reported": (long_rows([(1, 1, "4019"), (1, 1, "4019"), (1, 1, "nan"), (1, 2, ""),
                                                          (1, 2, "0389")]), read_long, CohortWarning,
                                               ["long.csv", "2 row(s) with a missing code", "1 repeat"],
                                               records_are([[["4019"], ["0389"]]])),
    "junk codes in from_events": (lambda t: events([(1, 0, "A1"), (1, 0, "B2"), (1, 0, "rm -rf /")]),
                                  Cohort.from_events, CohortWarning, ["1 of 3", "'rm -rf /'"], codes_are("A1", "B2")),
    "events that are not a table": (lambda t: [("1", 0, "4019")], Cohort.from_events, CohortError,
                                    ["DataFrame", "list"], None),
    "events with a column twice": (lambda t: pd.DataFrame([[1, 0, "4019", "0389"]],
                                                          columns=["subject_id", "visit_id", "code", "code"]),
                                   Cohort.from_events, CohortError, ["['code']", "more than once"], None),
    "events without a code column": (lambda t: events([(1, 0)], ("subject_id", "visit_id")), Cohort.from_events,
                                     CohortError, ["missing column", "code"], None),

    # ---- demographics (long format)
    "two sexes for one subject": (long_rows([(1, 1, 50, "M", "4019"), (1, 2, 51, "F", "0389")],
                                            header="SUBJECT_ID,HADM_ID,AGE,SEX,ICD9_CODE"), read_long, CohortError,
                                  ["'sex'", "1 subject(s)", "F, M"], None),
    "negative age": (long_rows([(1, 1, -3, "M", "4019"), (2, 1, 40, "F", "0389")],
                               header="SUBJECT_ID,HADM_ID,AGE,SEX,ICD9_CODE"), read_long, CohortError,
                     ["impossible age", "subject '1'", "-3"], None),
    "age above 130": (long_rows([(1, 1, 200, "M", "4019")], header="SUBJECT_ID,HADM_ID,AGE,SEX,ICD9_CODE"),
                      read_long, CohortError, ["impossible age", "200"], None),
    "age that is not a number": (long_rows([(1, 1, "old", "M", "4019")], header="SUBJECT_ID,HADM_ID,AGE,SEX,ICD9_CODE"),
                                 read_long, CohortError, ["'age'", "'old'", "not a number"], None),
    "age written as 'nan' is missing": (long_rows([(1, 1, "nan", "M", "4019")], header="SUBJECT_ID,HADM_ID,AGE,SEX,ICD9_CODE"),
                                        read_long, None, [], ages_are({"1": None})),
    "unknown sex": (long_rows([(1, 1, 40, "X", "4019")], header="SUBJECT_ID,HADM_ID,AGE,SEX,ICD9_CODE"), read_long,
                    CohortError, ["'sex'", "'X'"], None),
    "age at each visit: the first is kept": (long_rows([(1, 2, 51, "M", "0389"), (1, 1, 50, "M", "4019")],
                                                       header="SUBJECT_ID,HADM_ID,AGE,SEX,ICD9_CODE"), read_long,
                                             None, [], ages_are({"1": 50.0})),
    "age without sex": (long_rows([(1, 1, 50, "4019")], header="SUBJECT_ID,HADM_ID,AGE,ICD9_CODE"), read_long,
                        CohortWarning, ["'AGE'", "without sex", "not read"], None),
    "conflicting demographics in from_events": (
        lambda t: (events([(1, 0, "4019")]), pd.DataFrame({"subject_id": [1, 1], "age": [40, 41], "sex": ["M", "M"]})),
        lambda a: Cohort.from_events(*a), CohortError, ["'age'", "more than one value", "40", "41"], None),

    # ---- MIMIC-III / -IV tables
    "MIMIC folder missing": (lambda t: t / "nowhere", load_mimic3, CohortError, ["nowhere", "does not exist"], None),
    "MIMIC root is not a path": (lambda t: 3, load_mimic3, ConfigError, ["root", "int"], None),
    "birth date after admission": (mimic3(setcell("PATIENTS", 1, 2, "2100-02-01 00:00:00")), load_mimic3, CohortError,
                                   ["PATIENTS.csv", "1 subject(s)", "birth date after", "subject 1"], None),
    "age above 130 outside MIMIC's shift": (mimic3(setcell("PATIENTS", 1, 2, "1900-01-01 00:00:00")), load_mimic3,
                                            CohortError, ["impossible age above 130", "subject 1", "200"], None),
    "MIMIC's >89 shift becomes 90": (mimic3(setcell("PATIENTS", 1, 2, "1800-01-01 00:00:00")), load_mimic3, None, [],
                                     ages_are({"1": 90.0, "2": 40.0})),
    "patient listed twice, two sexes": (mimic3(addrow("PATIENTS", (1, "F", "2050-01-01 00:00:00"))), load_mimic3,
                                        CohortError, ["PATIENTS.csv", "1 subject(s)", "more than once",
                                                      "sex=M", "sex=F"], None),
    "patient listed twice, two birth dates": (mimic3(addrow("PATIENTS", (1, "M", "2051-01-01 00:00:00"))),
                                              load_mimic3, CohortError, ["more than once", "2051"], None),
    "patient listed twice, identical": (mimic3(addrow("PATIENTS", (1, "M", "2050-01-01 00:00:00"))), load_mimic3,
                                        None, [], visits_are(3)),
    "subject id that is not an integer": (mimic3(setcell("ADMISSIONS", 2, 0, "1b")), load_mimic3, CohortError,
                                          ["ADMISSIONS.csv", "'subject_id'", "line 3", "'1b'", "not an integer"], None),
    "junk code in MIMIC": (mimic3(addrow("DIAGNOSES_ICD", (2, 21, "SELECT 1"))), load_mimic3, CohortWarning,
                           ["1 of 6", "'SELECT 1'", "dropped"], codes_are("4019", "0389", "V5861", "25000")),
    "truncated DIAGNOSES_ICD.csv.gz": (mimic3(addrow("DIAGNOSES_ICD", (2, 21, "4019")), gzip_table="DIAGNOSES_ICD",
                                              truncate=40), load_mimic3, CohortError,
                                       ["DIAGNOSES_ICD.csv.gz", "truncated or damaged gzip"], None),
    "MIMIC-IV ICD-9 part": (mimic4(), load_mimic4, None, [], codes_are("4019", "25000")),
    "MIMIC-IV ICD-10 part": (mimic4(), lambda r: load_mimic4(r, icd_version=10), None, [], codes_are("I10", "E119")),
    "MIMIC-IV icd_version=True": (mimic4(), lambda r: load_mimic4(r, icd_version=True), CohortError,
                                  ["icd_version=True", "9 or 10"], None),
    "MIMIC-IV negative age": (mimic4(setcell("patients", 1, 2, -5)), load_mimic4, CohortError,
                              ["patients.csv.gz", "negative age", "subject 1"], None),
    "MIMIC-IV anchor age not a number": (mimic4(setcell("patients", 2, 2, "thirty")), load_mimic4, CohortError,
                                         ["'anchor_age'", "'thirty'", "not a number"], None),

    # ---- sizes and seeds
    "simulate(True)": (nothing, lambda _: simulate(True), ConfigError, ["n_patients=True", "integer"], None),
    "simulate(-5)": (nothing, lambda _: simulate(-5), ConfigError, ["n_patients=-5"], None),
    "simulate(2.5)": (nothing, lambda _: simulate(2.5), ConfigError, ["n_patients=2.5", "float"], None),
    "simulate(10**12)": (nothing, lambda _: simulate(10**12), ConfigError, ["n_patients=1000000000000", "<= 2000000"],
                         None),
    "simulate seed -1": (nothing, lambda _: simulate(10, seed=-1), ConfigError, ["seed=-1"], None),
    "simulate seed True": (nothing, lambda _: simulate(10, seed=True), ConfigError, ["seed=True"], None),
    "simulate seed 1.5": (nothing, lambda _: simulate(10, seed=1.5), ConfigError, ["seed=1.5"], None),
    "simulate seed 2**64": (nothing, lambda _: simulate(10, seed=2**64), ConfigError,
                            [f"seed={2**64}", f"<= {2**63 - 1}"], None),
    "split seed 2**64": (lambda t: SMALL, lambda c: split(c, n_holdout=1, seed=2**64), ConfigError,
                         [f"seed={2**64}", f"<= {2**63 - 1}"], None),
    "generate seed 2**64": (nothing, lambda _: _marginals().generate(3, seed=2**64), GeneratorError,
                            ["marginals", f"seed={2**64}", "2**63 - 1"], None),
    "split n_holdout True": (lambda t: SMALL, lambda c: split(c, n_holdout=True), ConfigError,
                             ["n_holdout=True"], None),
    "split n_holdout -2": (lambda t: SMALL, lambda c: split(c, n_holdout=-2), ConfigError, ["n_holdout=-2"], None),
    "split n_holdout 2.0": (lambda t: SMALL, lambda c: split(c, n_holdout=2.0), ConfigError, ["n_holdout=2.0"], None),
    "split n_holdout too large": (lambda t: SMALL, lambda c: split(c, n_holdout=4), CohortError,
                                  ["n_holdout=4", "4 subjects"], None),
    "split seed -1": (lambda t: SMALL, lambda c: split(c, n_holdout=1, seed=-1), ConfigError, ["seed=-1"], None),
    "split of something else": (lambda t: SMALL.events, lambda c: split(c, n_holdout=1), ConfigError,
                                ["Cohort", "DataFrame"], None),
    "load simulated n_patients True": (nothing, lambda _: load("simulated", n_patients=True), ConfigError,
                                       ["n_patients=True"], None),
    "load simulated n_patients '10'": (nothing, lambda _: load("simulated", n_patients="10"), ConfigError,
                                       ["n_patients='10'"], None),
    "load simulated seed -1": (nothing, lambda _: load("simulated", n_patients=10, seed=-1), ConfigError,
                               ["seed=-1"], None),
    "load of a non-string source": (nothing, lambda _: load(5), ConfigError, ["data=5"], None),
    "load of an unknown source": (nothing, lambda _: load("mimic5:x"), CohortError, ["mimic5:x", "long:PATH"], None),
    "load long: missing file": (lambda t: f"long:{t / 'gone.csv'}", load, CohortError, ["gone.csv"], None),

    # ---- writing a MEDS dataset: a writer deletes only what it wrote (issue 36)
    "MEDS rewrite over a user's README": (meds_export(put("README.md")), rewrite, CohortError,
                                          ["README.md", "write_meds did not write", "move it out"], None),
    "MEDS rewrite over a user's task_labels/": (meds_export(put("task_labels/mortality.parquet")), rewrite,
                                                CohortError, ["holds task_labels", "did not write"], None),
    "MEDS rewrite over notes in metadata/": (meds_export(put("metadata/notes.md")), rewrite, CohortError,
                                             ["metadata/notes.md"], None),
    "MEDS rewrite over an empty folder the user made": (meds_export(put("extra", None)), rewrite, CohortError,
                                                        ["holds extra"], None),
    "MEDS rewrite over a link inside the dataset": (meds_export(lambda r: (r / "data" / "x.parquet").symlink_to(r.parent)),
                                                    rewrite, CohortError, ["data/x.parquet", "symbolic link"], None),
    "MEDS write to '.' inside an export": (meds_export(), from_cwd("", "."), CohortError,
                                           ["the current folder or a folder above it"], None),
    "MEDS write to '..' of the working directory": (meds_export(put("sub", None), name="m"), from_cwd("sub", ".."),
                                                    CohortError, ["current folder or a folder above it"], None),
    "MEDS write nested in an export": (meds_export(), lambda r: rewrite(r / "marginals"), CohortError,
                                       ["refusing to nest", "write beside it"], None),
    "MEDS write deep inside an export's data/": (meds_export(), lambda r: rewrite(r / "data" / "x" / "y"), CohortError,
                                                 ["refusing to nest"], None),
    "MEDS write to a symbolic link": (lambda t: (meds_export()(t), (t / "l").symlink_to(t / "m"), t / "l")[-1], rewrite,
                                      CohortError, ["is a symbolic link", "never writes through"], None),
    "MEDS write under a file": (under_file("meds"), rewrite, CohortError, ["cannot be written", "is a file, not a folder"],
                                None),
    "MEDS write onto a file": (text("meds", "x"), rewrite, CohortError, ["exists and is not a folder"], None),
    "MEDS write over a folder of something else": (in_folder("d", text("notes.txt", "x")), lambda f: rewrite(f.parent),
                                                   CohortError, ["not a MEDS dataset written by ehrlib", "notes.txt"], None),
    "MEDS splits leave subjects out": (nothing, lambda _: write_meds(
        SMALL, Path("/nonexistent-ehrlib/m"), splits={"train": ["0", "1"], "holdout": ["2"]}), CohortError,
        ["subject '3' is in no split", "rest='train'"], None),
    "MEDS splits overlap": (nothing, lambda _: write_meds(
        SMALL, Path("/nonexistent-ehrlib/m"), splits={"train": ["0", "1", "2"], "holdout": ["2", "3"]}), CohortError,
        ["in split 'holdout' and in split 'train'", "allow_overlap=True"], None),
    "MEDS splits with an unknown rest": (nothing, lambda _: write_meds(
        SMALL, Path("/nonexistent-ehrlib/m"), splits={"train": ["0"]}, rest="test"), ConfigError, ["rest='test'"], None),

    # ---- reading a MEDS dataset
    "MEDS time zone-aware beside naive shards": (
        lambda t: _tz_shards(t), lambda r: load_meds(r), CohortError,
        ["'time' is time-zone aware", "naive in", "without a time zone"], None),
    "MEDS subject_splits.parquet that is CSV text": (
        meds_data({"0": dx_rows([1, 2])}, splits=b"subject_id,split\n1,train\n2,held_out\n"),
        with_splits(), CohortError, ["subject_splits.parquet", "not a readable parquet file", "content is text"], None),
    "MEDS subject_splits.parquet of 0 bytes": (meds_data({"0": dx_rows([1, 2])}, splits=b""), with_splits(),
                                               CohortError, ["empty (0 bytes)"], None),
    "MEDS null split name": (meds_data({"0": dx_rows([1, 2])}, splits=pd.DataFrame({"subject_id": [1, 2],
                                                                                      "split": ["train", None]})),
                             with_splits(), CohortError, ["column 'split', row 1", "missing split name"], None),
    "MEDS split names other than train/held_out": (
        meds_data({"0": dx_rows([1, 2])}, splits=pd.DataFrame({"subject_id": [1, 2], "split": ["TRAIN", "test"]})),
        with_splits(), CohortError, ["no split named 'train'", "'TRAIN'", "rename them"], None),
    "MEDS float subject ids in the splits file": (
        meds_data({"0": dx_rows([1, 2])}, splits=pd.DataFrame({"subject_id": [1.0, 2.0], "split": ["train", "held_out"]})),
        with_splits(), CohortError, ["'subject_id' has type double", "1.0", "int64"], None),
    "MEDS text subject ids in the splits file": (
        meds_data({"0": dx_rows([1, 2])}, splits=pd.DataFrame({"subject_id": ["1", "2"], "split": ["train", "held_out"]})),
        with_splits(), CohortError, ["'subject_id' has type large_string", "'1'", "int64"], None),
    "MEDS hadm_id stored as strings is read": (
        meds_data({"0": dx_rows([1, 2]).astype({"hadm_id": str})}, types={"hadm_id": "string"}),
        lambda r: load_meds(r), None, [], visits_are(2)),
    "MEDS hadm_id text that is no number": (
        meds_data({"0": dx_rows([1]).assign(hadm_id=["a1", "a1"])}, types={"hadm_id": "string"}),
        lambda r: load_meds(r), CohortError,
        ["column 'hadm_id', row 0", "'a1'", "not an integer admission id"], None),
    "MEDS a shard without hadm_id": (meds_data({"0": dx_rows([1]), "1": dx_rows([2], hadm=False)}),
                                     lambda r: load_meds(r), CohortError,
                                     ["1.parquet has no column 'hadm_id'", "visit_column=''"], None),

    # ---- run folders
    "truncated manifest.json": (run_folder(lambda r: r.manifest_path.write_text('{"stages": {"00_da')),
                                lambda r: r.manifest(), RunError,
                                ["manifest.json", "not readable JSON", "move it away"], None),
    "manifest.json that is a list": (run_folder(lambda r: r.manifest_path.write_text("[1, 2]")), lambda r: r.manifest(),
                                     RunError, ["holds a list"], None),
    "manifest.json that is binary": (run_folder(lambda r: r.manifest_path.write_bytes(b"\xff\xfe\x00")),
                                     lambda r: r.manifest(), RunError,
                                     ["not readable JSON"], None),
    "writer lock path that is a folder": (run_folder(lambda r: (r.path / ".writer.lock").mkdir()), holding_writer,
                                          RunError,
                                          [".writer.lock", "is a folder"], None),

    # ---- models: controls checked at construction
    "patience without a validation share": (nothing, get_model("medgan", patience=2, val_fraction=0.0), ConfigError,
                                            ["patience=2", "val_fraction=0.0", "holds none out"], None),
    "patience without a validation share (gpt)": (nothing, get_model("gpt", patience=1, val_fraction=0.0), ConfigError,
                                                  ["gpt", "patience=1", "val_fraction=0.0"], None),
    "a validation share that holds nobody out": (nothing, fit_model("gpt", 2, patience=2, val_fraction=0.1),
                                                 ConfigError, ["val_fraction=0.1 of 2", "holds nobody out"], None),
    "a validation share with one training patient": (nothing, fit_model("medgan", 1, patience=2, val_fraction=0.2),
                                                     ConfigError, ["of 1 training patient", "patience=0"], None),
    "memorizer given patience": (nothing, get_model("memorizer", patience=3), ConfigError,
                                 ["memorizer", "patience not accepted", "no training fields"], None),
    "marginals given epochs": (nothing, get_model("marginals", None, epochs=2), ConfigError,
                               ["marginals", "epochs not accepted"], None),
    "holdout given val_fraction beside records": (nothing, get_model("holdout", None, records=SMALL, val_fraction=0.1),
                                                  ConfigError, ["val_fraction not accepted", "accepted: ['records']"], None),

    # ---- user generators, fenced in
    "user fit that mutates the training cohort": (saved_small, user_fit("Mutator"), GeneratorError,
                                                  ["mutator", "fit changed the training cohort", "data file is intact"],
                                                  None),
    "user fit that rewrites a training code": (saved_small, user_fit("RenamesCodes"), GeneratorError,
                                               ["changed the training cohort", "copy train.events"], None),
    "user generator writing into its working directory, codes unseen": (
        saved_small, user_fit("Scribbler", n=2), None, [], unseen({"unseen_codes": 2, "other_icd_version": 1})),
    "user generate that mutates the training cohort": (saved_small, user_fit("MutatesInGenerate"), GeneratorError,
                                                        ["generate changed the training cohort", "after generate"], None),
    "user generator whose codes were all seen in training": (saved_small, user_fit("Faithful"), None, [],
                                                             unseen({"unseen_codes": 0, "other_icd_version": 0})),
    "--set generators= with --generator": (nothing, lambda _: _cli(["reproduce", "--set", "generators=a=m:A",
                                                                      "--generator", "b=m:B", "--no-book"]),
                                           EhrlibError, ["--set generators=", "--generator", "one way"], None),

    # ---- the command line
    "evaluate --reference equal to --train": (lambda t: _eval_files(t), lambda f: _cli(_evaluate(f, reference=f["train"])),
                                              EhrlibError, ["--reference", "overlaps --train", "subject id(s) in both"],
                                              None),
    "evaluate --reference equal to --holdout": (lambda t: _eval_files(t),
                                                lambda f: _cli(_evaluate(f, reference=f["holdout"])), EhrlibError,
                                                ["overlaps --holdout", "in neither train nor holdout"], None),
    "evaluate --reference sharing one subject with --holdout": (
        lambda t: _eval_files(t, shared=1), lambda f: _cli(_evaluate(f, reference=f["reference"])), EhrlibError,
        ["overlaps --holdout", "1 subject id(s)"], None),
    "evaluate --out a symbolic link": (lambda t: _eval_files(t, link=True), lambda f: _cli(_evaluate(f, out=f["link"])),
                                       EhrlibError, ["is a symbolic link", "never writes through"], None),
    "evaluate --train meds:DIR#SPLIT of an unknown split": (
        meds_export(), lambda r: _cli(["stats", f"meds:{r}#test"]), EhrlibError, ["split 'test'", "meds:DIR#SPLIT"], None),
    "export --cohort a MEDS folder without meds:": (meds_export(), lambda r: _cli(["export", "--format", "meds",
                                                                                    "--cohort", str(r), "--out",
                                                                                    str(r.parent / "n")]),
                                                    EhrlibError, ["is a folder", f"--cohort meds:"], None),
    "export --cohort meds:DIR onto itself": (meds_export(), lambda r: _cli(["export", "--format", "meds", "--cohort",
                                                                           f"meds:{r}", "--out", str(r)]),
                                             EhrlibError, ["is the MEDS dataset being read"], None),
    "export --out a symbolic link": (lambda t: (SMALL.save(t / "c.parquet"), (t / "l").symlink_to(t), t)[-1],
                                     lambda t: _cli(["export", "--format", "meds", "--cohort", str(t / "c.parquet"),
                                                     "--out", str(t / "l")]), EhrlibError, ["is a symbolic link"], None),

    # ---- Cohort.load (the format Cohort.save writes)
    "Cohort.load missing": (lambda t: t / "c.parquet", Cohort.load, CohortError, ["c.parquet", "not found"], None),
    "Cohort.load CSV named .parquet": (text("c.parquet", LONG), Cohort.load, CohortError,
                                       ["c.parquet", "not a readable cohort parquet"], None),
    "Cohort.load truncated": (parquet("c.parquet", events([(i, 0, "4019") for i in range(500)]), truncate=300),
                              Cohort.load, CohortError, ["c.parquet", "not a readable"], None),
    "Cohort.load other columns": (parquet("c.parquet", pd.DataFrame({"a": [1]})), Cohort.load, CohortError,
                                  ["c.parquet", "missing", "Cohort.save"], None),
    "Cohort.load not a path": (nothing, Cohort.load, ConfigError, ["path", "NoneType"], None),
}



def _tz_shards(tmp: Path) -> Path:
    """A MEDS folder with one shard of time-zone-aware times and one of naive times."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp / "meds"
    (root / "data").mkdir(parents=True)
    for name, tz in (("0", "UTC"), ("1", None)):
        frame = dx_rows([int(name) + 1])
        schema = pa.schema([("subject_id", pa.int64()), ("time", pa.timestamp("us", tz=tz)), ("code", pa.string()),
                            ("hadm_id", pa.int64())])
        if tz:
            frame["time"] = frame["time"].dt.tz_localize(tz)
        pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), root / "data" / f"{name}.parquet")
    return root



def _eval_files(tmp: Path, shared: int = 0, link: bool = False) -> dict:
    """train, holdout, reference and synthetic long-format files of disjoint subjects (``shared``
    reference subjects taken from the holdout), and a link ``l`` to ``tmp`` when asked."""
    rows = {"train": range(0, 8), "holdout": range(10, 16), "reference": [*range(20, 26 - shared), *range(10, 10 + shared)],
            "synthetic": range(30, 36)}
    out = {}
    for name, ids in rows.items():
        out[name] = tmp / f"{name}.csv"
        out[name].write_text("SUBJECT_ID,HADM_ID,ICD9_CODE\n" + "".join(f"{s},1,{'4019' if s % 2 else '0389'}\n"
                                                                         for s in ids))
    if link:
        (tmp / "l").symlink_to(tmp)
        out["link"] = tmp / "l"
    return out


def _evaluate(files: dict, reference=None, out=None) -> list:
    argv = ["evaluate", "--train", str(files["train"]), "--holdout", str(files["holdout"]), "--synthetic",
            str(files["synthetic"]), "--out", str(out or files["train"].parent / "out"), "--discriminators", "none",
            "--n-bootstrap", "10"]
    return argv + (["--reference", str(reference)] if reference else [])

class _Exit(EhrlibError):
    """What ``ehrbench`` printed when it exited with an error (the CLI's one line)."""


def _cli(argv):
    """``ehrbench argv`` in the repository; its one-line error raised as :class:`_Exit`."""
    import contextlib
    import io

    from ehrlib.cli import main

    err = io.StringIO()
    here = os.getcwd()
    os.chdir(Path(__file__).resolve().parents[1])
    try:
        with contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(here)
    if code:
        raise _Exit(err.getvalue().strip())
    return code

def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path):
    build, call, expected, words, check = CASES[case]
    arg = build(tmp_path)
    before = snapshot(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if expected is not None and not issubclass(expected, Warning):
            with pytest.raises(expected) as info:
                call(arg)
            message = str(info.value)
            assert isinstance(info.value, EhrlibError)
        else:
            try:
                result = call(arg)
            except EhrlibError as exc:  # pragma: no cover - the failure message is the point
                pytest.fail(f"{case}: raised {type(exc).__name__}: {exc}")
            ours = [w for w in caught if issubclass(w.category, CohortWarning)]
            if expected is None:
                assert not ours, [str(w.message) for w in ours]
                message = ""
            else:
                assert ours, f"{case}: no {expected.__name__}"
                message = " | ".join(str(w.message) for w in ours)
            if check is not None:
                check(result)
    message = message.replace(str(tmp_path), "<tmp>")  # the words must not come from the folder's name
    for word in words:
        assert word in message, f"{word!r} not in {message[:MAX_MESSAGE]!r}"
    for line in message.split(" | "):
        assert len(line) < MAX_MESSAGE, f"message of {len(line)} characters"
    assert snapshot(tmp_path) == before, "the call changed the folder"


def test_dotted_warning_is_not_used_for_things_that_are_not_dotted_codes(tmp_path):
    p = long_rows(GOOD + [(9, 1, "../x.y"), (9, 1, "a.b.c"), (9, 1, "DROP.TABLE")])(tmp_path)
    with pytest.warns(CohortWarning) as caught:
        read_long(p)
    assert not any("written with a dot" in str(w.message) for w in caught)


@pytest.mark.parametrize("folder, column", [("mimic-iii-demo", "icd9_code"), ("paper-samples", "ICD9_CODE")])
def test_real_icd9_files_are_not_taken_for_icd10_or_lost_zeros(folder, column):
    from conftest import SHARED_DATA

    from ehrlib.data.icd9 import check_code_kinds

    files = sorted(p for p in (SHARED_DATA / folder).glob("*.csv*") if "DIAGNOSES" in p.name.upper() or "synthetic" in p.name)
    if not files:
        pytest.skip(f"../shared/data/{folder} not present")
    for p in files:
        codes = pd.read_csv(p, dtype=str, usecols=lambda c: c.lower() == column.lower()).iloc[:, 0]
        with warnings.catch_warnings():
            warnings.simplefilter("error", CohortWarning)
            assert check_code_kinds(codes, str(p)) == []



# ---------------------------------------------------------------- user generators and metric stages (their own tests:
# they move files or read a run, which the corpus's unchanged-folder rule does not allow)
def test_files_written_into_the_runs_synthetic_folder_while_a_generator_runs_are_refused_not_evaluated(tmp_path):
    from types import SimpleNamespace

    from ehrlib import pipeline
    from ehrlib.models import user
    from ehrlib.runs import Run

    run = Run(tmp_path / "r")
    folder = run.dir("synthetic")
    SMALL.save(folder / "marginals.parquet")
    before = pipeline._folder_state(folder)
    SMALL.save(folder / "stray.parquet")
    with pytest.raises(GeneratorError, match=r"new stray.parquet \(moved to refused/, not evaluated\)"):
        pipeline._no_strays(SimpleNamespace(run=run), folder, before, user_spec("Scribbler"))
    assert not (folder / "stray.parquet").exists() and (run.path / user.REFUSED_DIR / "stray.parquet").is_file()
    os.utime(folder / "marginals.parquet", ns=(1, 1))
    with pytest.raises(GeneratorError, match="changed marginals.parquet"):
        pipeline._no_strays(SimpleNamespace(run=run), folder, before, user_spec("Scribbler"))


def test_a_cohort_too_small_for_a_metric_fails_its_own_row_by_name_not_the_stage():
    from ehrlib import pipeline
    from ehrlib.metrics.context import EvaluationContext

    train, holdout = simulate(60, seed=1), simulate(40, seed=2).renamed("H")
    ctx = EvaluationContext(train, holdout, {"ok": simulate(30, seed=3).renamed("S"),
                                             "user_tiny": simulate(1, seed=4).renamed("T")})
    failed = {}
    out = pipeline._each_model(ctx, ["privacy"], failed, progress=False)
    assert set(out["model"]) == {"ok"}
    assert list(failed) == ["user_tiny"] and "privacy metrics" in failed["user_tiny"]
    alone = EvaluationContext(train, holdout, {"user_tiny": simulate(1, seed=4).renamed("T")})
    with pytest.raises(EhrlibError, match="at least 2"):  # nothing else to evaluate: the stage fails, saying why
        pipeline._each_model(alone, ["privacy"], {}, progress=False)


def test_help_lists_each_command_once(capsys):
    from ehrlib.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out
    assert usage.count("ehrbench audit ") == 1 and usage.count("ehrbench export ") == 1


def test_table1_is_built_when_a_user_cohort_is_too_small_and_its_row_names_it_and_its_unseen_codes(tmp_path,
                                                                                                     monkeypatch):
    from ehrlib import pipeline, runs
    from ehrlib.models import user

    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    pipeline.split_cohort(runs.stage("00_data", run="t", profile="smoke", seed=0), simulate(200, seed=0))
    pipeline.reference_generators(runs.stage("15_reference_generators", run="t", profile="smoke", seed=0))
    s17 = runs.stage("17_user_generators", run="t", profile="smoke", seed=0)
    tiny = Cohort.from_events(events([("SYN1", 0, "4019"), ("SYN1", 0, "XYZZY"), ("SYN1", 1, "I10")]))
    s17.save_synthetic("user_tiny", tiny)
    s17.record(codes={"user_tiny": user.code_report(tiny, s17.train)}, failed={})
    pipeline.evaluate(runs.stage("32_privacy", run="t", profile="smoke", seed=0), "privacy")
    wide = pipeline.table1(runs.stage("33_table1", run="t", profile="smoke", seed=0))
    row = wide[wide["model"] == "user_tiny"]
    assert len(row) and row["status"].str.contains("failed: privacy metrics").all()
    assert row["codes"].str.contains("2 code\\(s\\) unseen in training").all()
    assert row["codes"].str.contains("1 of them ICD-10-shaped in an ICD-9 run").all()
    assert wide.loc[wide["model"] == "marginals", "status"].isna().all()
