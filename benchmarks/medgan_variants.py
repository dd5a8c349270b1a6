"""MedGAN with preset overrides, trained on a run's training cohort and scored as the demo floors
score it (prevalence R² against train, distinct codes over the holdout reference's on as many
records, empty records drawn before redrawing), one line per variant.

    python benchmarks/medgan_variants.py RUN_FOLDER '{}' '{"data_mode": "count", "ae_lr": 0.001}' ...

Each argument is a JSON object of overrides of the ``demo`` preset (``models.get("medgan", "demo", **o)``).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.metrics.prevalence import prevalence_metrics


def score(run: Path, overrides: dict, seed: int = 0) -> str:
    train = Cohort.load(run / "data" / "train.parquet")
    reference = Cohort.load(run / "synthetic" / "holdout.parquet")
    began = time.perf_counter()
    generator = models.get("medgan", profile="demo", **overrides).fit(train)
    seconds = time.perf_counter() - began
    syn = generator.generate(1000, seed=seed)
    drawn = getattr(generator, "last_drawn", None) or syn.n_patients
    n = min(syn.n_patients, reference.n_patients)
    pick = np.random.default_rng(seed).permutation
    ref_n = reference.subset(reference.subject_ids[np.sort(pick(reference.n_patients)[:n])])
    syn_n = syn.subset(syn.subject_ids[np.sort(pick(syn.n_patients)[:n])])
    ends = ", ".join(f"{s['phase']} {s['epochs']} epochs ({'criterion' if s['stopped_by'] == 'patience' else 'cap'})"
                     for s in generator.stopping)
    return (f"{json.dumps(overrides)}: fit {seconds:.0f} s; R² {prevalence_metrics(train, syn)['prevalence_r2']:.3f}, "
            f"distinct {syn_n.events['code'].nunique() / ref_n.events['code'].nunique():.3f}, "
            f"empty {1 - syn.n_patients / drawn:.3f}; {ends}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for arg in sys.argv[2:] or ["{}"]:
        print(score(Path(sys.argv[1]), json.loads(arg)), flush=True)
