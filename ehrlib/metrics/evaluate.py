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

Which rows carry what: ``ci_low``/``ci_high`` are basic bootstrap intervals (prevalence:
patients of both cohorts resampled; discriminator: held-out predictions resampled); ``spread``
is the standard deviation over repeated subsamples (privacy; nearest-neighbour metrics are never
bootstrapped with replacement). The ``note`` column says which, with sizes.

``protocol="paper"`` switches every family to the paper's eval notebook
(:data:`ehrlib.metrics.names.PROTOCOLS`); ``corrected`` (default) is EVALUATION.md. The
prevalence family is the same in both (the paper's notebook computes R², Pearson r and RMSE of
patient-level prevalence over train ∪ synthetic codes, as here); privacy and discriminator
differ (:func:`ehrlib.metrics.privacy.privacy_metrics`,
:func:`ehrlib.metrics.discriminator.discriminator_family`), and so does the long-tail ablation
(:func:`ehrlib.metrics.longtail.longtail_ablation`). :func:`ehrlib.metrics.protocols.protocol_effects`
measures each difference.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binom
from tqdm import tqdm

from ehrlib.cohort import VISIT, Cohort, CohortError
from ehrlib.errors import MetricError
from ehrlib.metrics import names
from ehrlib.metrics.display import interval_cell

FAMILIES = names.FAMILIES
COLUMNS = ["family", "metric", "estimate", "ci_low", "ci_high", "spread", "note", "bias"]
"""``bias``: mean(θ*) - θ̂ where a patient bootstrap gives it (prevalence), else NaN; tables show
the bias-corrected estimate ``θ̂ - bias`` (:func:`ehrlib.metrics.bootstrap.bias_corrected`)."""

OVERLAP_P_VALUE = 1e-6
"""A holdout is refused when this many exact train copies would happen by chance with at most this probability."""
OVERLAP_MARGIN = 0.05
"""... and its copy rate exceeds the chance rate by more than this (absolute share)."""


# ---------------------------------------------------------------------------- overlap
def _record_keys(cohort: Cohort) -> pd.Series:
    """One hashable key per patient: its visits' code sets in order (ids ignored)."""
    ev = cohort.events
    visit_key = ev[VISIT].astype(str) + ":" + ev["code"].astype(str)
    return visit_key.groupby(ev["subject_id"], sort=False).agg("|".join)


def holdout_overlap(train: Cohort, holdout: Cohort) -> dict:
    """How much ``holdout`` overlaps ``train``: shared subject ids and exact record copies.

    The chance level of exact copies is the share of train records that have an identical twin
    elsewhere in train (a fresh patient of the same population matches a train record about as
    often: short records such as a newborn's single code repeat by nature).

    Returns:
        dict with ``shared_ids`` (count), ``example_ids`` (up to 5), ``copies`` (holdout records
        identical to some train record), ``copy_rate``, ``chance_rate``, ``p_value`` (one-sided
        binomial probability of at least that many copies at the chance rate) and ``refuse``.
    """
    shared = pd.Index(train.subject_ids).intersection(pd.Index(holdout.subject_ids))
    train_keys = _record_keys(train)
    counts = train_keys.value_counts()
    chance = float((train_keys.map(counts) > 1).mean()) if len(train_keys) else 0.0
    holdout_keys = _record_keys(holdout)
    copies = int(holdout_keys.isin(counts.index).sum())
    n = len(holdout_keys)
    rate = copies / n if n else 0.0
    p_value = float(binom.sf(copies - 1, n, min(max(chance, 1e-12), 1.0))) if copies else 1.0
    refuse = len(shared) > 0 or (p_value < OVERLAP_P_VALUE and rate - chance > OVERLAP_MARGIN)
    return {"shared_ids": int(len(shared)), "example_ids": [str(s) for s in shared[:5]], "copies": copies,
            "copy_rate": rate, "chance_rate": chance, "p_value": p_value, "refuse": bool(refuse)}


