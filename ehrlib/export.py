"""``ehrbench export --format meds``: cohorts of a file or a run as MEDS datasets.

* a cohort file (``Cohort.save`` parquet or any long-format file ``read_long`` reads) -> one dataset;
* a run's real splits (``data/train``, ``holdout``, ``reference``) -> one dataset whose
  ``subject_splits`` are ``train`` / ``held_out`` / ``tuning``;
* every synthetic cohort of a run -> one dataset per generator under ``OUT/<name>/``, naming the
  generator, the profile, the seed and the commit of the stage that made it. The reference
  generators that return real records (``holdout``, ``memorizer``: renamed copies of real
  patients) are left out, saying so, unless ``include_real_records`` is asked for.

The conventions of the written datasets are those of :func:`ehrlib.data.write_meds`, and so is
what may be replaced: a dataset folder lists the files it wrote, and a new export refuses a
folder holding anything else (naming it), a symbolic link, the current folder or one above it,
and a folder inside another export (``--what synthetic`` into a real-splits dataset), so an
export never deletes a file it did not write.
"""
from __future__ import annotations

from pathlib import Path

from ehrlib import stages
from ehrlib.errors import RunError

#: What ``export`` can write from a run.
WHAT = ("real", "synthetic")


def _icd_version(data: str) -> int:
    return 10 if str(data).split(":")[0].endswith("icd10") else 9


def _writer_of(manifest: dict, rel: str) -> dict:
    """The params of the stage whose outputs list ``rel`` (``{}`` when none does)."""
    for entry in manifest.get("stages", {}).values():
        if rel in entry.get("outputs", []):
            return entry.get("params", {})
    return {}


def export_cohort(path, out, *, icd_version: int = 9) -> Path:
    """A cohort file (anything :func:`ehrlib.data.read_long` reads, or ``meds:DIR``, a MEDS dataset
    :func:`ehrlib.data.load_meds` reads, with its splits) as a MEDS dataset in ``out``."""
    from ehrlib.data import load_meds, meds_splits, read_long, write_meds

    text = str(path)
    if text.startswith("meds:"):
        source = Path(text[len("meds:"):])
        if Path(out).resolve() == source.resolve():
            raise RunError(f"--out {out}: is the MEDS dataset being read ({text}); write into a new folder")
        cohort = load_meds(source, icd_version=icd_version)
        splits = None
        if (source / "metadata" / "subject_splits.parquet").is_file():
            splits = meds_splits(source, cohort)
        return write_meds(cohort, out, icd_version=icd_version, dataset_name=source.name, source=text,
                          splits=splits, rest="train" if splits else None)
    path = Path(path)
    if path.is_dir() and (path / "data").is_dir():
        raise RunError(f"--cohort {path}: is a folder (a MEDS dataset?); pass --cohort meds:{path} for a MEDS dataset, "
                       "or a cohort file")
    cohort = read_long(path, icd_version=icd_version)  # reads Cohort.save files and other long formats
    return write_meds(cohort, out, icd_version=icd_version, dataset_name=path.stem, source=str(path))


def _check_parent(out: Path) -> None:
    """``out`` (the parent of one dataset per generator) is no link, no written dataset."""
    from ehrlib.data.medsformat import _ehrlib_dataset

    if out.is_symlink():
        raise RunError(f"--out {out}: is a symbolic link; export never writes through a link it did not make: give "
                       "the folder it points to, or a new folder")
    if _ehrlib_dataset(out) is not None:
        raise RunError(f"--out {out}: is a MEDS dataset written by ehrlib (an earlier export); refusing to nest the "
                       "synthetic datasets in it: write them into another folder")


def export_run(run, out, what: str = "synthetic", include_real_records: bool = False) -> list[Path]:
    """The real splits (``what="real"``) or every synthetic cohort (``"synthetic"``) of ``run``
    (a :class:`ehrlib.runs.Run`) as MEDS datasets under ``out``; returns the dataset folders.
    Cohorts of real records (stage 15's ``holds_real_records``) are written only with
    ``include_real_records``."""
    from ehrlib.data import write_meds

    if what not in WHAT:
        raise RunError(f"export: what={what!r}; expected one of {WHAT}")
    manifest = run.manifest()
    data_params = manifest.get("stages", {}).get(stages.DATA, {}).get("params", {})
    icd = _icd_version(data_params.get("data", ""))
    common = dict(icd_version=icd, commit=manifest.get("git_commit"))
    out = Path(out)
    if what == "real":
        present = [s for s in ("train", "holdout", "reference") if (run.path / "data" / f"{s}.parquet").is_file()]
        if "train" not in present:
            raise RunError(f"run {run.name!r} has no data/train.parquet: run notebook {stages.DATA} first")
        splits = {s: run.load_split(s) for s in present}
        from ehrlib.cohort import Cohort
        import pandas as pd

        parts = list(splits.values())
        cohort = Cohort.from_events(pd.concat([p.events for p in parts], ignore_index=True),
                                    None if any(p.demographics is None for p in parts) else
                                    pd.concat([p.demographics for p in parts], ignore_index=True),
                                    source=f"run {run.name} (real splits)")
        return [write_meds(cohort, out, splits=splits, dataset_name=f"{run.name} real splits",
                           profile=data_params.get("profile"), seed=data_params.get("seed"),
                           source=str(data_params.get("data")), **common)]
    _check_parent(out)
    cohorts = run.synthetic()
    if not cohorts:
        raise RunError(f"run {run.name!r} has no synthetic cohorts: run notebooks {stages.REFERENCE_GENERATORS}, "
                       f"{stages.USER_GENERATORS} and {stages.GENERATE} first")
    real_records = set(manifest.get("stages", {}).get(stages.REFERENCE_GENERATORS, {}).get("results", {})
                       .get("holds_real_records", []))
    written = []
    for name, cohort in cohorts.items():
        if name in real_records and not include_real_records:
            print(f"{name}: left out, its records are real patients' (renamed); pass --include-real-records to "
                  "write it anyway")
            continue
        params = _writer_of(manifest, f"synthetic/{name}.parquet")
        written.append(write_meds(cohort, out / name, dataset_name=f"{run.name} synthetic {name}", generator=name,
                                  profile=params.get("profile"), seed=params.get("seed"),
                                  source=f"run {run.name}, synthetic/{name}.parquet", real_records=name in real_records,
                                  **common))
    return written
