"""HALO: causal fine head, exact sampler, training, overfitting, save/load, resume, output, configs."""
import itertools

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.data.simulate import simulate
from ehrlib.models.base import GeneratorError
from ehrlib.models.halo import HALO, HALOConfig, fine_head
from ehrlib.models.neural import pick_device
from conftest import interrupt_then_resume

TINY = dict(progress=False, n_embd=16, n_layer=1, n_head=2, fine_layers=1, dropout=0.0,
            batch_size=32, lr=3e-3, epochs=2, sample_batch_size=128)


@pytest.fixture(scope="module")
def train():
    return simulate(150, seed=5)


@pytest.fixture(scope="module")
def fitted(train):
    return HALO.from_profile("smoke", **TINY).fit(train)


def weights(gen):
    return {f"{k}.{n}": t.detach().clone() for k, m in gen.modules.items() for n, t in m.state_dict().items()}


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_fine_head_logit_j_ignores_codes_at_or_after_j(layers):
    torch.manual_seed(0)
    width = 9
    head = fine_head(6, width, layers, init_std=0.5)
    h = torch.randn(4, 6)
    x = (torch.rand(4, width) < 0.5).float()
    base = head(h, x)
    for j in range(width):
        y = x.clone()
        y[:, j] = 1 - y[:, j]
        out = head(h, y)
        assert torch.equal(out[:, :j + 1], base[:, :j + 1])      # columns <= j unchanged
        if j + 1 < width:
            assert not torch.allclose(out[:, j + 1:], base[:, j + 1:])  # later columns do see code j


def test_sparse_and_dense_head_inputs_agree():
    torch.manual_seed(1)
    head = fine_head(5, 7, 2, init_std=0.3)
    h, x = torch.randn(3, 5), (torch.rand(3, 7) < 0.4).float()
    rows, cols = torch.nonzero(x, as_tuple=True)
    torch.testing.assert_close(head.rest(head.first(h, rows, cols)), head(h, x))


def test_model_is_causal_within_a_visit_and_across_visits(fitted):
    gen = fitted
    k, v, width = gen._columns()
    n_rows = np.diff(gen.row_offsets)
    p = int(np.flatnonzero(n_rows >= 3)[0])              # a record with >= 2 visits
    last = gen.row_offsets[p + 1] - 1                     # its last visit row
    codes = gen.rows[last].indices
    j = int(np.sort(codes[codes < width - 1])[len(codes) // 2])
    changed = gen.rows.tolil(copy=True)
    changed[last, j] = 0
    changed = changed.tocsr()
    pats = np.array([p])
    with torch.no_grad():
        a, *_, t = gen._forward(pats)
        b, *_ = gen._forward(pats, rows=changed)
    row = len(t) - 1                                      # target line of the last visit
    assert torch.equal(a[:row], b[:row])                  # earlier visits: untouched
    assert torch.equal(a[row, :j + 1], b[row, :j + 1])    # codes up to j of that visit: untouched
    assert not torch.equal(a[row, j + 1:], b[row, j + 1:])


def _exact_row_probs(head, h, allowed):
    """P(row = pattern) for every 0/1 pattern of the row, by the chain rule."""
    width = head.width
    pats = torch.tensor(list(itertools.product([0.0, 1.0], repeat=width)))
    with torch.no_grad():
        p = torch.sigmoid(head(h.expand(len(pats), -1), pats)) * allowed
    lik = torch.where(pats > 0, p, 1 - p).prod(1)
    return pats, lik.double()


def _pattern_freq(x):
    width = x.shape[1]
    code = (x.long() * (2 ** torch.arange(width - 1, -1, -1))).sum(1)
    return torch.bincount(code, minlength=2 ** width).double() / len(x)


@pytest.mark.parametrize("layers", [1, 2])
def test_skip_ahead_sampler_matches_the_exact_distribution(layers):
    torch.manual_seed(layers)
    head = fine_head(3, 5, layers, init_std=0.8)
    h = torch.randn(1, 3)
    allowed = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])     # a forbidden column is never drawn
    pats, exact = _exact_row_probs(head, h, allowed)
    assert exact.sum().item() == pytest.approx(1.0, abs=1e-6)
    n = 60_000
    fast = head.sample(h.expand(n, -1), allowed, torch.Generator().manual_seed(0))
    naive = head.sample_naive(h.expand(n, -1), allowed, torch.Generator().manual_seed(1))
    assert fast[:, 2].sum() == 0
    tol = 5 * torch.sqrt(exact * (1 - exact) / n) + 1e-4
    for x in (fast, naive):
        assert torch.all((_pattern_freq(x) - exact).abs() <= tol)
    # the test has power: right marginals without the within-row dependence are rejected
    marginals = (pats.double() * exact[:, None]).sum(0).float()
    indep = torch.bernoulli(marginals.expand(n, -1), generator=torch.Generator().manual_seed(2))
    assert torch.any((_pattern_freq(indep) - exact).abs() > tol)


def test_one_optimisation_step_lowers_the_loss(train):
    gen = HALO.from_profile("smoke", **{**TINY, "lr": 1e-2})
    gen.device = pick_device("cpu")
    gen._prepare(train)
    gen.modules = gen._build()
    gen.optimizers = gen._optimizers()
    batch = gen.train_idx[:32]
    before = gen._batch_loss(batch)
    gen.optimizers["adam"].zero_grad()
    before.backward()
    gen.optimizers["adam"].step()
    with torch.no_grad():
        assert gen._batch_loss(batch).item() < before.item()


