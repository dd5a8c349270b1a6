"""How the flat models decode: the share of empty records at the 0.5 threshold, per data source.

CorGAN and binary MedGAN decode a record by thresholding per-code sigmoid outputs at 0.5 (the
originals' rounding). A record with no code is redrawn by ``generate``; this script measures how
often that happens before any redraw, on the open MIMIC-III demo and on a small simulated cohort,
with the smoke presets (the sizes the MIMIC-III demo run uses).

    python benchmarks/empty_records.py [DATA_DIR]     # DATA_DIR holds mimic-iii-demo/ (default ../shared/data)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from ehrlib import models
from ehrlib.data import load_mimic3, make_splits, simulate


def raw_outputs(generator, name: str, n: int = 2000, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if name == "corgan":
            return generator.modules["nets"].eval().generate(torch.randn(n, generator.config.latent_dim, generator=g)).numpy()
        for m in generator.modules.values():
            m.eval()
        return generator.fake(torch.randn(n, generator.config.embedding_dim, generator=g)).numpy()


def main() -> None:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    sources = {"MIMIC-III demo": load_mimic3(data_dir / "mimic-iii-demo"), "simulated, 600 patients": simulate(600, seed=0)}
    print(f"{'data':24s} {'model':7s} {'train':>5s} {'empty at 0.5':>12s} {'codes/record':>12s} {'median max p':>12s}")
    for source, cohort in sources.items():
        cut = max(1, cohort.n_patients // 5)
        train = make_splits(cohort, cut, cut, seed=0)["train"]
        for name in ("medgan", "corgan"):
            p = raw_outputs(models.get(name, "smoke", progress=False).fit(train), name)
            hits = (p >= 0.5).sum(axis=1)
            print(f"{source:24s} {name:7s} {train.n_patients:5d} {np.mean(hits == 0):12.3f} {hits.mean():12.2f} "
                  f"{np.median(p.max(axis=1)):12.3f}")


if __name__ == "__main__":
    main()
