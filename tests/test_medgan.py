"""MedGAN: shapes, single optimisation steps, data modes, save/load, exact resume, bad configs."""
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.data.encode import Vocabulary, binary_matrix, count_matrix
from ehrlib.data.simulate import simulate
from ehrlib.models.base import GeneratorError
from ehrlib.models.medgan import MedGAN
from conftest import interrupt_then_resume

TINY = dict(embedding_dim=16, discriminator_dim1=32, discriminator_dim2=16, ae_epochs=2, gan_epochs=2,
            ae_batch_size=32, batch_size=32, progress=False, device="cpu")


@pytest.fixture(scope="module")
def train():
    return simulate(150, seed=4)


def medgan(**kw):
    return MedGAN.from_profile("smoke", **{**TINY, **kw})


def params(gen):
    return {f"{k}.{n}": t.detach().clone() for k, m in gen.modules.items() for n, t in m.state_dict().items()}


@pytest.mark.parametrize("vocab_size", [1, 7, 300])
def test_network_shapes(vocab_size):
    gen = medgan()
    nets = gen.build(vocab_size)
    x = torch.rand(5, vocab_size)
    z = torch.randn(5, 16)
    assert nets["encoder"](x).shape == (5, 16)
    assert nets["generator"](z).shape == (5, 16)
    assert nets["decoder"](nets["generator"](z)).shape == (5, vocab_size)
    assert nets["discriminator"](x).shape == (5,)


def test_minibatch_averaging_uses_the_batch_mean():
    disc = medgan().build(6)["discriminator"]
    x = torch.rand(4, 6)
    full = disc(x)
    weight = torch.cat([disc.weight_x, disc.weight_m], 1)  # the original's one Linear(2V, 256)
    first = torch.nn.functional.linear(torch.cat([x, x.mean(0, keepdim=True).expand_as(x)], 1), weight, disc.bias)
    assert torch.allclose(full, disc.rest(first).squeeze(1), atol=1e-6)
    assert not torch.allclose(disc(x[:2]), full[:2])  # a row's score depends on its batch


@pytest.mark.parametrize("mode", ["binary", "count"])
def test_one_step_lowers_the_losses(train, mode):
    gen = medgan(data_mode=mode, lr=1e-3, ae_lr=1e-3)
    gen.device = torch.device("cpu")
    gen._prepare(train)
    gen.modules = gen._build()
    gen.optimizers = gen._optimizers()
    x = torch.as_tensor(gen.x.matrix[:32].toarray())
    z = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    before = gen.ae_loss(x).item()
    gen.ae_step(x)
    assert gen.ae_loss(x).item() < before
    before = gen.d_loss(x, z).item()
    gen.d_step(x, z)
    assert gen.d_loss(x, z).item() < before
    before = gen.g_loss(z).item()
    gen.g_step(z)
    assert gen.g_loss(z).item() < before


def test_binary_mode_gives_one_visit_per_patient(train):
    gen = medgan().fit(train)
    synthetic = gen.generate(40, seed=1)
    assert synthetic.n_patients == 40
    assert (synthetic.events.visit_id == 0).all()
    m = binary_matrix(synthetic, Vocabulary.from_cohorts(synthetic)).toarray()
    assert set(np.unique(m)) <= {0.0, 1.0} and (m.sum(1) > 0).all()
    assert set(synthetic.events.code) <= set(train.events.code)


def test_count_mode_gives_non_negative_integer_counts(train):
    gen = medgan(data_mode="count", ae_epochs=4).fit(train)
    assert gen.config.data_mode == "count"
    synthetic = gen.generate(40, seed=1)
    counts = count_matrix(synthetic, Vocabulary.from_cohorts(synthetic)).toarray()
    assert synthetic.n_patients == 40
    assert (counts >= 0).all() and np.array_equal(counts, np.round(counts)) and (counts.sum(1) > 0).all()
    visits = synthetic.events.groupby("subject_id").visit_id.max() + 1
    assert (visits == counts.max(1)).all()  # a code with count k sits in visits 0..k-1


@pytest.mark.parametrize("mode", ["binary", "count"])
def test_save_load_generate_identical(train, tmp_path, mode):
    gen = medgan(data_mode=mode).fit(train)
    gen.save(tmp_path / "m")
    again = models.load(tmp_path / "m")
    assert isinstance(again, MedGAN) and again.config.data_mode == mode
    a, b = gen.generate(30, seed=5), again.generate(30, seed=5)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert not a.events.equals(gen.generate(30, seed=6).events)
    assert a.validate() is not None and not set(a.subject_ids) & set(train.subject_ids)
    assert all(s.startswith("SYNTH_") for s in a.subject_ids)


