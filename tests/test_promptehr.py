"""PromptEHR: token streams, demographic prompts, corruption, guided nucleus sampling, the
first-code prior, training, resume, save/load and the generated cohorts."""
import dataclasses
import logging
from collections import Counter

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.data.encode import Vocabulary
from ehrlib.data.simulate import simulate
from ehrlib.models.base import GeneratorError
from ehrlib.models.promptehr import (BOS, CODE_OFFSET, DECODER_START, EOS, MASK, SPECIALS, VCLOSE, VOPEN, PromptEHR,
                                     corrupt, detokenize, record_tokens, sampling_probs, tokenize)
from conftest import interrupt_then_resume


@pytest.fixture(scope="module")
def train():
    return simulate(150, seed=5)


@pytest.fixture(scope="module")
def fitted(train):
    return PromptEHR.from_profile("smoke", progress=False, epochs=2).fit(train)


def prepared(cohort, **overrides):
    gen = PromptEHR.from_profile("smoke", progress=False, **overrides)
    gen._prepare(cohort)
    return gen


def test_specials_and_token_stream_round_trip(train):
    assert len(SPECIALS) == 7 and CODE_OFFSET == 7 and DECODER_START == 2 and SPECIALS[DECODER_START] == "</s>"
    vocab = Vocabulary.from_cohorts(train)
    streams, n_cut = tokenize(train, vocab, max_len=10_000)
    assert n_cut == 0 and len(streams) == train.n_patients
    assert all(s[0] == BOS and s[-1] == EOS and s[1] == VOPEN and s[-2] == VCLOSE for s in streams)
    assert detokenize(streams, vocab) == train.records()


def test_long_records_keep_their_first_visits_and_close():
    visits = [[7, 8, 9], [10, 11], [12, 13, 14, 15]]
    s, cut = record_tokens(visits, max_len=12)
    assert cut and s.tolist() == [BOS, VOPEN, 7, 8, 9, VCLOSE, VOPEN, 10, 11, VCLOSE, EOS]
    s, cut = record_tokens([list(range(7, 30))], max_len=8)
    assert cut and len(s) == 8 and s.tolist()[-2:] == [VCLOSE, EOS]
    assert record_tokens(visits, max_len=100)[1] is False


def test_prompt_changes_encoder_output_age_and_sex_each(train):
    gen = prepared(train)
    net = gen._build()["model"].eval()
    ids = torch.tensor([[BOS, MASK, EOS]] * 2)

    def enc(age, missing, sex):
        with torch.no_grad():
            return net.encode(ids, torch.ones_like(ids), torch.tensor(age), torch.tensor(missing),
                              torch.tensor(sex))[0]

    base = enc([0.5, 0.5], [False, False], [0, 0])
    assert torch.allclose(base[0], base[1])
    by_age = enc([0.5, -1.0], [False, False], [0, 0])
    by_sex = enc([0.5, 0.5], [False, False], [0, 1])
    by_missing = enc([0.5, 0.5], [False, True], [0, 0])
    for out in (by_age, by_sex, by_missing):
        assert torch.allclose(out[0], base[0]) and not torch.allclose(out[1], out[0], atol=1e-4)


def test_corruption_only_removes_codes():
    rng = np.random.default_rng(0)
    stream, _ = record_tokens([list(range(7, 27)), list(range(20, 35)), [40, 41]], max_len=512)
    original = Counter(t for t in stream.tolist() if t >= CODE_OFFSET)
    kept_total, masks = Counter(), 0
    for _ in range(300):
        out = corrupt(stream, rng, mask_prob=0.3, poisson_lambda=3.0, delete_prob=0.15)
        kept = Counter(t for t in out.tolist() if t >= CODE_OFFSET)
        assert not kept - original                                  # a sub-multiset: nothing replaced
        assert [t for t in out.tolist() if t in (BOS, EOS, VOPEN, VCLOSE)] == \
            [t for t in stream.tolist() if t in (BOS, EOS, VOPEN, VCLOSE)]
        kept_total += kept
        masks += out.tolist().count(MASK)
    assert masks > 0 and sum(kept_total.values()) < 300 * sum(original.values())
    assert corrupt(stream, rng, 0.0, 3.0, 0.0).tolist() == stream.tolist()


