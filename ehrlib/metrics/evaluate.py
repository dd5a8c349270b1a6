"""Every metric family in one call, as one tidy table (Table 1 with honest uncertainty).

Paper: section 3 (Table 1). Inputs are canonical Cohorts; nothing is taken from model internals.

* ``prevalence``: R², Pearson r and RMSE of per-code patient prevalence, synthetic vs ``train``,
  with basic bootstrap intervals (B = ``n_bootstrap``, the real side shareable across generators).
* ``privacy``: NNAAR, membership inference (accuracy, precision, recall, F1, AUC, TPR at 1% FPR),
  exact-copy rate, DCR share; spread over repeated subsamples, no bootstrap.
* ``discriminator``: real (``holdout``) vs synthetic, balanced, Random Forest or LSTM;
  accuracy, the paper's score, AUC and the AUC score.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from ehrlib.cohort import Cohort, CohortError

FAMILIES = ("prevalence", "privacy", "discriminator")
COLUMNS = ["family", "metric", "estimate", "ci_low", "ci_high", "spread"]


def evaluate(train: Cohort, holdout: Cohort, synthetic: Cohort, families=None, discriminator: str | None = "rf",
             n_bootstrap: int = 1000, seed: int = 0, *, repeats: int = 10, real_resamples=None,
             progress: bool = True) -> pd.DataFrame:
    """Evaluate one synthetic cohort.

    Args:
        train: the real cohort the generator was fitted on.
        holdout: real patients the generator never saw.
        synthetic: the generated cohort.
        families: a subset of ``("prevalence", "privacy", "discriminator")``; all by default.
        discriminator: ``"rf"``, ``"lstm"`` or ``None`` (skip the discriminator family).
        n_bootstrap: bootstrap replicates for the prevalence family.
        seed: seeds every subsample, resample and classifier.
        repeats: subsamples averaged by the privacy metrics (NNAAR R).
        real_resamples: :class:`ehrlib.metrics.bootstrap.RealResamples` of ``train`` to share
            across generators (paired comparison); drawn here when ``None``.
        progress: show a progress bar over the families.

    Returns:
        DataFrame with columns ``family``, ``metric``, ``estimate``, ``ci_low``, ``ci_high``,
        ``spread``; one row per metric.

    Raises:
        CohortError: an empty cohort, or an unknown family.
    """
    families = list(FAMILIES if families is None else families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise CohortError(f"unknown metric family {unknown}; expected a subset of {FAMILIES}")
    if discriminator is None and "discriminator" in families:
        families.remove("discriminator")
    for role, c in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
        if c.n_patients == 0:
            raise CohortError(f"{role} cohort is empty: nothing to evaluate")
    frames = []
    for family in tqdm(families, desc="evaluate", disable=not progress, leave=False):
        if family == "prevalence":
            from ehrlib.metrics.bootstrap import bootstrap_prevalence

            df = bootstrap_prevalence(train, synthetic, n_bootstrap=n_bootstrap, seed=seed, real_resamples=real_resamples)
        elif family == "privacy":
            from ehrlib.metrics.privacy import privacy_metrics

            df = privacy_metrics(train, holdout, synthetic, seed=seed, repeats=repeats)
        else:
            from ehrlib.metrics.discriminator import discriminator_metrics

            scores = discriminator_metrics(holdout, synthetic, kind=discriminator, seed=seed)
            df = pd.DataFrame({"metric": list(scores), "estimate": list(scores.values())})
        frames.append(df.assign(family=family))
    out = pd.concat(frames, ignore_index=True)
    for col in ("ci_low", "ci_high", "spread"):
        if col not in out:
            out[col] = np.nan
    return out[COLUMNS]


def evaluate_all(train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort], *, seed: int = 0,
                 n_bootstrap: int = 1000, **kwargs) -> pd.DataFrame:
    """:func:`evaluate` for several generators with the real-side bootstrap shared (paired).

    Returns the tidy table with a leading ``model`` column.
    """
    from ehrlib.metrics.bootstrap import RealResamples

    shared = RealResamples.draw(train, n_bootstrap=n_bootstrap, seed=seed) if "prevalence" in (
        kwargs.get("families") or FAMILIES) else None
    frames = []
    for name, cohort in tqdm(synthetic.items(), desc="models", leave=False):
        df = evaluate(train, holdout, cohort, seed=seed, n_bootstrap=n_bootstrap, real_resamples=shared,
                      progress=False, **kwargs)
        frames.append(df.assign(model=name))
    out = pd.concat(frames, ignore_index=True)
    return out[["model", *COLUMNS]]


def table1(results: pd.DataFrame, metrics=("prevalence_r2", "disc_score", "disc_auc", "lstm_disc_score",
                                            "lstm_disc_auc", "nnaar", "mia_auc",
                                            "mia_accuracy", "mia_f1", "exact_copy_rate", "dcr_share")) -> pd.DataFrame:
    """Table 1: one row per model, one column per metric, ``estimate [ci_low, ci_high]`` (or ``± spread``)."""
    def fmt(r):
        if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
            return f"{r.estimate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
        if np.isfinite(r.spread):
            return f"{r.estimate:.3f} ± {r.spread:.3f}"
        return f"{r.estimate:.3f}"

    sel = results[results.metric.isin(metrics)].copy()
    sel["cell"] = [fmt(r) for r in sel.itertuples()]
    wide = sel.pivot(index="model", columns="metric", values="cell")
    wide = wide[[m for m in metrics if m in wide.columns]].reset_index()
    wide.columns.name = None
    return wide
