"""The measured effect of each difference between the paper's protocol and the corrected one.

Paper: section 3 and the paper's eval notebook. One table for the deviations page: for every
difference, the metric it moves, its value under the paper's rule and under ours, computed on
the same cohorts with the same seed, one difference at a time where the code allows it (the
other settings held at the corrected protocol's), then both protocols as wholes.
"""
from __future__ import annotations

import pandas as pd

from ehrlib.cohort import Cohort
from ehrlib.metrics import names

DIFFERENCES = {
    "distance": "set distance + 1 when the numbers of visits differ (paper) vs no length term (corrected)",
    "nnaar_rules": "NNAAR: the query is its own nearest neighbour, ties count 0, samples of up to 1,000 "
                   "(paper) vs the self pair excluded by index and ties 1/2 (corrected)",
    "mia_rules": "MIA: 500 + 500 records, member strictly below the median (paper) vs min(train, holdout) each, "
                 "fractional tie-break at the median (corrected)",
    "disc_real_class": "discriminator real class: all of train, imbalanced, unstratified split (paper) vs a train "
                       "sample balanced to the synthetic size, stratified (corrected)",
    "disc_holdout": "discriminator real class: the holdout, balanced (the previous default) vs a balanced train "
                    "sample (corrected)",
    "longtail": "long-tail subsets: occurrence-count percentiles, training codes only, prevalence over the "
                "patients left (paper) vs patient-count percentiles, novel codes kept, all patients (corrected)",
    "whole": "the whole protocol (paper vs corrected)",
}
"""Every protocol difference measured by :func:`protocol_effects`, by key."""

COLUMNS = ["model", "difference", "description", "metric", "paper", "corrected", "effect"]


def protocol_effects(train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort], *, seed: int = 0,
                     n_bootstrap: int = 2, repeats: int = 5, discriminator: str | None = "rf",
                     percentile: float = 90.0, allow_overlap: bool = False, context=None) -> pd.DataFrame:
    """Measure each protocol difference on the same cohorts (the deviations page's table).

    Args:
        train, holdout: the real cohorts.
        synthetic: ``name -> Cohort``; the reference generators (``holdout``, ``memorizer``)
            show the effects most clearly.
        seed, repeats: as in :func:`ehrlib.metrics.evaluate`.
        n_bootstrap: replicates of the intervals that the metric functions compute; the table
            shows point estimates only, which do not depend on it, so the default is the fewest
            the functions accept.
        discriminator: ``"rf"``, ``"lstm"`` or ``None`` (skip the discriminator differences).
        percentile: the long-tail subset compared.
        allow_overlap: passed to :func:`ehrlib.metrics.evaluate`.
        context: the :class:`ehrlib.metrics.context.EvaluationContext` of these cohorts, when the
            caller has it (a run's stored one); built here otherwise.

    Returns:
        One row per model, difference and metric: ``model``, ``difference`` (a key of
        :data:`DIFFERENCES`), ``description``, ``metric``, ``paper``, ``corrected``, ``effect``
        (paper minus corrected).
    """
    from ehrlib.metrics.context import as_context
    from ehrlib.metrics.discriminator import discriminator_from_context
    from ehrlib.metrics.evaluate import evaluate_context
    from ehrlib.metrics.longtail import longtail_ablation
    from ehrlib.metrics.privacy import PAPER_DISTANCE, privacy_from_context

    context = as_context(train, holdout, synthetic, allow_overlap=allow_overlap, context=context)
    both = [f for f in names.FAMILIES if f not in names.CORRECTED_ONLY_FAMILIES]
    rows = []

    def add(model, key, metric, paper, corrected):
        rows.append({"model": model, "difference": key, "description": DIFFERENCES[key], "metric": metric,
                     "paper": float(paper), "corrected": float(corrected), "effect": float(paper) - float(corrected)})

    def privacy(model, **kw):
        return privacy_from_context(context, model, seed=seed, repeats=repeats, **kw).set_index("metric")["estimate"]

    for model in synthetic:
        corrected = privacy(model)
        # the distance alone, corrected rules
        with_length = privacy(model, metric=PAPER_DISTANCE)
        for m in (names.NNAAR, names.MIA_ACCURACY, names.MIA_F1):
            add(model, "distance", m, with_length[m], corrected[m])
        # the paper's rules on our distance
        paper_rules = privacy(model, protocol=names.PAPER, metric="set")
        add(model, "nnaar_rules", names.NNAAR, paper_rules[names.NNAAR], corrected[names.NNAAR])
        for m in (names.MIA_ACCURACY, names.MIA_F1, names.MIA_PRECISION, names.MIA_RECALL):
            add(model, "mia_rules", m, paper_rules[m], corrected[m])
        if discriminator is not None:
            def disc(**kw):
                out = discriminator_from_context(context, model, (discriminator,), seed=seed,
                                                 n_bootstrap=n_bootstrap, **kw)
                return out.set_index("metric")["estimate"]

            d_corr, d_paper, d_hold = disc(), disc(protocol=names.PAPER), disc(real="holdout")
            for stat in ("accuracy", "score", "auc"):
                m = names.disc_metric(discriminator, stat)
                add(model, "disc_real_class", m, d_paper[m], d_corr[m])
                add(model, "disc_holdout", m, d_hold[m], d_corr[m])
        lt = {p: longtail_ablation(train, holdout, {model: synthetic[model]}, [percentile], protocol=p,
                                   panels=(names.PREVALENCE,), n_bootstrap=max(n_bootstrap, 2), seed=seed,
                                   context=context).set_index("metric")["estimate"] for p in names.PROTOCOLS}
        for m in (names.PREVALENCE_R2, names.PREVALENCE_RMSE):
            add(model, "longtail", f"{m}@p{percentile:g}", lt[names.PAPER][m], lt[names.CORRECTED][m])
        kinds = () if discriminator is None else (discriminator,)
        whole = {p: evaluate_context(context, both, discriminators=kinds, protocol=p, seed=seed,
                                     n_bootstrap=n_bootstrap, repeats=repeats, models=[model], progress=False)
                 .set_index("metric")["estimate"] for p in names.PROTOCOLS}
        for m in whole[names.PAPER].index.intersection(whole[names.CORRECTED].index):
            add(model, "whole", m, whole[names.PAPER][m], whole[names.CORRECTED][m])
    return pd.DataFrame(rows, columns=COLUMNS)