def test_overfits_a_tiny_cohort_and_regenerates_its_most_common_visit():
    rng = np.random.default_rng(0)
    visits = [["4019", "25000"]] * 30 + [["486"]] * 12 + [["5849", "4280", "42731"]] * 8
    records = [[visits[i]] + ([visits[j]] if rng.random() < 0.3 else [])
               for i, j in zip(rng.permutation(50), rng.permutation(50))]
    cohort = Cohort.from_visits(records)
    gen = HALO.from_profile("smoke", **{**TINY, "epochs": 40, "lr": 1e-2, "val_fraction": 0.0}).fit(cohort)
    synth = gen.generate(300, seed=0)
    visit_sets = synth.events.groupby(["subject_id", "visit_id"]).code.apply(lambda s: tuple(sorted(s)))
    assert visit_sets.value_counts().index[0] == ("25000", "4019")


def test_save_load_generate_identical(fitted, tmp_path):
    fitted.save(tmp_path / "halo")
    again = models.load(tmp_path / "halo")
    assert isinstance(again, HALO)
    a, b = fitted.generate(60, seed=3), again.generate(60, seed=3)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert not a.events.equals(fitted.generate(60, seed=4).events)


def test_interrupted_fit_resumes_exactly(train, tmp_path):
    cfg = {**TINY, "epochs": 3, "dropout": 0.1}
    full = HALO.from_profile("smoke", **cfg).fit(train)

    resumed, seen = interrupt_then_resume(lambda: HALO.from_profile("smoke", **cfg), train, tmp_path, after_epoch=0)
    assert seen == [1, 2]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    wf = weights(full)
    assert all(torch.equal(t, wf[k]) for k, t in weights(resumed).items())
    pd.testing.assert_frame_equal(full.generate(30, seed=1).events, resumed.generate(30, seed=1).events)


def test_generated_cohort_is_valid_and_anonymous(fitted, train):
    synth = fitted.generate(200, seed=0)
    ev = synth.events
    assert synth.n_patients == 200
    assert not ev.duplicated(["subject_id", "visit_id", "code"]).any()
    assert set(ev.code) <= set(fitted.vocab.codes)
    per_patient = ev.groupby("subject_id").visit_id.agg(["min", "max", "nunique"])
    assert (per_patient["min"] == 0).all() and (per_patient["max"] + 1 == per_patient["nunique"]).all()  # no gaps
    assert per_patient["nunique"].max() <= fitted.config.max_visits
    assert not set(synth.subject_ids) & set(train.subject_ids)


def test_labels_row_and_context_cut(train, caplog):
    n_vis = train.events.groupby("subject_id").visit_id.max() + 1
    gen = HALO.from_profile("smoke", **{**TINY, "labels": True, "n_ctx": 4})   # start, labels, 2 visits
    with caplog.at_level("INFO", logger="ehrlib.models"):
        gen.fit(train)
    assert gen.n_cut == int((n_vis > 2).sum()) > 0
    assert f"{gen.n_cut} of {train.n_patients} records" in caplog.text
    assert gen.label_names and len(gen.label_names) < len(gen.vocab)
    synth = gen.generate(100, seed=0)
    assert synth.events.visit_id.max() <= 1
    assert set(synth.events.code) <= set(gen.vocab.codes)


def test_records_without_codes_are_redrawn_up_to_a_cap(train):
    gen = HALO.from_profile("smoke", **{**TINY, "epochs": 1, "max_attempts": 2}).fit(train)
    k, v, width = gen._columns()
    with torch.no_grad():
        gen.modules["head"].out_bias[k:k + v] = -50.0      # no code can fire
    with pytest.raises(GeneratorError, match="hold any code after 2 rounds"):
        gen.generate(10, seed=0)


@pytest.mark.parametrize("field, value, message", [
    ("n_head", 5, "n_head=5; expected a divisor"),
    ("n_ctx", 60, "n_ctx=60; expected <= n_positions"),
    ("n_ctx", 1, "n_ctx=1; expected >= 2"),
    ("val_fraction", 1.0, "val_fraction=1.0"),
    ("dropout", 1.0, "dropout=1.0"),
    ("fine_layers", 0, "fine_layers=0; expected a positive number"),
    ("labels", "yes", "labels='yes'"),
    ("lr", -1.0, "lr=-1.0"),
])
def test_bad_configs_name_the_field(field, value, message):
    with pytest.raises(GeneratorError, match=message):
        HALO.preset("paper", **{field: value})


def test_presets():
    paper = HALO.preset("paper")
    assert (paper.n_embd, paper.n_layer, paper.n_head, paper.n_ctx, paper.n_positions) == (768, 12, 12, 48, 56)
    assert (paper.batch_size, paper.lr, paper.epochs, paper.fine_layers, paper.labels) == (48, 1e-4, 80, 2, False)
    assert paper == HALOConfig()
    assert HALO.preset("smoke").fine_layers == 1 and HALO.preset("demo").n_embd < paper.n_embd
