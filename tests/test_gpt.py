"""GPT-2 baseline: tokenizer round trip, training, context rule, sampling filters, generation, save/load, resume."""
import collections

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from ehrlib import models
from ehrlib.cohort import Cohort
from ehrlib.data.encode import Vocabulary, token_sequences
from ehrlib.data.simulate import simulate
from ehrlib.models.base import GeneratorError
from ehrlib.models.gpt import (BOS_ID, CODE_OFFSET, DELIM_ID, EOS_ID, GPT, PAD_ID, SPECIALS, UNK_ID, build_tokenizer,
                               decode, encode, filter_logits, sample)
from conftest import interrupt_then_resume

TINY = dict(n_layer=1, n_head=2, n_embd=16, epochs=2, batch_size=32, lr=3e-3, progress=False)


@pytest.fixture(scope="module")
def train():
    return simulate(150, seed=11)


@pytest.fixture(scope="module")
def fitted(train):
    return GPT.from_profile("smoke", progress=False).fit(train)


def test_tokenizer_round_trip(train):
    vocab = Vocabulary.from_cohorts(train)
    tok = build_tokenizer(vocab.codes)
    seqs = encode(tok, train)
    assert len(seqs) == train.n_patients
    assert all(s[0] == BOS_ID and s[-1] == EOS_ID for s in seqs)
    # same ids as the library's token encoding with the specials in front
    ref = token_sequences(train, vocab, code_offset=CODE_OFFSET, visit_delim=DELIM_ID, bos=BOS_ID, eos=EOS_ID)
    assert all(np.array_equal(a, b) for a, b in zip(seqs, ref))
    # codes are atomic tokens: id -> token is the code itself
    assert tok.id_to_token(CODE_OFFSET) == vocab.codes[0] and tok.token_to_id(vocab.codes[-1]) == CODE_OFFSET + len(vocab) - 1
    assert [tok.id_to_token(i) for i in range(CODE_OFFSET)] == list(SPECIALS)
    assert decode(seqs, vocab).records() == train.records()


def test_decoding_drops_specials_duplicates_and_empty_visits():
    vocab = Vocabulary(["250", "401", "428"])
    a, b, c = (CODE_OFFSET + i for i in range(3))
    seq = [BOS_ID, a, a, UNK_ID, DELIM_ID, DELIM_ID, PAD_ID, BOS_ID, b, DELIM_ID, EOS_ID, c]
    assert decode([seq], vocab).records() == [[["250"], ["401"]]]
    assert build_tokenizer(vocab.codes).encode("[BOS] 401 999 [EOS]").ids == [BOS_ID, b, UNK_ID, EOS_ID]


def test_one_optimisation_step_lowers_the_loss(train):
    gen = GPT(GPT.preset("smoke", **{**TINY, "dropout": 0.0, "lr": 1e-2}))
    gen.device = torch.device("cpu")
    torch.manual_seed(0)
    gen._prepare(train)
    gen.modules = gen._build()
    gen.optimizers = gen._optimizers()
    model, rows = gen.modules["gpt2"], gen._train_idx[:32]
    ids, mask, labels = gen._tensors(rows)
    before = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    gen.optimizers["adamw"].zero_grad()
    before.backward()
    gen.optimizers["adamw"].step()
    after = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert after.item() < before.item()


def test_padding_is_masked_out_of_the_loss(train):
    gen = GPT(GPT.preset("smoke", **TINY))
    gen.device = torch.device("cpu")
    gen._prepare(train)
    ids, mask, labels = gen._tensors(gen._train_idx[:16])
    assert (labels[mask == 0] == -100).all() and (labels[mask == 1] != -100).all()
    assert (ids[mask == 0] == PAD_ID).all()
    # the summed loss is the library's masked causal-LM loss, also when a batch runs in chunks
    model = gen.modules["gpt2"] = gen._build()["gpt2"].eval()
    with torch.no_grad():
        whole, n_tok = gen._loss_sum(gen._train_idx[:16])
        hf = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
        chunked = GPT(GPT.preset("smoke", **{**TINY, "max_batch_tokens": 1}))
        chunked.__dict__.update({k: v for k, v in gen.__dict__.items() if k != "config"})
        parts, n_parts = chunked._loss_sum(gen._train_idx[:16])
    assert n_tok == int(mask[:, 1:].sum()) == n_parts
    assert whole / n_tok == pytest.approx(hf, rel=1e-5) and parts == pytest.approx(whole, rel=1e-5)


