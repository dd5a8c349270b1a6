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
"""``corrected``: this project's protocol (the book's methods page). ``paper``: the paper's eval notebook
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
UTILITY = "utility"
ATTRIBUTE_INFERENCE = "attribute_inference"
FAMILIES = (PREVALENCE, PRIVACY, DISCRIMINATOR, UTILITY, ATTRIBUTE_INFERENCE)
"""Every metric family of :func:`ehrlib.metrics.evaluate`, in the order runs save and show them."""
CORRECTED_ONLY_FAMILIES = (UTILITY, ATTRIBUTE_INFERENCE)
"""Families the paper's protocol lacks (the paper reports neither): under ``paper`` they record
one row saying so."""

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

# ------------------------------------------------------------------------------ per-task rows
TASK_SEPARATOR = ":"
"""Between a statistic and its task in per-task result names (:func:`task_metric`)."""

# ------------------------------------------------------------------------------ utility
UTILITY_RATIO = "utility_ratio"
"""Summary row: the mean over phenotype tasks of TSTR AUROC / TRTR AUROC."""
TRTR_AUROC = "trtr_auroc"
TSTR_AUROC = "tstr_auroc"
TSTR_TRTR_RATIO = "tstr_trtr_ratio"
UTILITY_PHENOTYPE_STATS = (TRTR_AUROC, TSTR_AUROC, TSTR_TRTR_RATIO)
"""Rows per phenotype task, named :func:`task_metric` ``(stat, task)``."""
NEXT_VISIT = "next_visit"
NEXT_VISIT_STATS = ("trtr_recall_at_k", "tstr_recall_at_k", "trtr_auprc", "tstr_auprc")
"""Rows of the next-visit task (sequential generators only), named :func:`task_metric` ``(stat, "next_visit")``."""

# ------------------------------------------------------------------------------ attribute inference
ATTRIBUTE_ADVANTAGE = "attribute_advantage"
"""Summary row: the attack's F1 on members (train) minus its F1 on non-members (holdout)."""
ATTRIBUTE_STATS = ("f1_members", "f1_nonmembers", "auc_members", "auc_nonmembers", "f1_reference")
"""Rows per sensitive attribute (and ``all`` pooled), named :func:`task_metric` ``("attribute_" + stat, attr)``;
``f1_reference``: the same attack on non-members with a disjoint real sample as the release."""

ATTRIBUTE_POOLED = "all"
"""The attribute name of the rows pooled over every (patient, attribute) pair."""


def attribute_metric(stat: str, attribute: str) -> str:
    """The result name of an attribute-inference statistic, e.g. ``attribute_f1_members:hiv``."""
    if stat not in ATTRIBUTE_STATS:
        raise ConfigError(f"attribute-inference statistic {stat!r}: expected one of {ATTRIBUTE_STATS}")
    return f"attribute_{stat}{TASK_SEPARATOR}{attribute}"


SUMMARY_METRICS = {UTILITY: UTILITY_RATIO, ATTRIBUTE_INFERENCE: ATTRIBUTE_ADVANTAGE}
"""The one summary row each new family adds besides its detailed rows."""

def task_metric(stat: str, task: str) -> str:
    """The result name of a per-task statistic, e.g. ``task_metric("tstr_auroc", "diabetes") == "tstr_auroc:diabetes"``."""
    return f"{stat}{TASK_SEPARATOR}{task}"


def split_task_metric(metric: str) -> tuple[str, str | None]:
    """``(stat, task)`` of a :func:`task_metric` name (``task`` None for other names)."""
    stat, sep, task = str(metric).partition(TASK_SEPARATOR)
    return (stat, task) if sep else (stat, None)


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
TABLE1_UTILITY_COLUMNS = (UTILITY_RATIO, task_metric(NEXT_VISIT_STATS[1], NEXT_VISIT))
"""Table 1's train-on-synthetic group: the summary ratio and the next-visit TSTR recall@k."""
TABLE1_ATTRIBUTE_COLUMNS = (ATTRIBUTE_ADVANTAGE, *(attribute_metric(s, ATTRIBUTE_POOLED)
                                                   for s in ("f1_members", "f1_nonmembers", "f1_reference")))
"""Table 1's attribute-inference group: the advantage, then the pooled F1s it compares."""
TABLE1_ADDED_COLUMNS = (disc_metric(RF, "auc"), disc_metric(LSTM, "auc"), MIA_AUC, MIA_TPR_AT_1PCT_FPR,
                        EXACT_COPY_RATE, DCR_SHARE, *TABLE1_UTILITY_COLUMNS, *TABLE1_ATTRIBUTE_COLUMNS)
"""Columns this project adds to Table 1."""
TABLE1_COLUMNS = TABLE1_PAPER_COLUMNS + TABLE1_ADDED_COLUMNS
TABLE1_GROUPS = {
    "fidelity": (PREVALENCE_R2, PREVALENCE_PEARSON, PREVALENCE_RMSE),
    "utility": (PAPER_DISC_SCORE, PAPER_DISC_KIND, disc_metric(RF, "auc"), disc_metric(LSTM, "auc")),
    "privacy": (NNAAR, MIA_F1, MIA_ACCURACY),
    "privacy_added": (MIA_AUC, MIA_TPR_AT_1PCT_FPR, EXACT_COPY_RATE, DCR_SHARE),
    "utility_tstr": TABLE1_UTILITY_COLUMNS,
    "attribute_inference": TABLE1_ATTRIBUTE_COLUMNS,
}
"""Table 1's columns grouped as the paper groups them (the discriminator reads as utility:
can synthetic records stand in for real ones), paper columns first in each group."""
TABLE1_CORRECTED_ONLY_GROUPS = ("utility_tstr", "attribute_inference")
"""Table 1 groups of :data:`CORRECTED_ONLY_FAMILIES`: shown for the corrected protocol only."""

