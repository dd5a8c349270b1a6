"""The DP generators and their audit: the bound is right on known cases; a DP run stays below its
claim; runs with the noise off and the memorizer break the claim (the negative controls that catch a
broken accountant or clipping); DP training is deterministic for a seed on CPU."""
import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("opacus")

from ehrlib import models, profiles  # noqa: E402
from ehrlib.data import simulate, split  # noqa: E402
from ehrlib.errors import GeneratorError  # noqa: E402
from ehrlib.metrics import dp_audit  # noqa: E402

CLAIM = 1.0
SETTINGS = profiles.get("smoke").dp


@pytest.fixture(scope="module")
def audit_setup():
    train, _ = split(simulate(600, seed=0), n_holdout=100, seed=0)
    public = models.get("dp_medgan", "smoke").config.public_codes
    pool = dp_audit.canary_codes(public, SETTINGS.canaries * SETTINGS.canary_codes)
    canaries = dp_audit.make_canaries(pool, SETTINGS.canaries, SETTINGS.canary_codes, seed=0, real=train)
    return train, canaries


def _audit(generator, setup):
    train, canaries = setup
    return dp_audit.audit(generator, train, canaries, seed=0, delta=SETTINGS.delta, confidence=SETTINGS.confidence)


def test_perfect_guesses_give_the_binomial_bound_of_pure_dp():
    # r right out of r at level beta: q**r = beta, eps = log(q / (1 - q)) (Steinke et al. 2023, Theorem 3)
    r, beta = 50, 0.05
    q = beta ** (1 / r)
    assert dp_audit.eps_for_guesses(100, r, r, 0.0, beta) == pytest.approx(math.log(q / (1 - q)), rel=1e-6)


def test_delta_makes_the_bound_smaller():
    assert dp_audit.eps_for_guesses(200, 60, 58, 1e-3, 0.05) < dp_audit.eps_for_guesses(200, 60, 58, 0.0, 0.05)


def test_uninformative_scores_give_no_bound_above_a_small_epsilon():
    rng = np.random.default_rng(0)
    included = rng.random(500) < 0.5
    assert dp_audit.eps_lower_bound(rng.random(500), included, delta=0.0).eps_lower < 0.5


def test_canaries_share_no_code_and_no_real_record(audit_setup):
    train, canaries = audit_setup
    sets = canaries.events.groupby("subject_id")["code"].agg(frozenset)
    assert len(sets) == SETTINGS.canaries and sets.map(len).eq(SETTINGS.canary_codes).all()
    assert len(set().union(*sets)) == SETTINGS.canaries * SETTINGS.canary_codes
    real = set(train.events.groupby("subject_id")["code"].agg(frozenset))
    assert not real & set(sets)


def test_dp_medgan_run_stays_below_its_claim(audit_setup):
    result = _audit(models.get("dp_medgan", "smoke", progress=False, epsilon=CLAIM), audit_setup)
    assert result["claimed_epsilon"] <= CLAIM
    assert result["eps_lower"] <= result["claimed_epsilon"]


def test_dp_medgan_without_noise_breaks_the_claim(audit_setup):
    result = _audit(models.get("dp_medgan", "smoke", progress=False, epsilon=CLAIM, noise_multiplier=0.0),
                    audit_setup)
    assert result["claimed_epsilon"] == math.inf  # the accountant knows there is no noise
    assert result["eps_lower"] > 2 * CLAIM


def test_memorizer_breaks_the_claim(audit_setup):
    result = _audit(models.get("memorizer"), audit_setup)
    assert result["attack"] == "nearest synthetic" and result["eps_lower"] > 2 * CLAIM


def test_dp_marginals_run_stays_below_its_claim(audit_setup):
    result = _audit(models.get("dp_marginals", epsilon=CLAIM), audit_setup)
    assert result["claimed_epsilon"] == CLAIM and result["eps_lower"] <= CLAIM


def test_dp_gpt_run_stays_below_its_claim(audit_setup):
    result = _audit(models.get("dp_gpt", "smoke", progress=False, epsilon=CLAIM, epochs=1), audit_setup)
    assert result["claimed_epsilon"] <= CLAIM and result["eps_lower"] <= result["claimed_epsilon"]


def test_dp_training_is_deterministic_for_a_seed_on_cpu(audit_setup):
    train, _ = audit_setup
    runs = [models.get("dp_medgan", "smoke", progress=False, device="cpu", ae_epochs=2, gan_epochs=1).fit(train)
            for _ in range(2)]
    a, b = (g.generate(50, seed=3) for g in runs)
    assert a.records() == b.records()
    wa, wb = (g.modules["decoder"].linear.weight for g in runs)
    assert bool((wa == wb).all())
    assert runs[0].privacy == runs[1].privacy and runs[0].privacy["epsilon"] <= 8.0


def test_delta_at_or_above_one_over_n_is_refused(audit_setup):
    train, _ = audit_setup
    with pytest.raises(GeneratorError, match="not below 1/n"):
        models.get("dp_medgan", "smoke", progress=False, delta=0.01).fit(train)


def test_early_stopping_on_real_patients_is_refused():
    with pytest.raises(GeneratorError, match="val_fraction, patience and check_every must be 0"):
        models.get("dp_gpt", "smoke", val_fraction=0.1)


def test_dp_marginals_without_noise_release_the_exact_prevalences(audit_setup):
    train, _ = audit_setup
    gen = models.get("dp_marginals", epsilon=math.inf, max_codes=1000).fit(train)
    vocab = set(gen.codes)
    ev = train.events[train.events["code"].isin(vocab)].drop_duplicates(["subject_id", "code"])
    exact = ev["code"].value_counts() / train.n_patients
    got = dict(zip(gen.codes, gen.prevalence))
    assert all(got[c] == pytest.approx(p) for c, p in exact.items())


def test_every_profile_has_dp_budgets_with_delta_below_one_over_n():
    for name in profiles.NAMES:
        p = profiles.get(name)
        n_train = p.data.n_patients - p.data.n_holdout - p.data.n_reference
        assert p.dp.epsilon_list() and p.dp.epsilon_list("marginals_epsilons")
        assert p.dp.delta < 1 / n_train, name


def test_the_tradeoff_figure_draws_each_generator_and_the_reference_lines():
    import pandas as pd

    from ehrlib import plots

    rows = [("dp_medgan_eps1", "medgan", 1.0), ("dp_medgan_eps8", "medgan", 8.0), ("medgan", "medgan", math.inf),
            ("dp_marginals_eps1", "marginals", 1.0), ("holdout", "holdout", math.inf),
            ("memorizer", "memorizer", math.inf)]
    data = pd.DataFrame([{"model": m, "base": b, "epsilon": e, "prevalence_r2": 0.5, "utility_ratio": 0.8,
                          "mia_auc": 0.5} for m, b, e in rows])
    fig = plots.fig_dp_tradeoff(data)
    assert len(fig.axes) == 3 and all(len(ax.get_lines()) == 4 for ax in fig.axes)  # 2 curves + 2 lines