def test_overfits_a_tiny_cohort():
    common = ["25000", "4019", "4280"]
    records = [[common] if i % 2 else [common, [f"V{10 + i}"]] for i in range(20)]
    tiny = Cohort.from_visits(records)
    gen = GPT.from_profile("smoke", n_layer=2, n_head=2, n_embd=32, epochs=40, batch_size=8, lr=5e-3,
                           val_fraction=0.0, progress=False).fit(tiny)
    synth = gen.generate(100, seed=0)
    visits = collections.Counter(frozenset(v) for r in synth.records() for v in r)
    assert visits.most_common(1)[0][0] == frozenset(common)


def test_context_covers_the_longest_training_record(train):
    long_record = [[f"C{i}", f"D{i}"] for i in range(40)]  # 1 + 40 * 3 - 1 + 1 = 121 tokens
    cohort = Cohort.from_visits([long_record, [["C1"]], [["D2", "C3"]]])
    gen = GPT.from_profile("smoke", **TINY).fit(cohort)
    assert gen.context == 121 == gen.modules["gpt2"].config.n_positions
    assert gen._extra_state()["context"] == 121
    seqs = encode(gen.tokenizer, cohort)
    assert all(s[-1] == EOS_ID for s in seqs) and max(len(s) for s in seqs) == gen.context
    with pytest.raises(GeneratorError, match=r"max_positions=100 .*longest: 121"):
        GPT.from_profile("smoke", **{**TINY, "max_positions": 100}).fit(cohort)


def test_top_k_top_p_filter_on_fixed_logits():
    logits = torch.log(torch.tensor([[0.1, 0.4, 0.2, 0.3]]))
    kept = lambda out: torch.isfinite(out[0]).nonzero().squeeze(-1).tolist()
    assert kept(filter_logits(logits, top_k=0, top_p=0.5)) == [1, 3]       # 0.4 + 0.3 reaches 0.5
    assert kept(filter_logits(logits, top_k=0, top_p=0.4)) == [1]           # 0.4 alone reaches 0.4
    assert kept(filter_logits(logits, top_k=0, top_p=0.75)) == [1, 2, 3]
    assert kept(filter_logits(logits, top_k=2, top_p=1.0)) == [1, 3]
    assert kept(filter_logits(logits, top_k=3, top_p=0.5)) == [1, 3]
    assert kept(filter_logits(logits, top_k=0, top_p=1e-6)) == [1]          # at least one token
    assert torch.equal(filter_logits(logits, 0, 1.0), logits)
    # inverse-CDF sampling: zero-probability tokens are never drawn
    masked = filter_logits(logits, top_k=0, top_p=0.5).expand(5, -1)
    draws = sample(masked, torch.tensor([0.0, 0.2, 0.57, 0.58, 0.999]))
    assert draws.tolist() == [1, 1, 1, 3, 3]


def test_generated_cohort_is_valid(fitted, train):
    synth = fitted.generate(300, seed=1)
    assert synth.n_patients == 300
    assert not set(synth.subject_ids) & set(train.subject_ids)
    assert synth.subject_ids[0] == "SYNTH_000001"
    ev = synth.events
    assert not ev.duplicated(["subject_id", "visit_id", "code"]).any()
    assert set(ev.code) <= set(Vocabulary.from_cohorts(train).codes)
    assert not set(ev.code) & set(SPECIALS)
    per_subject = ev.groupby("subject_id").visit_id.agg(["max", "nunique"])
    assert (per_subject["max"] + 1 == per_subject["nunique"]).all()  # no empty visits (no gaps)
    assert fitted.last_generation["drawn"] >= 300


