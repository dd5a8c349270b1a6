"""CorGAN: the exact 8-layer length pathway, shapes, single steps, save/load, exact resume, bad configs."""
import random

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.data.encode import Vocabulary, binary_matrix
from ehrlib.data.simulate import simulate
from ehrlib.models.base import GeneratorError
from ehrlib.models.corgan import CorGAN, corgan_pathway
from conftest import interrupt_then_resume

TINY = dict(latent_dim=16, bottleneck=16, channels=2, critic_channels=4, ae_epochs=2, gan_epochs=2,
            batch_size=16, critic_steps=2, progress=False, device="cpu")


@pytest.fixture(scope="module")
def train():
    return simulate(120, seed=5)


def corgan(**kw):
    return CorGAN.from_profile("smoke", **{**TINY, **kw})


def check_pathway(v):
    layers = corgan_pathway(v)
    assert len(layers) == 8 and layers[0][0] == v and layers[-1][1] == 1
    for (l_in, l_out, k, s), nxt in zip(layers, layers[1:] + [(1,)]):
        assert (l_in - k) % s == 0 and (l_in - k) // s + 1 == l_out == nxt[0]  # conv lands exactly
        assert (l_out - 1) * s + k == l_in  # the mirrored ConvTranspose1d returns exactly
        assert 1 <= k <= l_in


def test_paper_pathway_for_6955_codes():
    layers = corgan_pathway(6955)
    assert [l[0] for l in layers] + [1] == [6955, 3476, 1736, 578, 192, 63, 20, 4, 1]


@pytest.mark.parametrize("v", [1, 2, 3, 4, 5, 50, 581, 1071, 6955, 7000])
def test_pathway_is_exact_for_named_sizes(v):
    check_pathway(v)


def test_pathway_is_exact_for_a_sweep_of_sizes():
    sizes = list(range(1, 3001)) + random.Random(0).sample(range(3001, 20001), 300)
    for v in sizes:
        check_pathway(v)


@pytest.mark.parametrize("v", [1, 3, 50, 581, 1071])
def test_networks_have_the_right_shapes(v):
    nets = models.get("corgan", "smoke", **{k: TINY[k] for k in ("latent_dim", "bottleneck", "channels")}).build(v)
    assert isinstance(nets, torch.nn.Module)
    x = torch.rand(3, v).round()
    nets.eval()
    code = nets.encode(x)
    assert code.shape == (3, 16, 1)
    assert nets.decode(code).shape == (3, v)
    assert nets.generate(torch.randn(3, 16)).shape == (3, v)
    assert nets.score(x).shape == (3,)


def test_paper_networks_build_without_data():
    nets = models.get("corgan", "paper").build(6955).eval()
    assert nets.decode(nets.encode(torch.zeros(2, 6955))).shape == (2, 6955)
    assert nets.generate(torch.randn(2, 128)).shape == (2, 6955)
    assert all(isinstance(m, torch.nn.Module) for m in (nets.encoder, nets.decoder, nets.generator, nets.critic))


def test_one_step_lowers_the_losses(train):
    gen = corgan()
    gen.device = torch.device("cpu")
    gen._prepare(train)
    gen.modules = gen._build()
    gen.optimizers = gen._optimizers()
    x = torch.as_tensor(gen.x.matrix[:16].toarray())
    g = torch.Generator().manual_seed(0)
    z, eps = torch.randn(16, 16, generator=g), torch.rand(16, 1, generator=g)
    before = gen.ae_loss(x).item()
    gen.ae_step(x)
    assert gen.ae_loss(x).item() < before
    before = gen.critic_loss(x, z, eps).item()
    gen.critic_step(x, z, eps)
    assert gen.critic_loss(x, z, eps).item() < before
    before = gen.g_loss(z).item()
    gen.g_step(z)
    assert gen.g_loss(z).item() < before


