"""The flat GANs' decoding rule, from the same trained weights: threshold against sample.

MedGAN's and CorGAN's decoders output a probability per code (MedGAN's count mode: a count). The
ports the paper ran read a record off it with a 0.5 threshold (count: rounding); the original
medGAN saves the probabilities and leaves that step to its user. ``decoding="sample"`` draws each
code instead (Bernoulli; count mode: Poisson of the count). This script loads a run's trained
MedGAN (both modes) and CorGAN, generates as many records as the run's holdout reference holds
under each rule with the same seed, and prints what the demo profile's convergence floors read
(book: *Training to convergence*): prevalence R² against train, distinct codes over the holdout
reference's, the share of empty records drawn before redrawing, and codes per record.

    python benchmarks/gan_decoding.py [RUN_FOLDER]     # default runs/demo (after the main command)
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from ehrlib.cohort import Cohort
from ehrlib.errors import EhrlibError
from ehrlib.metrics.prevalence import prevalence_metrics
from ehrlib.models.medgan import DECODINGS
from gan_decoder_reach import trained_gans  # this folder's script: the run's trained GANs


def main(run: Path, seed: int = 0) -> None:
    torch.set_num_threads(1)
    train = Cohort.load(run / "data" / "train.parquet")
    reference = Cohort.load(run / "synthetic" / "holdout.parquet")
    distinct_ref = reference.events["code"].nunique()
    print(f"run {run}: {reference.n_patients} records per rule, seed {seed}; the holdout reference has "
          f"{distinct_ref} distinct codes, {reference.events.groupby('subject_id')['code'].nunique().mean():.2f} per record")
    print(f"{'model':<14}{'decoding':<11}{'trained with':<14}{'R² vs train':>12}{'distinct':>10}{'empty':>8}{'codes/rec':>11}")
    for name, generator in trained_gans(run):
        trained = generator.config.decoding
        for rule in DECODINGS:
            generator.config = dataclasses.replace(generator.config, decoding=rule)
            try:
                cohort = generator.generate(reference.n_patients, seed=seed)
            except EhrlibError as exc:
                print(f"{name:<14}{rule:<11}{trained:<14}failed: {exc}")
                continue
            r2 = prevalence_metrics(train, cohort)["prevalence_r2"]
            per_record = cohort.events.groupby("subject_id")["code"].nunique().mean()
            print(f"{name:<14}{rule:<11}{trained:<14}{r2:>12.3f}{cohort.events['code'].nunique() / distinct_ref:>10.3f}"
                  f"{1 - cohort.n_patients / generator.last_drawn:>8.3f}{per_record:>11.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/demo"))