def test_empty_records_are_redrawn_then_refused(fitted, monkeypatch):
    def only_empty(n, generator, use_cache=True):
        out = np.full((n, 4), PAD_ID)
        out[:, 0], out[:, 1] = BOS_ID, EOS_ID
        return out

    monkeypatch.setattr(fitted, "sample_tokens", only_empty)
    with pytest.raises(GeneratorError, match="empty"):
        fitted.generate(5, seed=0)


def test_cache_and_no_cache_sampling_agree(fitted):
    a = fitted.sample_tokens(20, torch.Generator().manual_seed(3), use_cache=True)
    b = fitted.sample_tokens(20, torch.Generator().manual_seed(3), use_cache=False)
    assert (a == b).mean() > 0.95  # identical up to rare float ties


def test_save_load_generate_identical(fitted, tmp_path):
    fitted.save(tmp_path / "gpt")
    assert (tmp_path / "gpt" / "tokenizer.json").is_file() and (tmp_path / "gpt" / "gpt2.safetensors").is_file()
    again = models.load(tmp_path / "gpt")
    assert isinstance(again, GPT) and again.context == fitted.context
    a, b = fitted.generate(120, seed=5), again.generate(120, seed=5)
    pd.testing.assert_frame_equal(a.events, b.events)
    c = fitted.generate(120, seed=6)
    assert not a.events.equals(c.events)
    (tmp_path / "gpt" / "tokenizer.json").unlink()
    with pytest.raises(GeneratorError, match="tokenizer.json"):
        models.load(tmp_path / "gpt")


def test_interrupted_fit_resumes_exactly(train, tmp_path):
    cfg = {**TINY, "epochs": 3}
    full = GPT.from_profile("smoke", **cfg).fit(train)

    resumed, seen = interrupt_then_resume(lambda: GPT.from_profile("smoke", **cfg), train, tmp_path, after_epoch=0)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    sa, sb = full.modules["gpt2"].state_dict(), resumed.modules["gpt2"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_presets():
    paper = GPT.preset("paper")
    assert (paper.n_layer, paper.n_head, paper.n_embd, paper.batch_size, paper.lr, paper.epochs) == (8, 8, 512, 64, 1e-4, 50)
    assert (paper.top_k, paper.top_p, paper.patience) == (50, 0.95, 0)
    assert models.get("gpt", "smoke").config.n_embd < models.get("gpt", "demo").config.n_embd <= paper.n_embd


@pytest.mark.parametrize("field, value, expected", [
    ("n_layer", 0, "positive"), ("n_embd", -8, "positive"), ("batch_size", 0, "positive"),
    ("lr", 0.0, "positive"), ("n_embd", 30, "divisible by n_head"), ("top_p", 0.0, r"\(0, 1\]"),
    ("top_p", 1.5, r"\(0, 1\]"), ("top_k", -1, ">= 0"), ("val_fraction", 0.6, r"\[0, 0.5\)"),
    ("dropout", 1.0, r"\[0, 1\)"), ("max_positions", 2, ">= 3"), ("max_attempts", 0, "positive"),
])
def test_bad_configs_name_the_field(field, value, expected):
    overrides = {field: value, "n_head": 4} if field == "n_embd" and value == 30 else {field: value}
    with pytest.raises(GeneratorError, match=rf"GPTConfig.{field}={value!r}.*{expected}|{field}.*{expected}"):
        GPT.preset("smoke", **overrides)


def test_generate_before_fit_is_refused():
    with pytest.raises(GeneratorError, match="before generate"):
        GPT.from_profile("smoke").generate(5)