def test_gradient_penalty_is_added(train):
    gen = corgan()
    gen.device = torch.device("cpu")
    gen._prepare(train)
    gen.modules = gen._build()
    x = torch.as_tensor(gen.x.matrix[:8].toarray())
    z, eps = torch.randn(8, 16), torch.rand(8, 1)
    with_gp = gen.critic_loss(x, z, eps).item()
    gen.config = gen.preset("smoke", **{**TINY, "gp_weight": 0.0})
    assert with_gp > gen.critic_loss(x, z, eps).item()


def test_generates_binary_flat_records_of_train_codes(train):
    gen = corgan().fit(train)
    synthetic = gen.generate(30, seed=2)
    assert synthetic.n_patients == 30 and (synthetic.events.visit_id == 0).all()
    m = binary_matrix(synthetic, Vocabulary.from_cohorts(synthetic)).toarray()
    assert set(np.unique(m)) <= {0.0, 1.0} and (m.sum(1) > 0).all()
    assert set(synthetic.events.code) <= set(train.events.code)
    assert all(s.startswith("SYNTH_") for s in synthetic.subject_ids)
    assert not set(synthetic.subject_ids) & set(train.subject_ids)


def test_save_load_generate_identical(train, tmp_path):
    gen = corgan().fit(train)
    gen.save(tmp_path / "c")
    again = models.load(tmp_path / "c")
    assert isinstance(again, CorGAN)
    a, b = gen.generate(25, seed=3), again.generate(25, seed=3)
    pd.testing.assert_frame_equal(a.events, b.events)


def test_sampled_decoding_draws_seeded_binary_records(train, tmp_path):
    gen = corgan(decoding="sample").fit(train)
    gen.save(tmp_path / "c")
    a = gen.generate(25, seed=3)
    pd.testing.assert_frame_equal(a.events, models.load(tmp_path / "c").generate(25, seed=3).events)
    m = binary_matrix(a, Vocabulary.from_cohorts(a)).toarray()
    assert set(np.unique(m)) <= {0.0, 1.0} and (m.sum(1) > 0).all() and (a.events.visit_id == 0).all()
    assert not a.events.equals(corgan().fit(train).generate(25, seed=3).events)  # the threshold rule's


def test_interrupted_fit_resumes_exactly(train, tmp_path):
    full = corgan().fit(train)

    resumed, seen = interrupt_then_resume(lambda: corgan(), train, tmp_path, after_epoch=2)  # first adversarial epoch
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    a, b = full.modules["nets"].state_dict(), resumed.modules["nets"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("field, value, expected", [
    ("latent_dim", 0, "latent_dim=0; expected a positive number"),
    ("batch_size", 1, "batch_size=1; expected >= 2"),
    ("critic_steps", -1, "critic_steps=-1; expected a positive number"),
    ("gp_weight", -10, "gp_weight=-10; expected a number >= 0"),
    ("ae_beta1", 1.0, "ae_beta1=1.0; expected a number in"),
    ("decoding", "bernoulli", "decoding='bernoulli'; expected one of"),
])
def test_bad_configs_name_the_field(field, value, expected):
    with pytest.raises(GeneratorError, match=f"CorGANConfig.{expected}"):
        models.get("corgan", "smoke", **{field: value})


def test_bad_vocabulary_sizes_raise(train):
    for v in (0, -3, 2.5):
        with pytest.raises(GeneratorError, match="vocab_size"):
            corgan_pathway(v)
    with pytest.raises(ValueError, match="empty cohort"):
        corgan().fit(Cohort.from_events(train.events.iloc[:0], allow_empty=True))


def test_generate_refuses_a_model_that_only_emits_empty_records(train):
    gen = corgan().fit(train)
    with torch.no_grad():
        last = gen.modules["nets"].decoder[0 - 1]
        last.bias.fill_(-1e4)
        last.weight.zero_()
    with pytest.raises(GeneratorError, match="empty records"):
        gen.generate(10, seed=0)
