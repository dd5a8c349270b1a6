"""Loading a paper-size simulated cohort (46,520 patients) from MIMIC-III CSVs into a Cohort.

Target: <= 10 s on a 2-core machine. Prints the time and its ratio to ``pandas.read_csv`` of the
same three files alone (the floor any CSV loader pays), measured in the same run.

    python benchmarks/bench_load.py [--n-patients 46520]
"""
import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from ehrlib.data import load_mimic3, write_simulated


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-patients", type=int, default=46_520)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_simulated(Path(tmp) / "sim", args.n_patients, seed=0)
        rows = sum(1 for _ in open(root / "DIAGNOSES_ICD.csv")) - 1
        t0 = time.perf_counter()
        for name in ("PATIENTS", "ADMISSIONS", "DIAGNOSES_ICD"):
            pd.read_csv(root / f"{name}.csv")
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        cohort = load_mimic3(root)
        t_load = time.perf_counter() - t0
    print(f"cohort: {cohort}")
    print(f"diagnosis rows: {rows:,}")
    print(f"pandas.read_csv of the three tables: {t_read:.2f} s")
    print(f"load_mimic3 -> Cohort (validated, canonical): {t_load:.2f} s  (target <= 10 s: {'ok' if t_load <= 10 else 'MISSED'})")
    print(f"ratio load_mimic3 / read_csv alone: {t_load / t_read:.1f}x")


if __name__ == "__main__":
    main()
