"""Data sources by name, and checksummed downloads of the open MIMIC demos.

``load("simulated")`` needs nothing; ``load("mimic3-demo")`` and ``load("mimic4-demo")`` use
local copies under the data folder (``$EHRLIB_DATA_DIR``, default ``./data``) and, only when
``download=True`` is asked for, fetch the missing files from PhysioNet's open-access pages,
verifying each against its sha256 before it is moved into place.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ehrlib.cohort import Cohort, CohortError, check_int, check_seed
from ehrlib.data.tables import LOOK_EVENT, looked_for  # noqa: F401  (the stage context's recorded look-ups)
from ehrlib.errors import ConfigError

ENV_DATA_DIR = "EHRLIB_DATA_DIR"
PAPER_COMMIT = "6772a2cbb38e81234f264c3abf0c639b2ba62b18"  # chufangao/reproducible_synthetic_ehr
PAPER_FILES_DIR = Path(__file__).with_name("paper_split")
"""The authors' small files shipped with ehrlib under their MIT licence (``LICENSE`` there): the
train/test id lists of the paper's split and their Figure 3 results file."""
AUTHORS_FIG3_COMMIT = "41e1060a16ba7359dcd1449fc99bf1cbf0006371"
AUTHORS_FIG3 = PAPER_FILES_DIR / "long_tailed_ablation.csv"
"""The values behind the paper's Figure 3, as the authors' repository publishes them
(``results/long_tailed_ablation.csv`` at commit :data:`AUTHORS_FIG3_COMMIT`; MIT licence)."""


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str          # local folder under the data dir
    url: str             # PhysioNet base URL
    files: dict          # relative path -> sha256
    notice: str
    remote: dict = field(default_factory=dict)   # local relative path -> path under ``url`` when they differ
    bundled: dict = field(default_factory=dict)  # local relative path -> file shipped with ehrlib (copied, not downloaded)
    extras: dict = field(default_factory=dict)   # relative path -> sha256: checked when present, copied only on request


DATASETS = {
    "mimic3-demo": Dataset(
        "mimic3-demo", "mimic-iii-demo", "https://physionet.org/files/mimiciii-demo/1.4",
        {
            "PATIENTS.csv": "f65803a46bcb88127574bfd0b70d78d4123783d05bb411e70d4c9629edd7b703",
            "ADMISSIONS.csv": "487e0b87cc81472cc2eb9ee911b3493c39e15d32e8230cec559907060c009b1c",
            "DIAGNOSES_ICD.csv": "74dc979906bc2172f0cf025271dcd44c7cd52506b297e4b36e63dd40dce923da",
        },
        "Contains information from the MIMIC-III Clinical Database Demo (v1.4), made available "
        "under the Open Database License (ODbL). Johnson A, Pollard T, Mark R. PhysioNet.",
    ),
    "mimic4-demo": Dataset(
        "mimic4-demo", "mimic-iv-demo", "https://physionet.org/files/mimic-iv-demo/2.2",
        {
            "hosp/patients.csv.gz": "59dcc6cd8450ddf03ad32cc7d76e41caa4c9633541715987f590c74835cf6fae",
            "hosp/admissions.csv.gz": "910b9f160ffdf1e08ea673585393f347c773ccc87d66875c627584a903ae8493",
            "hosp/diagnoses_icd.csv.gz": "958565670c0b3903c0c12825366dc2bae8561d2d55f16feac0c949dd630ed3e4",
        },
        "Contains information from the MIMIC-IV Clinical Database Demo (v2.2), made available "
        "under the Open Database License (ODbL). Johnson A et al. PhysioNet, "
        "https://doi.org/10.13026/dp1f-ex47.",
    ),
    "paper-samples": Dataset(
        "paper-samples", "paper-samples",
        f"https://raw.githubusercontent.com/chufangao/reproducible_synthetic_ehr/{PAPER_COMMIT}/synthetic_data",
        {
            "synthetic_10k_halo.csv": "7e7ca1c8b6ac54bc5ddc1f036a4cb5610b0224f57a8e60c4204bea0980574bdc",
            "synthetic_10k_promptehr.csv": "5a1eb5bda8364710c8c9564c782dfbb223025f6908fd1cbf73390e9af01ff6d1",
            "transformer_baseline_synthetic_ehr.csv": "02935f295a9585f30afb9607a84024e2bce3276f8d7a546a34391256df7989af",
            "synthetic_10k_medgan.csv": "c670dfc4bb8c53028d36a74ffe48de76dd126edd8886f7d36e7f8e342d5e9c2e",
            "synthetic_10k_corgan.csv": "60d785eb0704e214efb681392c433b10ab399abf78139dff69ae5e2fe0389da2",
            "LICENSE": "c77982b9ac6cdf80cbef248bff92f433a1d2fe03b106a91726110e22f54e9065",
        },
        "Synthetic samples released by Gao et al. with 'Accelerating Reproducible Research in Synthetic "
        "EHR Generation' (github.com/chufangao/reproducible_synthetic_ehr, commit "
        f"{PAPER_COMMIT[:7]}, MIT License); generated from models trained on MIMIC-III.",
        remote={"transformer_baseline_synthetic_ehr.csv": "transformer_baseline/transformer_baseline_synthetic_ehr.csv"},
        bundled={"LICENSE": PAPER_FILES_DIR / "LICENSE", AUTHORS_FIG3.name: AUTHORS_FIG3},
        extras={AUTHORS_FIG3.name: "8fdd2512276ee90be14b162d6bcdb8542b17d57ea3401b2a953d222549b7085d"},
    ),
}

