"""MIMIC-IV (hosp module) loader: patients, admissions, diagnoses_icd -> Cohort.

One ICD version at a time: ``icd_version=9`` (default, comparable with MIMIC-III and the
paper) or ``10``. The two are never mixed, and versions are split before any code is
interpreted, because ICD-10 codes also start with ``E`` and ``V``.

Age is ``anchor_age + (year of first admission - anchor_year)``, capped at 90 like MIMIC-III.
"""
from __future__ import annotations


from ehrlib.cohort import CODE, SEX, Cohort, CohortError
from ehrlib.data.mimic3 import assemble
from ehrlib.data.tables import as_path, find_table, parse_datetimes, read_csv, require_folder


def load_mimic4(root, icd_version: int = 9) -> Cohort:
    """Load MIMIC-IV diagnoses of one ICD version as a Cohort with age and sex.

    Args:
        root: the MIMIC-IV folder (containing ``hosp/``) or the ``hosp`` folder itself.
        icd_version: 9 or 10.

    Codes must have the shape of ``icd_version`` (see :func:`ehrlib.data.mimic3.assemble` for
    the rules on codes, ages and sexes; age is ``anchor_age`` moved to the first admission).

    Raises:
        CohortError: as :func:`ehrlib.data.load_mimic3`, or an ``icd_version`` other than 9/10.
    """
    if isinstance(icd_version, bool) or icd_version not in (9, 10):
        raise CohortError(f"icd_version={icd_version!r}: expected 9 or 10")
    root = as_path(root, "root")
    require_folder(root, "MIMIC-IV folder")
    hosp = require_folder(root / "hosp", "MIMIC-IV hosp folder") if (root / "hosp").exists() else root
    p_path = find_table(hosp, "patients")
    a_path = find_table(hosp, "admissions")
    d_path = find_table(hosp, "diagnoses_icd")
    patients = read_csv(p_path, {"subject_id": "Int64", "gender": "string", "anchor_age": "float64",
                                 "anchor_year": "float64"})
    admissions = read_csv(a_path, {"subject_id": "Int64", "hadm_id": "Int64", "admittime": "string"})
    diagnoses = read_csv(d_path, {"subject_id": "Int64", "hadm_id": "Int64", "icd_code": "string",
                                  "icd_version": "Int64"})
    admissions["admittime"] = parse_datetimes(admissions["admittime"], a_path, "admittime")
    diagnoses = diagnoses[diagnoses["icd_version"] == icd_version]
    if diagnoses.empty:
        raise CohortError(f"{d_path}: no ICD-{icd_version} diagnoses (column 'icd_version')")
    return assemble(
        patients.rename(columns={"gender": SEX}),
        admissions,
        diagnoses.rename(columns={"icd_code": CODE}),
        paths=(p_path, a_path, d_path),
        birth=None,
        anchor=("anchor_age", "anchor_year"),
        source=f"{root} (ICD-{icd_version})",
        icd_version=icd_version,
    )
