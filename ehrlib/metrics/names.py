"""Every metric, family and protocol name of the evaluation suite, defined once.

Notebooks, the CLI and :func:`ehrlib.metrics.evaluate.table1` read names from here; no other
file spells a metric name.

Paper: section 3 (Table 1) and appendix E (RF for flat generators, LSTM for sequential ones).
"""
from __future__ import annotations

from ehrlib.errors import ConfigError

# ------------------------------------------------------------------------------ protocols
CORRECTED = "corrected"
PAPER = "paper"
PROTOCOLS = (CORRECTED, PAPER)
"""``corrected``: this project's protocol (EVALUATION.md). ``paper``: the paper's eval notebook
as closely as its text and code allow (self-match NNAAR, strict ties, 1,000-record samples,
500 + 500 MIA, imbalanced train-vs-synthetic discriminators with a 0.2 test share, the binary
length penalty, occurrence-count percentiles with filtered denominators)."""


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` if it is one of :data:`PROTOCOLS`, else raise :class:`ConfigError`."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol={protocol!r}: expected one of {PROTOCOLS}")
    return protocol


# ------------------------------------------------------------------------------ families
PREVALENCE = "prevalence"
PRIVACY = "privacy"
DISCRIMINATOR = "discriminator"
FAMILIES = (PREVALENCE, PRIVACY, DISCRIMINATOR)

# ------------------------------------------------------------------------------ prevalence
PREVALENCE_R2 = "prevalence_r2"
PREVALENCE_PEARSON = "prevalence_pearson"
PREVALENCE_RMSE = "prevalence_rmse"

# ------------------------------------------------------------------------------ privacy
NNAAR = "nnaar"
MIA_ACCURACY = "mia_accuracy"
MIA_PRECISION = "mia_precision"
MIA_RECALL = "mia_recall"
MIA_F1 = "mia_f1"
MIA_AUC = "mia_auc"
MIA_TPR_AT_1PCT_FPR = "mia_tpr_at_1pct_fpr"
EXACT_COPY_RATE = "exact_copy_rate"
DCR_SHARE = "dcr_share"
PAPER_PRIVACY_METRICS = (NNAAR, MIA_ACCURACY, MIA_PRECISION, MIA_RECALL, MIA_F1)
"""The privacy metrics the paper reports (the ``paper`` protocol computes these only)."""

# ------------------------------------------------------------------------------ discriminators
RF = "rf"
LSTM = "lstm"
DISCRIMINATOR_KINDS = (RF, LSTM)
DISCRIMINATOR_STATS = ("accuracy", "score", "auc", "auc_score")
"""``accuracy``; ``score`` = 1 - 2|acc - 0.5| (the paper's); ``auc``; ``auc_score`` = 1 - max(0, 2 AUC - 1)."""

FLAT_MODELS = ("medgan", "medgan_count", "corgan")
"""Generators that emit one visit per patient; the paper scores them with the Random Forest."""

REAL_CLASSES = ("train", "holdout")
"""Where the discriminator's real class comes from (corrected default: ``train``)."""


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a discriminator kind, else raise :class:`ConfigError`."""
    if kind not in DISCRIMINATOR_KINDS:
        raise ConfigError(f"discriminator kind={kind!r}: expected one of {DISCRIMINATOR_KINDS}")
    return kind


def disc_metric(kind: str, stat: str) -> str:
    """The result name of one discriminator statistic, e.g. ``disc_metric("rf", "auc") == "rf_disc_auc"``."""
    check_kind(kind)
    if stat not in DISCRIMINATOR_STATS:
        raise ConfigError(f"discriminator statistic {stat!r}: expected one of {DISCRIMINATOR_STATS}")
    return f"{kind}_disc_{stat}"


DISCRIMINATOR_METRIC_NAMES = tuple(disc_metric(k, s) for k in DISCRIMINATOR_KINDS for s in DISCRIMINATOR_STATS)


def paper_discriminator(model: str) -> str:
    """The discriminator the paper reads for ``model``: RF for :data:`FLAT_MODELS`, else LSTM."""
    return RF if str(model).strip().lower() in FLAT_MODELS else LSTM


# ------------------------------------------------------------------------------ Table 1
PAPER_DISC_SCORE = "paper_disc_score"
"""Table 1's *Disc. Score* column: ``{kind}_disc_score`` with kind = :func:`paper_discriminator`."""
PAPER_DISC_KIND = "paper_disc_kind"

TABLE1_PAPER_COLUMNS = (NNAAR, MIA_F1, MIA_ACCURACY, PREVALENCE_R2, PREVALENCE_PEARSON, PREVALENCE_RMSE,
                        PAPER_DISC_SCORE)
"""The paper's Table 1 columns (its *Prev.* is R²; Pearson r is in its eval notebook), in its order."""
TABLE1_ADDED_COLUMNS = (disc_metric(RF, "auc"), disc_metric(LSTM, "auc"), MIA_AUC, MIA_TPR_AT_1PCT_FPR,
                        EXACT_COPY_RATE, DCR_SHARE)
"""Columns this project adds to Table 1."""
TABLE1_COLUMNS = TABLE1_PAPER_COLUMNS + TABLE1_ADDED_COLUMNS
TABLE1_GROUPS = {
    "fidelity": (PREVALENCE_R2, PREVALENCE_PEARSON, PREVALENCE_RMSE),
    "utility": (PAPER_DISC_SCORE, PAPER_DISC_KIND, disc_metric(RF, "auc"), disc_metric(LSTM, "auc")),
    "privacy": (NNAAR, MIA_F1, MIA_ACCURACY),
    "privacy_added": (MIA_AUC, MIA_TPR_AT_1PCT_FPR, EXACT_COPY_RATE, DCR_SHARE),
}
"""Table 1's columns grouped as the paper groups them (the discriminator reads as utility:
can synthetic records stand in for real ones), paper columns first in each group."""

TABLE1_HEADERS = {
    NNAAR: "NNAAR", MIA_F1: "MIA F1", MIA_ACCURACY: "MIA accuracy", PREVALENCE_R2: "Prev. R²",
    PREVALENCE_PEARSON: "Prev. Pearson r", PREVALENCE_RMSE: "Prev. RMSE", PAPER_DISC_SCORE: "Disc. Score",
    PAPER_DISC_KIND: "discriminator", disc_metric(RF, "auc"): "RF disc. AUC", disc_metric(LSTM, "auc"): "LSTM disc. AUC",
    MIA_AUC: "MIA AUC", MIA_TPR_AT_1PCT_FPR: "MIA TPR at 1% FPR", EXACT_COPY_RATE: "exact-copy rate",
    DCR_SHARE: "DCR share",
}
"""How Table 1's columns are headed on a page (the paper's names where it has them); a metric
without an entry is headed by its id."""


def header(metric: str) -> str:
    """The page heading of ``metric`` (:data:`TABLE1_HEADERS`, else the id itself)."""
    return TABLE1_HEADERS.get(metric, metric)


# ------------------------------------------------------------------------------ Figure 3
FIG3_METRICS = (NNAAR, MIA_F1, MIA_ACCURACY, PREVALENCE_R2, PREVALENCE_RMSE, "disc_score")
"""The six panels of the paper's Fig. 3; ``disc_score`` is the discriminator's privacy score."""

__all__ = [name for name in dir() if name.isupper() or name in (
    "check_protocol", "check_kind", "disc_metric", "paper_discriminator", "header")]