def check_holdout(train: Cohort, holdout: Cohort) -> None:
    """Raise :class:`CohortError` when ``holdout`` shares subject ids with ``train`` or copies its
    records beyond chance (:func:`holdout_overlap`): a memorising generator would then pass every
    membership test."""
    o = holdout_overlap(train, holdout)
    if not o["refuse"]:
        return
    what = []
    if o["shared_ids"]:
        what.append(f"{o['shared_ids']} subject id(s) are in both (e.g. {', '.join(o['example_ids'])})")
    if o["copy_rate"] - o["chance_rate"] > OVERLAP_MARGIN and o["p_value"] < OVERLAP_P_VALUE:
        what.append(f"{o['copies']} of {holdout.n_patients} holdout records ({o['copy_rate']:.1%}) are exact "
                    f"copies of train records, where {o['chance_rate']:.1%} is expected by chance")
    raise CohortError(
        f"the holdout overlaps train: {'; '.join(what)}. Membership and NNAAR metrics would treat "
        "training patients as unseen; split the data again (ehrlib.data.split) or pass "
        "allow_overlap=True if the overlap is intended"
    )


# ---------------------------------------------------------------------------- encode once
class _Encoded:
    """One vocabulary and one visit-position encoding per cohort, shared by every family."""

    def __init__(self, train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort]):
        from ehrlib.data.encode import Vocabulary, visit_position_matrix
        from ehrlib.metrics.distance import EncodedCohort

        self._cohorts = {"__train__": train, "__holdout__": holdout, **synthetic}
        self.codes = {k: frozenset(pd.unique(c.events["code"]).tolist()) for k, c in self._cohorts.items()}
        self.vocab = Vocabulary(frozenset().union(*self.codes.values()))
        self._positions = max((int(c.events[VISIT].max()) + 1 for c in self._cohorts.values() if c.n_events),
                              default=1)
        self._enc: dict = {}
        self._binary: dict = {}
        self._encode = lambda c: EncodedCohort.from_matrix(visit_position_matrix(c, self.vocab, self._positions),
                                                           len(self.vocab))

    def _get(self, key: str):
        if key not in self._enc:  # each cohort encoded once, on first use
            self._enc[key] = self._encode(self._cohorts[key])
        return self._enc[key]

    def privacy(self, name: str):
        return self._get("__train__"), self._get("__holdout__"), self._get(name)

    def union(self, *keys: str):
        """The vocabulary of the named cohorts' codes (what each family compared over before)."""
        from ehrlib.data.encode import Vocabulary

        return Vocabulary(frozenset().union(*(self.codes[k] for k in keys)))

    def binary(self, key: str, vocab):
        """The cohort's patients x codes binary matrix over ``vocab`` (a sub-vocabulary of the
        shared one): built once over the shared vocabulary, then its columns taken (the
        discriminator's real class, the same cohort for every generator)."""
        from ehrlib.data.encode import binary_matrix

        if key not in self._binary:
            self._binary[key] = binary_matrix(self._cohorts[key], self.vocab)
        return self._binary[key][:, self.vocab.index(vocab.codes)]


# ---------------------------------------------------------------------------- evaluate
def _kinds(discriminator, discriminators) -> tuple[str, ...]:
    if discriminators is not None:
        kinds = tuple(discriminators)
    else:
        kinds = () if discriminator is None else (discriminator,)
    for k in kinds:
        names.check_kind(k)
    return kinds