# The released samples by generator name (file names as in the authors' repository).
PAPER_SAMPLE_FILES = {
    "medgan": "synthetic_10k_medgan.csv",
    "corgan": "synthetic_10k_corgan.csv",
    "promptehr": "synthetic_10k_promptehr.csv",
    "halo": "synthetic_10k_halo.csv",
    "gpt": "transformer_baseline_synthetic_ehr.csv",
}
# Column layouts of the released files (upper-cased header, in file order).
PAPER_SAMPLE_LAYOUTS = (
    ("SUBJECT_ID", "ICD9_CODE", "HADM_ID"),
    ("SUBJECT_ID", "HADM_ID", "ICD9_CODE"),
    ("SUBJECT_ID", "ICD9_CODE"),
)


def data_dir() -> Path:
    """The data folder: ``$EHRLIB_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get(ENV_DATA_DIR, "data"))


#: Audit event raised for a data file or folder named by a source (``long:PATH``, ``mimic3:PATH``):
#: the stage context records every file opened under it.
WATCH_EVENT = "ehrlib.watch"
#: The source kinds that name a path (``kind:PATH``).
PATH_KINDS = ("mimic3", "mimic4", "mimic4-icd10", "long", "meds", "meds-icd10")


def resolve_source(source, cwd=None):
    """``source`` with the path of a ``kind:PATH`` source made absolute against ``cwd`` (default this
    process's folder) and ``~`` expanded; any other value unchanged. ``ehrbench reproduce`` resolves
    ``--data`` so, whatever ``--root`` is, a relative path names the user's file, not one in the
    repository the stages' kernels start in."""
    if not isinstance(source, str):
        return source
    kind, sep, path = source.partition(":")
    if not (sep and path and kind in PATH_KINDS):
        return source
    full = Path(path).expanduser()
    if not full.is_absolute():
        full = Path(cwd or os.getcwd()) / full
    return f"{kind}:{os.path.normpath(full)}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _install_checked(target: Path, digest: str, open_source, mismatch) -> None:
    """Copy ``open_source()``'s bytes to ``target`` through a temporary file beside it, and rename
    it into place only when its sha256 is ``digest`` (else ``CohortError(mismatch(got))``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open_source() as src:
            shutil.copyfileobj(src, out)
        got = sha256(Path(tmp))
        if got != digest:
            raise CohortError(mismatch(got))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch(name: str, root: Path | None = None, *, download: bool = False, base_url: str | None = None,
          timeout: float = 60) -> Path:
    """Make the files of dataset ``name`` available and verified; return their folder.

    Files already present with the right sha256 are used as they are. Missing files are
    downloaded only if ``download`` is true (from ``base_url`` if given, else PhysioNet) into a
    temporary file, checked, then renamed into place; a bad checksum never replaces anything.

    Raises:
        CohortError: unknown dataset, a present file with the wrong checksum, a missing file
            when ``download`` is false, or a failed download; each says what to do.
    """
    if name not in DATASETS:
        raise CohortError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    ds = DATASETS[name]
    folder = (root or data_dir()) / ds.folder
    base = (base_url or ds.url).rstrip("/")
    for rel, digest in {**ds.files, **ds.extras}.items():
        target = folder / rel
        if rel in ds.extras and not (download or target.is_file()):
            continue  # an extra is copied in by an explicit fetch only; reading the data never writes it
        looked_for(target)  # found or not: a stage that found it missing is out of date once it is there
        if target.is_file():
            got = sha256(target)
            if got != digest:
                raise CohortError(
                    f"{target}: sha256 {got} does not match the published {digest}; delete the file to download it again"
                )
            continue
        if rel in ds.bundled:
            source = ds.bundled[rel]
            _install_checked(target, digest, lambda: open(source, "rb"),
                             lambda got: f"{source}: sha256 {got}, expected {digest}; the ehrlib install is damaged")
            continue
        if not download:
            raise CohortError(
                f"{target} is missing. Download it once with ehrlib.data.registry.fetch({name!r}, download=True) "
                f"(or `ehrbench fetch {name}`), or set {ENV_DATA_DIR} to a folder that holds "
                f"{ds.folder}/{rel} (e.g. a copy from {ds.url})"
            )
        url = f"{base}/{ds.remote.get(rel, rel)}"
        try:
            _install_checked(target, digest, lambda: urllib.request.urlopen(url, timeout=timeout),
                             lambda got: f"{url}: downloaded file has sha256 {got}, expected {digest}; nothing was written")
        except (urllib.error.URLError, OSError) as e:
            raise CohortError(
                f"could not download {url} ({e}). Offline? Set {ENV_DATA_DIR} to a folder holding "
                f"{ds.folder}/{rel}, copied from {ds.url}"
            ) from None
    return folder


def notice(source: str) -> str:
    """The attribution notice required for results computed from ``source`` ('' if none)."""
    ds = DATASETS.get(source)
    if ds:
        return ds.notice
    if source.startswith(("mimic3:", "mimic4:")):
        return "Contains information from MIMIC (PhysioNet credentialed access); do not share row-level data."
    return ""


def load(source: str = "simulated", *, n_patients: int | None = None, seed: int = 0,
         download: bool = False, root: Path | None = None) -> Cohort:
    """Load a cohort by source name.

    Args:
        source: ``simulated``, ``mimic3-demo``, ``mimic4-demo``, ``mimic3:PATH``,
            ``mimic4:PATH`` (ICD-9), ``mimic4-icd10:PATH``, ``long:PATH``, or ``meds:PATH`` /
            ``meds-icd10:PATH`` (a MEDS dataset folder, :func:`ehrlib.data.load_meds`).
        n_patients: size of the simulated cohort (required for ``simulated``).
        seed: seed of the simulated cohort.
        download: allow downloading the open demos.

    Raises:
        ConfigError: a bool, negative or non-integer ``n_patients`` or ``seed``, or no
            ``n_patients`` for ``simulated``.
        CohortError: an unknown source, or anything the loader of the source raises.
    """
    if not isinstance(source, str):
        raise ConfigError(f"data={source!r}: expected a string such as 'simulated' or 'mimic3:PATH'")
    from ehrlib.data.longformat import read_long
    from ehrlib.data.mimic3 import load_mimic3
    from ehrlib.data.mimic4 import load_mimic4
    from ehrlib.data.simulate import simulate

    if source == "simulated":
        if n_patients is None:
            raise ConfigError("data='simulated' needs n_patients (the profile sets it)")
        return simulate(check_int(n_patients, "n_patients", minimum=1), seed=check_seed(seed))
    if source == "mimic3-demo":
        return load_mimic3(fetch(source, root, download=download))
    if source == "mimic4-demo":
        return load_mimic4(fetch(source, root, download=download))
    kind, sep, path = source.partition(":")
    if sep and path and kind in PATH_KINDS:
        # every file the loader opens under the path is the stage's input; a MEDS dataset is read by
        # pyarrow, unseen by an audit of Python's opens, so its folder is an input as a whole
        sys.audit(WATCH_EVENT, os.fspath(path))
        if kind in ("long", "meds", "meds-icd10"):
            looked_for(path)
    if sep and path:
        if kind == "mimic3":
            return load_mimic3(path)
        if kind == "mimic4":
            return load_mimic4(path, icd_version=9)
        if kind == "mimic4-icd10":
            return load_mimic4(path, icd_version=10)
        if kind == "long":
            return read_long(path)
        if kind in ("meds", "meds-icd10"):
            from ehrlib.data.medsformat import load_meds

            return load_meds(path, icd_version=10 if kind == "meds-icd10" else 9)
    raise CohortError(
        f"data={source!r}: expected 'simulated', 'mimic3-demo', 'mimic4-demo', 'mimic3:PATH', "
        "'mimic4:PATH', 'mimic4-icd10:PATH', 'long:PATH', 'meds:PATH' or 'meds-icd10:PATH'"
    )


def read_sample(path) -> Cohort:
    """Read one of the paper's released synthetic samples, reporting what cleaning dropped.

    The released files use three column layouts (:data:`PAPER_SAMPLE_LAYOUTS`; MedGAN's has no
    visit column, so each patient is one visit). Some hold the string ``nan`` as a code and
    repeat codes within a visit; the canonical Cohort drops both, and a warning that names the
    file says how many rows each removed (``read_long``'s own report where it gives one).

    Raises:
        CohortError: the header is not one of the released layouts (file and line 1 named), or
            the file cannot be read as a cohort.
    """
    import warnings

    import pandas as pd

    from ehrlib.cohort import MISSING_CODE_STRINGS
    from ehrlib.data.longformat import read_long
    from ehrlib.data.tables import read_header

    path = Path(path)
    if not path.is_file():
        raise CohortError(f"{path}: no such file")
    header = tuple(str(c).strip().upper() for c in read_header(path))
    if header not in PAPER_SAMPLE_LAYOUTS:
        raise CohortError(
            f"{path}, line 1: header {','.join(header)!r} is not a layout of the released samples; expected "
            + " or ".join(repr(",".join(layout)) for layout in PAPER_SAMPLE_LAYOUTS)
        )
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    raw.columns = [str(c).strip().upper() for c in raw.columns]
    code = raw["ICD9_CODE"].str.strip().str.upper().str.replace(".", "", regex=False)
    missing = code.isin(MISSING_CODE_STRINGS)
    visit = raw["HADM_ID"].str.strip() if "HADM_ID" in raw.columns else pd.Series("0", index=raw.index)
    kept = pd.DataFrame({"s": raw["SUBJECT_ID"].str.strip(), "v": visit, "c": code})[~missing.to_numpy()]
    repeated = int(kept.duplicated().sum())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = read_long(path)
    for w in caught:  # pass on what read_long said
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    said = " ".join(str(w.message) for w in caught)
    if (missing.any() or repeated) and "missing code" not in said:  # read_long did not report the drops
        warnings.warn(
            f"{path}: dropped {int(missing.sum())} row(s) with a missing code (e.g. 'nan') and {repeated} "
            f"row(s) repeating a code within a visit, of {len(raw)} rows; {cohort.n_events} events remain",
            stacklevel=2,
        )
    return cohort


def load_paper_samples(root: Path | None = None, *, download: bool = False, names=None) -> dict:
    """The paper's five released 10,000-patient synthetic samples as ``{generator: Cohort}``.

    Args:
        root: the data folder (default ``$EHRLIB_DATA_DIR`` or ``./data``); the files live in
            its ``paper-samples/`` folder.
        download: fetch missing files from the pinned commit of the authors' repository.
        names: generators to load (keys of :data:`PAPER_SAMPLE_FILES`); default all five.

    Raises:
        CohortError: an unknown name, or anything :func:`fetch` or :func:`read_sample` raises.
    """
    names = list(PAPER_SAMPLE_FILES) if names is None else list(names)
    unknown = [n for n in names if n not in PAPER_SAMPLE_FILES]
    if unknown:
        raise CohortError(f"unknown paper sample(s) {unknown}; expected some of {list(PAPER_SAMPLE_FILES)}")
    folder = fetch("paper-samples", root, download=download)
    return {n: read_sample(folder / PAPER_SAMPLE_FILES[n]) for n in names}
