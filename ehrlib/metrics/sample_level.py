"""Sample-level fidelity: α-precision, β-recall and authenticity (Alaa et al., 2022).

Paper: none (the paper's fidelity metrics are dataset-level); the metrics are those of Alaa,
van Breugel, Saveliev and van der Schaar, "How Faithful is your Synthetic Data? Sample-level
Metrics for Evaluating and Auditing Generative Models" (ICML 2022), computed on the book's page
of stage 46 as follows.

**Embedding.** Each patient is the 0/1 vector of the codes in their record over the context's
one vocabulary (the binary matrix every family shares), projected on the first
:data:`EMBED_DIM` components of a truncated SVD fitted on train alone (scikit-learn's
``TruncatedSVD``, seeded). Chosen because it is fitted on nothing but the real training data
(no generator can shape it), deterministic and cheap at the paper's scale, and keeps what the
multi-hot matrix says about which codes go together (the leading components are the
co-occurrence structure a marginal sampler lacks), where raw Euclidean distances between sparse
multi-hot vectors are dominated by record length. Alaa et al. learn a one-class embedding
instead; that needs a trained network per dataset, which this project's evaluation avoids.

**Metrics** (supports are balls around the mean of the embedded cohort):

* α-precision ``P_α``: the share of synthetic patients inside the smallest ball around train's
  centre holding a share α of train patients; a faithful generator has ``P_α = α``. The summary
  is the integrated ``1 - 2 mean_α |P_α - α|`` over α = 0.05, 0.10, ..., 0.95, and ``P_0.9`` is
  reported alone (records outside train's 90 % ball are atypical of real data).
* β-recall ``R_β``: the share of train patients that fall in the synthetic β-support: within the
  distance to its :data:`K_NEIGHBOURS`-th nearest synthetic neighbour of some synthetic patient
  inside the synthetic cohort's β-ball (searched among each train patient's
  :data:`CANDIDATES` nearest synthetic patients); integrated as for precision, and ``R_0.9``.
* authenticity: the share of synthetic patients farther from their nearest train patient than
  that train patient is from its own nearest other train patient (a copy is at distance 0: the
  memorizer scores 0; real patients no generator saw, the holdout row, give the level a
  generator that does not copy reaches).

**Uncertainty.** These are nearest-neighbour statistics, which resampling with replacement
breaks (duplicates at distance 0), so the spread is the standard deviation over
:data:`REPEATS` subsamples without replacement of half the synthetic patients (at most
:data:`N_SUBSAMPLE`) against the whole train cohort; the estimate is their mean; no interval.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ehrlib.metrics import names

EMBED_DIM = 32
"""Components of the truncated SVD embedding."""
ALPHAS = np.arange(1, 20) / 20
"""The α (and β) grid of the integrated metrics."""
HIGH = 0.9
"""The α (and β) of the rows reported alone."""
K_NEIGHBOURS = 5
"""The synthetic k-NN radius that makes a synthetic patient's ball in β-recall."""
CANDIDATES = 10
"""Nearest synthetic patients searched for each train patient in β-recall."""
N_SUBSAMPLE = 1000
"""Synthetic patients per subsample."""
REPEATS = 5
"""Subsamples per estimate."""


def embedding(context, seed: int = 0):
    """``(embed, train_points)``: the train-fitted truncated SVD (a function of a patients x
    vocabulary 0/1 matrix) and train's embedded patients; made once per context and seed."""
    from sklearn.decomposition import TruncatedSVD

    def build():
        x = context.binary(context.real_key("train")).astype(np.float64)
        dim = max(1, min(EMBED_DIM, x.shape[1] - 1, x.shape[0] - 1))
        svd = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=5, random_state=int(seed)).fit(x)
        return svd, svd.transform(x)
    svd, points = context.memo(("sample_embedding", int(seed)), build)
    return (lambda m: svd.transform(m.astype(np.float64))), points


def _real_side(context, seed: int):
    """Train's centre, α radii, the :data:`HIGH` radius, a 2-NN index of train, each train
    patient's distance to its nearest other one, and the train patients β-recall checks."""
    from sklearn.neighbors import NearestNeighbors

    def build():
        _, real = embedding(context, seed)
        centre = real.mean(axis=0)
        dist = np.linalg.norm(real - centre, axis=1)
        nn = NearestNeighbors(n_neighbors=2).fit(real)
        d, _ = nn.kneighbors(real)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 46, 1]))
        check = real if len(real) <= RECALL_POINTS else real[rng.choice(len(real), RECALL_POINTS, replace=False)]
        return centre, np.quantile(dist, ALPHAS), np.quantile(dist, HIGH), nn, d[:, 1], check
    return context.memo(("sample_real", int(seed)), build)


RECALL_POINTS = 2000
"""β-recall checks at most this many train patients (a seeded sample of them)."""