def evaluate(train: Cohort, holdout: Cohort, synthetic: Cohort, families=None, discriminator: str | None = "rf",
             n_bootstrap: int = 1000, seed: int = 0, *, discriminators=None, protocol: str = names.CORRECTED,
             real: str = "train", repeats: int = 10, real_resamples=None, allow_overlap: bool = False,
             progress: bool = True, _encoded: _Encoded | None = None, _name: str = "synthetic",
             **discriminator_options) -> pd.DataFrame:
    """Evaluate one synthetic cohort.

    Args:
        train: the real cohort the generator was fitted on.
        holdout: real patients the generator never saw.
        synthetic: the generated cohort.
        families: a subset of :data:`ehrlib.metrics.names.FAMILIES`; all by default.
        discriminator: ``"rf"``, ``"lstm"`` or ``None`` (skip the discriminator family); ignored
            when ``discriminators`` is given.
        n_bootstrap: bootstrap replicates for the prevalence and discriminator intervals.
        seed: seeds every subsample, resample and classifier.
        discriminators: several kinds in one call, e.g. ``("rf", "lstm")``; rows are named by kind.
        protocol: ``"corrected"`` (default) or ``"paper"`` (:data:`ehrlib.metrics.names.PROTOCOLS`).
        real: the discriminator's real class, ``"train"`` (default) or ``"holdout"``.
        repeats: subsamples averaged by the privacy metrics (NNAAR R).
        real_resamples: :class:`ehrlib.metrics.bootstrap.RealResamples` of ``train`` to share
            across generators (paired comparison); drawn here when ``None``.
        allow_overlap: evaluate even when ``holdout`` overlaps ``train`` (shared subject ids, or
            exact record copies beyond chance: :func:`check_holdout`); refused by default.
        progress: show a progress bar over the families.
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
    families = list(FAMILIES if families is None else families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise MetricError(f"unknown metric family {unknown}; expected a subset of {FAMILIES}")
    kinds = _kinds(discriminator, discriminators)
    if not kinds and names.DISCRIMINATOR in families:
        families.remove(names.DISCRIMINATOR)
    for role, c in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
        if c.n_patients == 0:
            raise CohortError(f"{role} cohort is empty: nothing to evaluate")
    if not allow_overlap:
        check_holdout(train, holdout)
    enc = _encoded or _Encoded(train, holdout, {_name: synthetic})
    frames = []
    for family in tqdm(families, desc="evaluate", disable=not progress, leave=False):
        if family == names.PREVALENCE:
            from ehrlib.metrics.bootstrap import bootstrap_prevalence

            df = bootstrap_prevalence(train, synthetic, n_bootstrap=None if real_resamples is not None else n_bootstrap,
                                      seed=seed, real_resamples=real_resamples,
                                      vocab=enc.union("__train__", _name))
            b = real_resamples.n_bootstrap if real_resamples is not None else n_bootstrap
            df["note"] = (f"basic bootstrap interval, B={b}, patients of train and synthetic resampled "
                          f"independently{' (train side shared across generators)' if real_resamples else ''}")
        elif family == names.PRIVACY:
            from ehrlib.metrics.privacy import privacy_metrics

            df = privacy_metrics(train, holdout, synthetic, seed=seed, repeats=repeats, protocol=protocol,
                                 encoded=enc.privacy(_name))
        else:
            from ehrlib.metrics.discriminator import discriminator_family

            real_key = "__train__" if real == "train" else "__holdout__"
            vocab = enc.union(real_key, _name)
            real_binary = enc.binary(real_key, vocab) if names.RF in kinds else None
            df = discriminator_family(train, holdout, synthetic, kinds, protocol=protocol, real=real,
                                      n_bootstrap=n_bootstrap, seed=seed, vocab=vocab, real_binary=real_binary,
                                      **discriminator_options)
        frames.append(df.assign(family=family))
    out = pd.concat(frames, ignore_index=True)
    for col in ("ci_low", "ci_high", "spread", "bias"):
        if col not in out:
            out[col] = np.nan
    if "note" not in out:
        out["note"] = ""
    out["note"] = out["note"].fillna("")
    return out[COLUMNS]


def evaluate_all(train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort], *, seed: int = 0,
                 n_bootstrap: int = 1000, allow_overlap: bool = False, progress: bool = True,
                 **kwargs) -> pd.DataFrame:
    """:func:`evaluate` for several generators with the real-side bootstrap shared (paired).

    The overlap check runs once, and every cohort is encoded once (one vocabulary, one
    visit-position encoding, the Random Forest's real-side matrix) for all generators and families.

    Returns the tidy table with a leading ``model`` column.
    """
    from ehrlib.metrics.bootstrap import RealResamples

    if not synthetic:
        raise MetricError("evaluate_all: no synthetic cohorts given; expected a dict name -> Cohort")
    if not allow_overlap:
        check_holdout(train, holdout)
    families = kwargs.get("families") or FAMILIES
    shared = RealResamples.draw(train, n_bootstrap=n_bootstrap, seed=seed) if names.PREVALENCE in families else None
    for name, cohort in synthetic.items():
        if cohort.n_patients == 0:
            raise CohortError(f"synthetic cohort {name!r} is empty: nothing to evaluate")
    enc = _Encoded(train, holdout, dict(synthetic))
    frames = []
    for name, cohort in tqdm(synthetic.items(), desc="models", leave=False, disable=not progress):
        df = evaluate(train, holdout, cohort, seed=seed, n_bootstrap=n_bootstrap, real_resamples=shared,
                      allow_overlap=True, progress=False, _encoded=enc, _name=name, **kwargs)
        frames.append(df.assign(model=name))
    out = pd.concat(frames, ignore_index=True)
    return out[["model", *COLUMNS]]


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