@pytest.mark.parametrize("stop_after", [0, 2])  # in the AE phase, in the adversarial phase
def test_interrupted_fit_resumes_exactly(train, tmp_path, stop_after):
    cfg = dict(ae_epochs=2, gan_epochs=2)
    full = medgan(**cfg).fit(train)

    resumed, seen = interrupt_then_resume(lambda: medgan(**cfg), train, tmp_path, after_epoch=stop_after)
    assert seen == list(range(stop_after + 1, 4))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    ref = params(full)
    assert all(torch.equal(v, ref[k]) for k, v in params(resumed).items())
    pd.testing.assert_frame_equal(full.generate(20, seed=0).events, resumed.generate(20, seed=0).events)


@pytest.mark.parametrize("field, value, expected", [
    ("data_mode", "counts", "data_mode='counts'; expected one of"),
    ("embedding_dim", 0, "embedding_dim=0; expected a positive number"),
    ("batch_size", -4, "batch_size=-4; expected a positive number"),
    ("d_steps", 0, "d_steps=0; expected a positive number"),
    ("ae_epochs", -1, "ae_epochs=-1; expected a number >= 0"),
    ("beta1", 1.5, "beta1=1.5; expected a number in"),
    ("decoding", "round", "decoding='round'; expected one of"),
])
def test_bad_configs_name_the_field(field, value, expected):
    with pytest.raises(GeneratorError, match=f"MedGANConfig.{expected}"):
        models.get("medgan", "smoke", **{field: value})


def test_codeless_cohort_and_bad_vocab_size_raise(train):
    gen = medgan()
    with pytest.raises(GeneratorError, match="vocab_size=0"):
        gen.build(0)
    with pytest.raises(ValueError, match="empty cohort"):
        medgan().fit(Cohort.from_events(train.events.iloc[:0], allow_empty=True))


def test_generate_refuses_a_model_that_only_emits_empty_records(train):
    gen = medgan().fit(train)
    with torch.no_grad():
        gen.modules["decoder"].linear.bias.fill_(-1e4)
        gen.modules["decoder"].linear.weight.zero_()
    with pytest.raises(GeneratorError, match="empty records"):
        gen.generate(10, seed=0)


def test_prevalence_follows_training_prevalence():
    train = simulate(400, seed=11)
    gen = MedGAN.from_profile("smoke", progress=False, device="cpu").fit(train)
    synthetic = gen.generate(400, seed=0)
    vocab = Vocabulary.from_cohorts(train)
    real = binary_matrix(train, vocab).mean(0).A1
    fake = binary_matrix(synthetic, vocab).mean(0).A1
    assert np.corrcoef(real, fake)[0, 1] > 0.3


@pytest.mark.parametrize("count", [False, True])
def test_decoding_rules_read_the_decoder_output(count):
    """threshold: the ports' rule (0.5 / rounding); sample: each code drawn from the output, whose
    mean it keeps; the same generator seed, the same records."""
    gen = medgan(data_mode="count" if count else "binary")
    out = torch.full((4000, 5), 0.3)
    out[:, 4] = 0.7
    threshold = gen._decode(out, torch.Generator().manual_seed(0))
    assert threshold[:, :4].sum() == 0 and (threshold[:, 4] == 1).all()
    sample = medgan(data_mode="count" if count else "binary", decoding="sample")
    a = sample._decode(out, torch.Generator().manual_seed(0))
    b = sample._decode(out, torch.Generator().manual_seed(0))
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert np.allclose(a.mean(0), [0.3, 0.3, 0.3, 0.3, 0.7], atol=0.03)
    assert (a >= 0).all() and np.array_equal(a, np.round(a))
    if not count:
        assert set(np.unique(a)) <= {0.0, 1.0}


@pytest.mark.parametrize("mode", ["binary", "count"])
def test_sampled_decoding_generates_seeded_records_that_travel(train, tmp_path, mode):
    gen = medgan(data_mode=mode, decoding="sample").fit(train)
    gen.save(tmp_path / "m")
    again = models.load(tmp_path / "m")
    assert again.config.decoding == "sample"
    a = gen.generate(30, seed=2)
    pd.testing.assert_frame_equal(a.events, again.generate(30, seed=2).events)
    assert a.n_patients == 30 and set(a.events.code) <= set(train.events.code)
    # the same weights under the ports' rule give other records
    assert not a.events.equals(medgan(data_mode=mode).fit(train).generate(30, seed=2).events)