def sample_scores(synthetic: np.ndarray, real_side, subsamples) -> list[dict]:
    """α-precision, β-recall and authenticity of each subsample (index arrays into the embedded
    ``synthetic`` points) against train (``real_side``, :func:`_real_side`)."""
    from sklearn.neighbors import NearestNeighbors

    centre, radii, radius_high, nn_real, real_gap, check = real_side
    d_centre = np.linalg.norm(synthetic - centre, axis=1)
    d_near, i_near = nn_real.kneighbors(synthetic, n_neighbors=1)
    authentic = d_near[:, 0] > real_gap[i_near[:, 0]]
    out = []
    for idx in subsamples:
        syn = synthetic[idx]
        p_alpha = (d_centre[idx][None, :] <= radii[:, None]).mean(axis=1)
        s_dist = np.linalg.norm(syn - syn.mean(axis=0), axis=1)
        nn_syn = NearestNeighbors(n_neighbors=min(K_NEIGHBOURS + 1, len(idx))).fit(syn)
        s_radius = nn_syn.kneighbors(syn)[0][:, -1]  # the k-th other synthetic point (the first is itself)
        d_rs, near = nn_syn.kneighbors(check, n_neighbors=min(CANDIDATES, len(idx)))
        inside_ball = d_rs <= s_radius[near]
        beta_radii = np.quantile(s_dist, ALPHAS)
        covered = np.array([(inside_ball & (s_dist[near] <= r)).any(axis=1).mean() for r in beta_radii])
        high = float((inside_ball & (s_dist[near] <= np.quantile(s_dist, HIGH))).any(axis=1).mean())
        out.append({names.ALPHA_PRECISION: 1 - 2 * float(np.mean(np.abs(p_alpha - ALPHAS))),
                    names.BETA_RECALL: 1 - 2 * float(np.mean(np.abs(covered - ALPHAS))),
                    names.AUTHENTICITY: float(authentic[idx].mean()),
                    names.ALPHA_PRECISION_HIGH: float((d_centre[idx] <= radius_high).mean()),
                    names.BETA_RECALL_HIGH: high, "p_alpha": p_alpha, "r_beta": covered})
    return out


def _draws(context, name: str, seed: int, repeats: int, n_subsample: int):
    def build():
        embed, _ = embedding(context, seed)
        points = embed(context.binary(name))
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 46]))
        size = min(int(n_subsample), max(2, len(points) // 2))
        subs = [rng.choice(len(points), size=size, replace=False) for _ in range(int(repeats))]
        return sample_scores(points, _real_side(context, seed), subs), size
    return context.memo(("sample_draws", name, int(seed), int(repeats), int(n_subsample)), build)


def precision_recall_curves(context, names_=None, *, seed: int = 0, repeats: int = REPEATS,
                            n_subsample: int = N_SUBSAMPLE) -> pd.DataFrame:
    """``P_α`` and ``R_β`` on the α grid (:data:`ALPHAS`) per synthetic cohort, averaged over the
    subsamples of :func:`sample_fidelity_from_context` (the same draws): ``model``, ``alpha``,
    ``precision``, ``recall``; a faithful generator lies on the diagonal."""
    rows = []
    for name in (context.synthetic if names_ is None else names_):
        draws, _ = _draws(context, name, seed, repeats, n_subsample)
        p = np.mean([d["p_alpha"] for d in draws], axis=0)
        r = np.mean([d["r_beta"] for d in draws], axis=0)
        rows += [{"model": name, "alpha": a, "precision": pa, "recall": rb} for a, pa, rb in zip(ALPHAS, p, r)]
    return pd.DataFrame(rows)


def sample_fidelity_from_context(context, name: str, *, seed: int = 0, repeats: int = REPEATS,
                                 n_subsample: int = N_SUBSAMPLE) -> pd.DataFrame:
    """The sample-level family of one synthetic cohort of an :class:`ehrlib.metrics.context.EvaluationContext`.

    Rows :data:`ehrlib.metrics.names.SAMPLE_FIDELITY_STATS`: the mean over ``repeats``
    subsamples, their standard deviation in ``spread`` (module docstring).
    """
    draws, size = _draws(context, name, seed, repeats, n_subsample)
    real = embedding(context, seed)[1]
    note = (f"truncated SVD ({real.shape[1]} components) of the patients x codes 0/1 matrix, fitted on train; "
            f"mean and standard deviation over {repeats} subsamples of {size} {name} patients without replacement "
            f"against all {len(real)} train patients; no interval (nearest-neighbour statistic)")
    what = {names.ALPHA_PRECISION: "integrated alpha-precision 1 - 2 mean|P_a - a| (ideal 1)",
            names.BETA_RECALL: "integrated beta-recall 1 - 2 mean|R_b - b| (ideal 1)",
            names.AUTHENTICITY: "share of records farther from their nearest train record than it is from its own "
                                "nearest train neighbour (copies: 0)",
            names.ALPHA_PRECISION_HIGH: f"share inside train's {HIGH:.0%} ball (ideal {HIGH:g})",
            names.BETA_RECALL_HIGH: f"share of train inside the synthetic {HIGH:.0%} support (ideal {HIGH:g})"}
    rows = []
    for stat in names.SAMPLE_FIDELITY_STATS:
        v = np.array([d[stat] for d in draws])
        rows.append({"metric": stat, "estimate": float(v.mean()), "ci_low": np.nan, "ci_high": np.nan,
                     "spread": float(v.std(ddof=1)) if len(v) > 1 else np.nan, "note": f"{what[stat]}; {note}"})
    return pd.DataFrame(rows)