def reference_nucleus(logits, p):
    probs = torch.softmax(logits, -1)
    order = torch.argsort(probs, descending=True)
    out, mass = torch.zeros_like(probs), 0.0
    for i in order.tolist():
        out[i] = probs[i]
        mass += probs[i].item()
        if mass >= p:
            break
    return out / out.sum()


def test_alpha_zero_is_plain_nucleus_and_alpha_favours_frequent_codes():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0)) * 2
    log_prior = torch.log(torch.linspace(1e-4, 1.0, 50))
    for p in (0.5, 0.95, 1.0):
        got = sampling_probs(logits[None], log_prior, alpha=0.0, top_p=p)[0]
        assert torch.allclose(got, reference_nucleus(logits, p), atol=1e-6)
    plain = sampling_probs(logits[None], log_prior, alpha=0.0, top_p=1.0)[0]
    guided = sampling_probs(logits[None], log_prior, alpha=2.0, top_p=1.0)[0]
    frequent = torch.arange(50) >= 40
    assert guided[frequent].sum() > plain[frequent].sum()
    flat = torch.zeros(1, 50)
    assert sampling_probs(flat, log_prior, alpha=0.0, top_p=1.0)[0][frequent].sum() == pytest.approx(0.2)
    assert sampling_probs(flat, log_prior, alpha=2.0, top_p=1.0)[0][frequent].sum() > 0.4
    assert (sampling_probs(logits[None], top_k=5, top_p=1.0)[0] > 0).sum() == 5


def test_first_code_prior_respects_age_and_sex_strata():
    records, demo = [], []
    for i in range(40):
        young_woman = i % 2 == 0
        records.append([["0010" if young_woman else "0020", "4019", "25000"], ["4019"]])
        demo.append((f"p{i}", 5.0 if young_woman else 85.0, "F" if young_woman else "M"))
    cohort = Cohort.from_visits(records, subject_ids=[d[0] for d in demo],
                                demographics=pd.DataFrame(demo, columns=["subject_id", "age", "sex"]))
    gen = prepared(cohort)
    age, sex, n_vis, k, first = gen._plan(400, torch.Generator().manual_seed(1))
    codes = np.asarray(gen.vocab.codes)[first]
    young = (age < 10) & (sex == 0)
    assert young.any() and (~young).any()
    assert set(codes[young]) <= {"0010", "4019", "25000"} and "0020" not in set(codes[young])
    assert set(codes[~young]) <= {"0020", "4019", "25000"} and "0010" not in set(codes[~young])
    assert gen._prior_key(45.0, 0) == "sex0" and gen._prior_key(float("nan"), 2) == "all"


def test_missing_demographics_warn_and_use_unknown(train, caplog):
    bare = Cohort(train.events, None)
    with caplog.at_level(logging.WARNING, logger="ehrlib.models"):
        gen = prepared(bare)
    assert "no demographics" in caplog.text
    assert (gen._sex == 2).all() and gen._missing.all()
    age, sex, *_ = gen._plan(20, torch.Generator().manual_seed(0))
    assert np.isnan(age).all() and (sex == 2).all()


def test_one_optimisation_step_lowers_the_loss(train):
    gen = prepared(train)
    gen.device = torch.device("cpu")
    gen.modules = gen._build()
    gen.optimizers = gen._optimizers()
    inputs, labels = gen._batch(np.arange(32), np.random.default_rng(0))
    before, _ = gen._loss(inputs, labels)
    gen.optimizers["adamw"].zero_grad()
    before.backward()
    gen.optimizers["adamw"].step()
    with torch.no_grad():
        after, _ = gen._loss(inputs, labels)
    assert after.item() < before.item()