TABLE1_HEADERS = {
    NNAAR: "NNAAR", MIA_F1: "MIA F1", MIA_ACCURACY: "MIA accuracy", PREVALENCE_R2: "Prev. R²",
    PREVALENCE_PEARSON: "Prev. Pearson r", PREVALENCE_RMSE: "Prev. RMSE", PAPER_DISC_SCORE: "Disc. Score",
    PAPER_DISC_KIND: "discriminator", disc_metric(RF, "auc"): "RF disc. AUC", disc_metric(LSTM, "auc"): "LSTM disc. AUC",
    MIA_AUC: "MIA AUC", MIA_TPR_AT_1PCT_FPR: "MIA TPR at 1% FPR", EXACT_COPY_RATE: "exact-copy rate",
    DCR_SHARE: "DCR share",
    UTILITY_RATIO: "TSTR/TRTR AUROC", TABLE1_UTILITY_COLUMNS[1]: "next visit TSTR recall@k",
    ATTRIBUTE_ADVANTAGE: "attr. inference advantage", TABLE1_ATTRIBUTE_COLUMNS[1]: "attr. F1 members",
    TABLE1_ATTRIBUTE_COLUMNS[2]: "attr. F1 non-members", TABLE1_ATTRIBUTE_COLUMNS[3]: "attr. F1 reference",
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
    "check_protocol", "check_kind", "disc_metric", "paper_discriminator", "task_metric", "split_task_metric",
    "attribute_metric", "header")]


# ------------------------------------------------------------------------------ fidelity beyond marginals
# Families of :func:`ehrlib.metrics.evaluate.evaluate_context` that are not in the default set
# (:data:`FAMILIES`): asked for by name (``families=``, ``ehrbench evaluate --families``).
PREVALENCE_RANK = "prevalence_rank"
TEMPORAL = "temporal"
SAMPLE_FIDELITY = "sample_fidelity"
PLAUSIBILITY = "plausibility"
SUBGROUPS = "subgroups"
FIDELITY_FAMILIES = (PREVALENCE_RANK, TEMPORAL, SAMPLE_FIDELITY, PLAUSIBILITY, SUBGROUPS)
"""Fidelity beyond marginals: rank correlation of prevalence (overall and per frequency bucket),
visit-to-visit structure, sample-level precision/recall/authenticity, implausible records and
subgroup prevalence (the metric pages of stages 45 and 46)."""
ALL_FAMILIES = FAMILIES + FIDELITY_FAMILIES
"""Every family :func:`ehrlib.metrics.evaluate.evaluate_context` computes."""

PREVALENCE_SPEARMAN = "prevalence_spearman"
"""Spearman rank correlation of per-code prevalence (rows per frequency bucket: :func:`task_metric` ``(stat, bucket)``)."""
PREVALENCE_BUCKET_STATS = (PREVALENCE_R2, PREVALENCE_PEARSON, PREVALENCE_SPEARMAN)
"""Rows per train-frequency bucket of the ``prevalence_rank`` family."""

# next-visit reference rows (utility family)
NEXT_VISIT_BASELINE_STATS = ("repeat_last_recall_at_k", "frequent_recall_at_k", "headroom_recall_at_k",
                             "tstr_minus_repeat_last")
"""Next-visit rows trained on nothing: repeat the last visit, the most frequent codes; the task's headroom
(TRTR minus repeat-last) and the generator's TSTR minus repeat-last; named :func:`task_metric` ``(stat, "next_visit")``."""
NESTED_VISIT_SHARE = "nested_visit_share"
"""Share of a cohort's multi-visit patients whose every visit is contained in the one before (an encoding artifact)."""

# temporal
TRANSITION_RMSE = "transition_rmse"
TRANSITION_PEARSON = "transition_pearson"
PERSISTENCE_RMSE = "persistence_rmse"
PERSISTENCE_RATE = "persistence_rate"
PERSISTENCE_GAP = "persistence_gap"
TEMPORAL_STATS = (TRANSITION_RMSE, TRANSITION_PEARSON, PERSISTENCE_RMSE, PERSISTENCE_RATE, PERSISTENCE_GAP)
WASSERSTEIN = "wasserstein"
"""Rows :func:`task_metric` ``("wasserstein", quantity)`` per structure quantity (visits per patient, ...)."""

# sample-level
ALPHA_PRECISION = "alpha_precision"
BETA_RECALL = "beta_recall"
AUTHENTICITY = "authenticity"
ALPHA_PRECISION_HIGH = "alpha_precision_at_0.9"
BETA_RECALL_HIGH = "beta_recall_at_0.9"
SAMPLE_FIDELITY_STATS = (ALPHA_PRECISION, BETA_RECALL, AUTHENTICITY, ALPHA_PRECISION_HIGH, BETA_RECALL_HIGH)

# plausibility
IMPLAUSIBLE_SHARE = "implausible_share"
"""Summary row: share of records with any implausibility; per kind :func:`task_metric` ``("implausible_share", kind)``."""
IMPLAUSIBLE_KINDS = ("visits", "codes_per_visit", "code_repeats", "sex_specific_code")

# subgroups
SUBGROUP_STATS = ("subgroup_r2", "subgroup_pearson", "subgroup_holdout_r2", "subgroup_holdout_pearson")
"""Rows per subgroup (``sex=F``, ``age=65+``, ...), named :func:`task_metric` ``(stat, subgroup)``."""
SUBGROUP_JUDGED = "subgroups_judged"
"""Summary row: number of subgroups judged (0, with the reason, for a cohort without demographics)."""

__all__ += [name for name in dir() if name.isupper() and name not in __all__]
