"""The name of every stage, spelled once.

A stage is one notebook of the book (``notebooks/<name>.ipynb``) and one entry of the run
manifest: its name is the notebook's stem, numbered in run order. Every notebook opens its stage
context with its constant (``runs.stage(stages.TABLE1, ...)``), and every stage that reads another
stage's record in the manifest names it with the constant, so renaming a notebook is one edit
here, and the test suite fails until it is made (the table must equal the notebooks' stems).

The names are a table, not read from the ``notebooks/`` folder at import: an installed package
(``pip install``, Colab's clone) runs without that folder on its path.
"""
from __future__ import annotations

DATA = "00_data"  #: load or simulate the cohort, split it; Table 12's real rows, Figure 2
CALIBRATION = "01_calibration"  #: the simulated cohort against the open MIMIC-III demo
TRAIN_MEDGAN = "10_train_medgan"
TRAIN_CORGAN = "11_train_corgan"
TRAIN_PROMPTEHR = "12_train_promptehr"
TRAIN_HALO = "13_train_halo"
TRAIN_GPT = "14_train_gpt"
REFERENCE_GENERATORS = "15_reference_generators"  #: holdout, marginals and memorizer rows
HYPERPARAMETERS = "16_hyperparameters"  #: the paper's appendix F beside the profile's settings
USER_GENERATORS = "17_user_generators"  #: the user's own generators (``--generator``)
LEARNING_CURVES = "18_learning_curves"
DP_TRAIN = "19_train_dp"  #: the DP generators at the profile's budgets, and the audit of each guarantee
GENERATE = "20_generate"  #: every fitted generator's synthetic cohort
PREVALENCE = "30_prevalence"
DISCRIMINATOR = "31_discriminator"
PRIVACY = "32_privacy"
TABLE1 = "33_table1"
PROTOCOL_EFFECTS = "34_protocol_effects"
PRIVACY_POWER = "35_privacy_power"  #: the membership attacks calibrated on partial memorizers
DP_TRADEOFF = "36_dp_tradeoff"  #: privacy against fidelity and utility; claimed against audited ε
LONGTAIL_PERCENTILES = "40_longtail_percentiles"  #: Figure 3
LONGTAIL_MARGINALS = "41_longtail_marginals"  #: Figures 4-8, Table 13
STRUCTURE = "42_structure"  #: Table 12, Figures 9-11
CHAPTERS = "43_chapters"  #: Figure 12
COOCCURRENCE = "44_cooccurrence"  #: Figure 13, Table 14
TEMPORAL = "45_temporal"  #: next-visit reference rows, transitions, persistence, record-length distances
SAMPLE_FIDELITY = "46_sample_fidelity"  #: alpha-precision, beta-recall, authenticity; rank correlation; implausible records; subgroups
PAPER_SAMPLES = "50_paper_samples"  #: the paper's released samples, recomputed
PAPER_AUDIT = "51_paper_audit"  #: the memorisation audit of the released samples
PAPER_VS_OURS = "52_paper_vs_ours"  #: the paper's printed numbers beside this run's

#: Every stage, in run order.
NAMES: tuple[str, ...] = tuple(sorted(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str)))

#: The stage that trains each of the paper's generators.
TRAINING = {"medgan": TRAIN_MEDGAN, "corgan": TRAIN_CORGAN, "promptehr": TRAIN_PROMPTEHR, "halo": TRAIN_HALO,
            "gpt": TRAIN_GPT}


def number(name: str) -> str:
    """A stage's number (``"33"`` for ``"33_table1"``): what ``ehrbench reproduce --only`` takes."""
    return name.split("_", 1)[0]