def test_bad_configs_name_the_field():
    with pytest.raises(GeneratorError, match=r"PromptEHRConfig.top_p=1.5"):
        PromptEHR.preset("smoke", top_p=1.5)
    with pytest.raises(GeneratorError, match=r"PromptEHRConfig.visit_length='free'"):
        PromptEHR.preset("smoke", visit_length="free")
    with pytest.raises(GeneratorError, match=r"PromptEHRConfig.attention_heads=3"):
        PromptEHR.preset("smoke", attention_heads=3)
    with pytest.raises(GeneratorError, match=r"PromptEHRConfig.alpha=-1"):
        PromptEHR.preset("smoke", alpha=-1)
    with pytest.raises(GeneratorError, match=r"PromptEHRConfig.mask_prob=1.0"):
        PromptEHR.preset("smoke", mask_prob=1.0)
    paper = PromptEHR.preset("paper")
    assert (paper.d_model, paper.encoder_layers, paper.attention_heads, paper.ffn_dim, paper.max_len) == \
        (768, 6, 12, 3072, 512)
    assert (paper.batch_size, paper.warmup_steps, paper.epochs, paper.weight_decay, paper.alpha, paper.top_p,
            paper.top_k) == (16, 1000, 20, 0.01, 2.0, 0.95, 0)


def test_generated_cohort_is_valid_and_follows_the_plan(fitted, train):
    n, seed = 120, 4
    plan = fitted._plan(n, torch.Generator().manual_seed(seed))
    synthetic = fitted.generate(n, seed=seed)
    synthetic.validate()
    assert synthetic.n_patients == n
    assert not set(synthetic.subject_ids) & set(train.subject_ids)
    assert set(synthetic.demographics["subject_id"]) == set(synthetic.subject_ids)
    assert set(synthetic.codes()) <= set(fitted.vocab.codes) and not set(synthetic.codes()) & set(SPECIALS)
    age, sex, n_vis, k, first = plan
    np.testing.assert_array_equal(synthetic.visits_per_patient().to_numpy(), n_vis)
    np.testing.assert_array_equal(np.sort(synthetic.codes_per_visit().to_numpy()), np.sort(k[k > 0]))
    np.testing.assert_allclose(synthetic.demographics["age"].to_numpy(), age)


def test_cache_and_alpha_variants_share_weights(fitted):
    a = fitted._generate(40, 2)
    b = fitted._generate(40, 2, use_cache=False)
    pd.testing.assert_frame_equal(a.events, b.events)
    guided = fitted.with_alpha(2.0)
    assert guided.modules["model"] is fitted.modules["model"] and fitted.config.alpha == 0.0
    assert not guided.generate(40, seed=2).events.equals(fitted.generate(40, seed=2).events)
    capped = fitted.with_alpha(2.0)
    capped.config = dataclasses.replace(guided.config, visit_length="cap")
    assert capped.generate(40, seed=2).codes_per_visit().mean() < guided.generate(40, seed=2).codes_per_visit().mean()


def test_save_load_generate_identical(fitted, tmp_path):
    fitted.save(tmp_path / "p")
    again = models.load(tmp_path / "p")
    a, b = fitted.generate(60, seed=9), again.generate(60, seed=9)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.demographics, b.demographics)
    assert not a.events.equals(fitted.generate(60, seed=10).events)
    # privacy: the saved model holds no training record, yet generates the same cohort
    assert not hasattr(again, "_records")
    assert "records" not in (tmp_path / "p" / "state.json").read_text()


def test_interrupted_fit_resumes_exactly(train, tmp_path):
    cohort = train.subset(train.subject_ids[:80])
    full = PromptEHR.from_profile("smoke", progress=False).fit(cohort)

    resumed, seen = interrupt_then_resume(lambda: PromptEHR.from_profile("smoke", progress=False), cohort, tmp_path, after_epoch=0)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    wa, wb = full.modules["model"].state_dict(), resumed.modules["model"].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
