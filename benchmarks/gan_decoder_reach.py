"""What the flat GANs' trained decoders can express: the autoencoder's reconstructions of real
patients, decoded by the threshold rule (binary: per-code probability above 0.5; count: rounded
count at least 1), the ``paper`` preset's. The ``demo`` profile draws each code from the decoder's
output instead; ``benchmarks/gan_decoding.py`` compares the two rules on generated records.

A generated record is ``decoder(generator(noise))``; the generator can only reach what the decoder
expresses. If the decoder, given the encoder's code of a *training* patient, already drops most
of that patient's codes and most rare codes, no adversarial training reaches the distinct-code
floor of the demo profile. This script reads a run's saved MedGAN (both modes) and CorGAN and
prints, for up to 1,000 of the run's training patients and for its holdout patients: distinct
codes of the reconstructions over the patients' own, the share of the patients' codes recovered,
codes per record and the share of empty reconstructions.

    python benchmarks/gan_decoder_reach.py [RUN_FOLDER]     # default runs/demo (after the main command)
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.data.encode import binary_matrix, count_matrix


GANS = ("medgan", "medgan_count", "corgan")  # the flat GANs, by their saved names in a run


def trained_gans(run: Path):
    """``(name, generator)`` for each of :data:`GANS` that ``run`` trained (a line for each it did not)."""
    for name in GANS:
        folder = run / "models" / name
        if not folder.is_dir():
            print(f"{name:<14}(not trained in this run)")
            continue
        yield name, models.load(folder)


def reconstruct(generator, name: str, x: torch.Tensor) -> np.ndarray:
    """Reconstructions of the records ``x`` (boolean), decoded by the threshold rule."""
    with torch.no_grad():
        if name == "corgan":
            nets = generator.modules["nets"].eval()
            out = nets.decode(nets.encode(x))
        else:
            for m in generator.modules.values():
                m.eval()
            out = generator.modules["decoder"](generator.modules["encoder"](x))
    generator.config = dataclasses.replace(generator.config, decoding="threshold")
    return generator._decode(out, None) > 0


def reach(generator, name: str, cohort: Cohort, n: int = 1000) -> dict:
    cohort = cohort.subset(cohort.subject_ids[:n]).restrict_codes(set(generator.vocab.codes))
    real = binary_matrix(cohort, generator.vocab).toarray() > 0
    counts = getattr(generator.config, "data_mode", "binary") == "count"
    x = torch.tensor(count_matrix(cohort, generator.vocab).toarray() if counts else real, dtype=torch.float32)
    out = reconstruct(generator, name, x)
    return {"patients": int(real.shape[0]),
            "distinct": (out.sum(0) > 0).sum() / max((real.sum(0) > 0).sum(), 1),
            "codes recovered": (out & real).sum() / max(real.sum(), 1),
            "codes / record": out.sum(1).mean(), "real codes / record": real.sum(1).mean(),
            "empty": (out.sum(1) == 0).mean()}


def main(run: Path) -> None:
    torch.set_num_threads(1)
    data = {"train": Cohort.load(run / "data" / "train.parquet"), "holdout": Cohort.load(run / "data" / "holdout.parquet")}
    print(f"run {run}: decoder reach at the threshold rule")
    print(f"{'model':<14}{'patients':<10}{'n':>6}{'distinct/real':>15}{'recovered':>11}{'codes/rec':>11}{'real/rec':>10}{'empty':>8}")
    for name, generator in trained_gans(run):
        for part, cohort in data.items():
            r = reach(generator, name, cohort)
            print(f"{name:<14}{part:<10}{r['patients']:>6}{r['distinct']:>15.3f}{r['codes recovered']:>11.3f}"
                  f"{r['codes / record']:>11.2f}{r['real codes / record']:>10.2f}{r['empty']:>8.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/demo"))
