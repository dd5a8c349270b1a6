"""One seed rule for every generator (:func:`ehrlib.models.base.check_seed`): an integer from 0 to
``2**63 - 1``; anything else is a GeneratorError naming the model and the value, before any work."""
import pytest

from ehrlib import models
from ehrlib.errors import GeneratorError
from ehrlib.models.base import MAX_SEED

NAMES = ["medgan", "corgan", "promptehr", "halo", "gpt", "marginals", "memorizer"]
REFERENCE = {"marginals", "memorizer"}


def _get(name):
    return models.get(name) if name in REFERENCE else models.get(name, profile="smoke")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed, words", [(2**64, "expected an integer >= 0 and <= 2**63 - 1"), (MAX_SEED + 1, "2**63 - 1"),
                                         (-1, "seed=-1"), (True, "seed=True"), (1.0, "seed=1.0")])
def test_every_generator_refuses_a_seed_outside_the_rule(name, seed, words):
    gen = _get(name)
    with pytest.raises(GeneratorError, match=rf"{name}: .*") as info:
        gen.generate(5, seed=seed)
    assert words in str(info.value)


@pytest.mark.parametrize("name", ["marginals", "medgan"])
def test_the_largest_seed_works_for_reference_and_neural_generators(name, small_cohort):
    gen = _get(name).fit(small_cohort)
    a, b = gen.generate(20, seed=MAX_SEED), gen.generate(20, seed=MAX_SEED)
    assert a.records() == b.records() and a.n_patients > 0


@pytest.mark.parametrize("name", [n for n in NAMES if n not in REFERENCE])
@pytest.mark.parametrize("seed", [2**64, -1])
def test_every_neural_config_refuses_a_training_seed_outside_the_rule(name, seed):
    with pytest.raises(GeneratorError, match=rf"Config\.seed={seed}; expected an integer >= 0 and <= 2\*\*63 - 1"):
        models.get(name, profile="smoke", seed=seed)
