"""Every metric family in one call, as one tidy table (Table 1 with honest uncertainty).

Paper: section 3 (Table 1). Inputs are canonical Cohorts; nothing is taken from model internals.
Metric, family and protocol names live in :mod:`ehrlib.metrics.names`.

* ``prevalence``: R², Pearson r and RMSE of per-code patient prevalence, synthetic vs ``train``,
  with basic bootstrap intervals (B = ``n_bootstrap``, the real side shareable across generators).
* ``privacy``: NNAAR, membership inference (accuracy, precision, recall, F1, AUC, TPR at 1% FPR),
  exact-copy rate, DCR share; spread over repeated subsamples, no bootstrap.
* ``discriminator``: a Random Forest and/or an LSTM (rows ``rf_disc_*``, ``lstm_disc_*``);
  accuracy, the paper's score, AUC and the AUC score, each with a basic bootstrap interval over
  the held-out predictions.
* ``utility``: train on synthetic, test on real (:mod:`ehrlib.metrics.utility`): phenotype
  AUROC of a classifier trained on train (TRTR) and on the synthetic cohort (TSTR), both tested
  on the holdout, their ratio, next-visit prediction for sequential generators; summary row
  ``utility_ratio``.
* ``attribute_inference``: sensitive diagnoses inferred from the nearest synthetic records
  (:mod:`ehrlib.metrics.attribute`), members against non-members; summary row
  ``attribute_advantage``.

Families asked for by name (:data:`ehrlib.metrics.names.FIDELITY_FAMILIES`, not in the default
set; :func:`fidelity_from_context`): ``prevalence_rank`` (Spearman r overall and R², Pearson r,
Spearman r per train-prevalence bucket), ``temporal`` (visit-to-visit transitions, persistence,
Wasserstein distances of the record-length distributions), ``sample_fidelity`` (α-precision,
β-recall, authenticity), ``plausibility`` (records beyond anything train shows) and
``subgroups`` (prevalence within sex and age bands, with the holdout's as the ceiling).

Every family reads one :class:`ehrlib.metrics.context.EvaluationContext` (the cohorts, one
vocabulary, one encoding per cohort, the overlap check, the real-side resamples), built once per
evaluated set; :func:`evaluate` and :func:`evaluate_all` are thin wrappers that build it.

Which rows carry what: ``ci_low``/``ci_high`` are basic bootstrap intervals (prevalence:
patients of both cohorts resampled; discriminator: held-out predictions resampled); ``spread``
is the standard deviation over repeated subsamples (privacy; nearest-neighbour metrics are never
bootstrapped with replacement). The ``note`` column says which, with sizes.

``protocol="paper"`` switches every family to the paper's eval notebook
(:data:`ehrlib.metrics.names.PROTOCOLS`); ``corrected`` (default) is the book's methods page. The
prevalence family is the same in both (the paper's notebook computes R², Pearson r and RMSE of
patient-level prevalence over train ∪ synthetic codes, as here); privacy and discriminator
differ (:func:`ehrlib.metrics.privacy.privacy_metrics`,
:func:`ehrlib.metrics.discriminator.discriminator_family`), and so does the long-tail ablation
(:func:`ehrlib.metrics.longtail.longtail_ablation`). :func:`ehrlib.metrics.protocols.protocol_effects`
measures each difference. The paper's protocol has no utility or attribute-inference family.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from ehrlib.cohort import Cohort, CohortError
from ehrlib.errors import MetricError
from ehrlib.metrics import names
from ehrlib.metrics.context import (  # noqa: F401  (re-exported: the overlap check's public home was here)
    OVERLAP_MARGIN,
    OVERLAP_P_VALUE,
    EvaluationContext,
    as_context,
    check_holdout,
    holdout_overlap,
)
from ehrlib.metrics.display import interval_cell

FAMILIES = names.FAMILIES
COLUMNS = ["family", "metric", "estimate", "ci_low", "ci_high", "spread", "note", "bias"]
"""``bias``: mean(θ*) - θ̂ where a patient bootstrap gives it (prevalence), else NaN; tables show
the bias-corrected estimate ``θ̂ - bias`` (:func:`ehrlib.metrics.bootstrap.bias_corrected`)."""

# ---------------------------------------------------------------------------- evaluate
def _kinds(discriminator, discriminators) -> tuple[str, ...]:
    if discriminators is not None:
        kinds = tuple(discriminators)
    else:
        kinds = () if discriminator is None else (discriminator,)
    for k in kinds:
        names.check_kind(k)
    return kinds


def _families(families, kinds) -> list[str]:
    families = list(FAMILIES if families is None else families)
    unknown = [f for f in families if f not in names.ALL_FAMILIES]
    if unknown:
        raise MetricError(f"unknown metric family {unknown}; expected a subset of {names.ALL_FAMILIES}")
    if not kinds and names.DISCRIMINATOR in families:
        families.remove(names.DISCRIMINATOR)
    return families


def _not_in_protocol(family: str, protocol: str) -> pd.DataFrame:
    """The one row a family outside ``protocol`` records: its summary metric, NaN, and why."""
    return pd.DataFrame([{"metric": names.SUMMARY_METRICS[family], "estimate": np.nan,
                          "note": f"not computed: the {protocol} protocol has no {family} family "
                                  f"(the paper reports none); see the corrected protocol"}])


def evaluate_context(context: EvaluationContext, families=None, *, protocol: str = names.CORRECTED,
                     discriminator: str | None = "rf", discriminators=None, n_bootstrap: int = 1000, seed: int = 0,
                     real: str = "train", repeats: int = 10, models=None, progress: bool = True,
                     **discriminator_options) -> pd.DataFrame:
    """Every family of :data:`ehrlib.metrics.names.FAMILIES` for the synthetic cohorts of one context.

    Paper: section 3 (Table 1). Each family reads the context's cohorts, vocabulary, encodings
    and real-side resamples (:class:`ehrlib.metrics.context.EvaluationContext`), so every cohort
    is encoded once for all families and generators. Arguments as in :func:`evaluate`;
    ``models`` selects synthetic cohorts by name (default all). The ``utility`` and
    ``attribute_inference`` families are not part of the ``paper`` protocol: there they record
    one row (their summary metric, NaN) whose note says so.

    Returns:
        The tidy table with a leading ``model`` column.
    """
    from ehrlib.metrics.attribute import attribute_from_context
    from ehrlib.metrics.bootstrap import prevalence_from_context
    from ehrlib.metrics.discriminator import discriminator_from_context
    from ehrlib.metrics.privacy import privacy_from_context
    from ehrlib.metrics.utility import utility_from_context

    names.check_protocol(protocol)
    kinds = _kinds(discriminator, discriminators)
    families = _families(families, kinds)
    models = list(context.synthetic if models is None else models)
    for name in models:
        if name not in context.synthetic:
            raise CohortError(f"no synthetic cohort {name!r} in the evaluation context "
                              f"(have: {', '.join(context.synthetic)})")
    frames = []
    steps = [(m, f) for m in models for f in families]
    for name, family in tqdm(steps, desc="evaluate", disable=not progress, leave=False):
        if family in names.CORRECTED_ONLY_FAMILIES and protocol != names.CORRECTED:
            df = _not_in_protocol(family, protocol)
        elif family == names.PREVALENCE:
            df = prevalence_from_context(context, name, n_bootstrap=n_bootstrap, seed=seed)
        elif family == names.PRIVACY:
            df = privacy_from_context(context, name, seed=seed, repeats=repeats, protocol=protocol)
        elif family == names.DISCRIMINATOR:
            df = discriminator_from_context(context, name, kinds, protocol=protocol, real=real,
                                            n_bootstrap=n_bootstrap, seed=seed, **discriminator_options)
        elif family == names.UTILITY:
            df = utility_from_context(context, name, n_bootstrap=n_bootstrap, seed=seed)
        elif family in names.FIDELITY_FAMILIES:
            df = fidelity_from_context(context, name, family, n_bootstrap=n_bootstrap, seed=seed)
        else:
            df = attribute_from_context(context, name, n_bootstrap=n_bootstrap, seed=seed)
        frames.append(df.assign(family=family, model=name))
    out = pd.concat(frames, ignore_index=True)
    for col in ("ci_low", "ci_high", "spread", "bias"):
        if col not in out:
            out[col] = np.nan
    if "note" not in out:
        out["note"] = ""
    out["note"] = out["note"].fillna("")
    return out[["model", *COLUMNS]]


def fidelity_from_context(context: EvaluationContext, name: str, family: str, *, n_bootstrap: int = 1000,
                          seed: int = 0) -> pd.DataFrame:
    """One family of :data:`ehrlib.metrics.names.FIDELITY_FAMILIES` for one synthetic cohort of ``context``.

    The same in both protocols (the paper has none of them): ``prevalence_rank``
    (:func:`ehrlib.metrics.prevalence_rank.prevalence_rank_from_context`), ``temporal``
    (:mod:`ehrlib.metrics.temporal`), ``sample_fidelity`` (:mod:`ehrlib.metrics.sample_level`),
    ``plausibility`` (:mod:`ehrlib.metrics.plausibility`), ``subgroups`` (:mod:`ehrlib.metrics.subgroups`).
    """
    from ehrlib.metrics.plausibility import plausibility_from_context
    from ehrlib.metrics.prevalence_rank import prevalence_rank_from_context
    from ehrlib.metrics.sample_level import sample_fidelity_from_context
    from ehrlib.metrics.subgroups import subgroups_from_context
    from ehrlib.metrics.temporal import temporal_from_context

    if family == names.PREVALENCE_RANK:
        return prevalence_rank_from_context(context, name, n_bootstrap=n_bootstrap, seed=seed)
    if family == names.TEMPORAL:
        return temporal_from_context(context, name, n_bootstrap=n_bootstrap, seed=seed)
    if family == names.SAMPLE_FIDELITY:
        return sample_fidelity_from_context(context, name, seed=seed)
    if family == names.PLAUSIBILITY:
        return plausibility_from_context(context, name)
    if family == names.SUBGROUPS:
        return subgroups_from_context(context, name, n_bootstrap=n_bootstrap, seed=seed)
    raise MetricError(f"unknown fidelity family {family!r}; expected one of {names.FIDELITY_FAMILIES}")


def evaluate(train: Cohort, holdout: Cohort, synthetic: Cohort, families=None, discriminator: str | None = "rf",
             n_bootstrap: int = 1000, seed: int = 0, *, discriminators=None, protocol: str = names.CORRECTED,
             real: str = "train", repeats: int = 10, allow_overlap: bool = False, progress: bool = True,
             reference: Cohort | None = None, context: EvaluationContext | None = None,
             **discriminator_options) -> pd.DataFrame:
    """Evaluate one synthetic cohort.

    A thin wrapper: builds an :class:`ehrlib.metrics.context.EvaluationContext` (or takes
    ``context``) and calls :func:`evaluate_context`.

    Args:
        train: the real cohort the generator was fitted on.
        holdout: real patients the generator never saw.
        synthetic: the generated cohort.
        families: a subset of :data:`ehrlib.metrics.names.FAMILIES`; all by default. The
            families of :data:`ehrlib.metrics.names.FIDELITY_FAMILIES` are computed when named.
        discriminator: ``"rf"``, ``"lstm"`` or ``None`` (skip the discriminator family); ignored
            when ``discriminators`` is given.
        n_bootstrap: bootstrap replicates for the prevalence, discriminator, utility and
            attribute-inference intervals.
        seed: seeds every subsample, resample and classifier.
        discriminators: several kinds in one call, e.g. ``("rf", "lstm")``; rows are named by kind.
        protocol: ``"corrected"`` (default) or ``"paper"`` (:data:`ehrlib.metrics.names.PROTOCOLS`).
        real: the discriminator's real class, ``"train"`` (default) or ``"holdout"``.
        repeats: subsamples averaged by the privacy metrics (NNAAR R).
        context: an :class:`ehrlib.metrics.context.EvaluationContext` holding these cohorts
            (``synthetic`` among its synthetic ones), to share its encodings and real-side
            resamples across calls (paired comparison between generators); built here when ``None``.
        allow_overlap: evaluate even when ``holdout`` overlaps ``train`` (shared subject ids, or
            exact record copies beyond chance: :func:`check_holdout`); refused by default.
        progress: show a progress bar over the families.
        reference: a real cohort disjoint from train and holdout: the attribute-inference
            baseline (without it those rows say so).
        **discriminator_options: ``rf``, ``lstm``, ``device``, ``test_size`` for
            :func:`ehrlib.metrics.discriminator.discriminator_family`.

    Returns:
        DataFrame with columns ``family``, ``metric``, ``estimate``, ``ci_low``, ``ci_high``,
        ``spread``, ``note``; one row per metric.

    Raises:
        CohortError: an empty cohort, or a holdout that overlaps train.
        MetricError: an unknown family.
        ConfigError: an unknown protocol, discriminator kind or real class.
    """
    names.check_protocol(protocol)
    _families(families, _kinds(discriminator, discriminators))
    for role, c in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
        if c.n_patients == 0:
            raise CohortError(f"{role} cohort is empty: nothing to evaluate")
    if context is None:
        context = EvaluationContext.build(train, holdout, {"synthetic": synthetic}, reference,
                                          allow_overlap=allow_overlap)
    named = [n for n, c in context.synthetic.items() if c is synthetic]
    if context.train is not train or context.holdout is not holdout or not named:
        raise ValueError("context does not hold the train, holdout and synthetic cohorts given (build it from "
                         "them: EvaluationContext.build(train, holdout, {name: synthetic}))")
    out = evaluate_context(context, families, models=named[:1], protocol=protocol, discriminator=discriminator,
                           discriminators=discriminators, n_bootstrap=n_bootstrap, seed=seed, real=real,
                           repeats=repeats, progress=progress, **discriminator_options)
    return out[COLUMNS]


def evaluate_all(train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort], *, seed: int = 0,
                 n_bootstrap: int = 1000, allow_overlap: bool = False, progress: bool = True,
                 reference: Cohort | None = None, context: EvaluationContext | None = None,
                 **kwargs) -> pd.DataFrame:
    """:func:`evaluate` for several generators with the real-side bootstrap shared (paired).

    A thin wrapper over :func:`evaluate_context`: the overlap check runs once, and every cohort
    is encoded once (one vocabulary, one visit-position encoding, one binary matrix) for all
    generators and families. Pass ``context`` to reuse one across calls (both protocols).

    Returns the tidy table with a leading ``model`` column.
    """
    if not synthetic:
        raise MetricError("evaluate_all: no synthetic cohorts given; expected a dict name -> Cohort")
    for name, cohort in synthetic.items():
        if cohort.n_patients == 0:
            raise CohortError(f"synthetic cohort {name!r} is empty: nothing to evaluate")
    context = as_context(train, holdout, dict(synthetic), reference, allow_overlap=allow_overlap, context=context)
    return evaluate_context(context, seed=seed, n_bootstrap=n_bootstrap, models=list(synthetic), progress=progress,
                            **kwargs)


# ---------------------------------------------------------------------------- Table 1
def _cell(r) -> str:
    from ehrlib.metrics.bootstrap import bias_corrected

    estimate = bias_corrected(r.estimate, getattr(r, "bias", np.nan), r.metric)
    return interval_cell(estimate, r.ci_low, r.ci_high, r.spread)


def table1(results: pd.DataFrame, metrics=names.TABLE1_COLUMNS, flat=names.FLAT_MODELS) -> pd.DataFrame:
    """Table 1: one row per model, one column per metric, ``estimate [ci_low, ci_high]`` (or ``± spread``).

    Where a row carries a ``bias`` (prevalence metrics), the cell's estimate is the bias-corrected
    one (:func:`ehrlib.metrics.bootstrap.bias_corrected`), the estimand of its basic interval; the
    plug-in value stays in ``estimate`` of the tidy results.

    Paper: Table 1 (NNAAR, MIA F1, MIA accuracy, prevalence R², RMSE, discriminator score), then
    the columns this project adds (:data:`ehrlib.metrics.names.TABLE1_ADDED_COLUMNS`).

    The paper's *Disc. Score* (:data:`ehrlib.metrics.names.PAPER_DISC_SCORE`) is read from the
    Random Forest for the models in ``flat`` and from the LSTM for every other model; a cell
    says ``not run (lstm)`` when that discriminator was not computed, and the column
    :data:`ehrlib.metrics.names.PAPER_DISC_KIND` names the discriminator of each row.

    Both protocols side by side: concatenate the :func:`evaluate_all` outputs of each protocol
    with a ``protocol`` column; the table then has one row per model and protocol.

    Args:
        results: :func:`evaluate_all` output (a ``model`` column and the tidy metric columns,
            optionally a ``protocol`` column).
        metrics: the columns, in order; metric names that no row has are left out.
        flat: model names (lower case) scored with the Random Forest.
    """
    flat = {m.lower() for m in flat}
    keys = ["model", "protocol"] if "protocol" in results.columns else ["model"]
    sel = results.copy()
    sel["cell"] = [_cell(r) for r in sel.itertuples()]
    wide = sel.pivot(index=keys, columns="metric", values="cell")
    order = pd.MultiIndex.from_frame(results[keys].drop_duplicates()) if len(keys) > 1 else \
        pd.Index(pd.unique(results["model"]), name="model")
    wide = wide.reindex(order)
    if names.PAPER_DISC_SCORE in metrics:
        models = [k[0] if isinstance(k, tuple) else k for k in wide.index]
        kinds = [names.RF if str(m).lower() in flat else names.LSTM for m in models]
        cells = []
        for key, k in zip(wide.index, kinds):
            col = names.disc_metric(k, "score")
            value = wide.at[key, col] if col in wide.columns else None
            cells.append(value if isinstance(value, str) else f"not run ({k})")
        wide[names.PAPER_DISC_SCORE] = cells
        wide[names.PAPER_DISC_KIND] = kinds
    columns = [c for c in metrics if c in wide.columns]
    if names.PAPER_DISC_SCORE in columns:
        columns.insert(columns.index(names.PAPER_DISC_SCORE) + 1, names.PAPER_DISC_KIND)
    wide = wide[columns].reset_index()
    wide.columns.name = None
    return wide
