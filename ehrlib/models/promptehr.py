"""PromptEHR: a BART encoder-decoder with learned demographic prompts, trained as a denoising
autoencoder on visit token streams, generating from demographics alone.

Paper: Sections 2.4 and Appendix F.3 (after Wang & Sun, EMNLP 2022, ``RyanWangZf/PromptEHR``).

Record as tokens (seven specials at ids 0-6, code ``vocab.codes[i]`` is token ``7 + i``)::

    <pad>=0 <s>=1 </s>=2 <unk>=3 <mask>=4 <v>=5 </v>=6
    <s> <v> c c c </v> <v> c c </v> </s>

The decoder starts from ``</s>`` (id 2, the BART convention). Age (normalised by the training
mean/std) enters through a numerical prompt (a learned 128-vector times the age plus a bias,
projected to ``d_model``), sex through an embedding plus a feature bias (128, projected); both
prompt vectors are prepended to the encoder input and, with ``decoder_prompt`` (the
original's choice), through a second prompt module to the decoder input.

Training: the encoder sees a corrupted stream -- code spans of Poisson(3) length replaced by a
single ``<mask>`` (about ``mask_prob`` of the codes) and token deletion (``delete_prob``);
never token replacement -- and the decoder reconstructs the whole stream (cross-entropy).
AdamW, linear warmup then linear decay; the epoch with the lowest validation NLL (``val_loss``;
perplexity = exp) on a seeded ``val_fraction`` of the training patients is kept. Early stopping
on it is available (``patience``) but off in every preset, since the paper gives no patience.

Generation: (age, sex) pairs, the number of visits and the codes per visit are drawn from the
training distributions; the first code of visit 0 from an age-bin x sex prior of training first
codes; every other code is decoded by the model with nucleus sampling (top-p 0.95, top-k off,
T = 1) on ``logits + alpha * log(train frequency)`` (``alpha = 2``; specials get prior 0),
never repeating a code inside a visit, with our own KV-cached sampling loop driven by a
``torch.Generator`` seeded by ``seed``.

Deviations (from the paper and the original):

* No hub weights: BART is built from a ``BartConfig`` (BART-base size at the paper preset) and
  trained from scratch (the original fine-tunes ``facebook/bart-base``).
* Learning rate: the paper's table leaves it unreadable; the original defaults to 1e-5 for
  fine-tuning a pretrained BART. We train from scratch and use 1e-4 (paper preset).
* The position table has ``max_len + 2`` entries so the two prompt vectors fit beside a
  ``max_len``-token stream. Longer records keep their first whole visits that fit (a first
  visit that alone is too long keeps its first codes), always closed by ``</v> </s>``; the
  number cut is logged and kept in ``n_truncated``.
* Codes inside a visit are shuffled every epoch (as in the original); the canonical Cohort
  order is alphabetical, which a decoder would otherwise learn. The first-code prior therefore
  weights each code of the first visit by 1/|visit| (the law of the first token under shuffling).
* ``whole_mask_prob`` of the training streams are shown to the encoder as ``<s> <mask> </s>``,
  the input used at generation (demographics only); the paper does not say how it trained for
  demographics-only generation. ``val_loss`` is the NLL under this generation condition.
* Mask infilling and deletion are applied together to every other stream, only to codes
  (visit delimiters are kept; a span stops at the end of its visit); the original picks
  infilling or deletion per code type.
* Visit structure is exact (``visit_length="sampled"``): the sampled number of visits and of
  codes per visit are enforced; specials are masked at code slots, so alpha only reweights codes.
  ``visit_length="cap"`` lets the model close a visit early with ``</v>`` (the sampled count is
  then a maximum); with alpha > 0 the prior (0 for ``</v>``, negative for codes) shortens visits.
* Missing demographics (no table, NaN age, unknown sex) use an explicit "unknown" sex category
  and an age-missing vector; a warning reports how many. Generated patients carry (age, sex)
  pairs sampled from the training patients, so they may be unknown too (NaN in the table).
* The original generates by copying half of a real patient's codes; here every code except the
  first one of each patient (drawn from the stratified prior, as in the paper) is model-generated.
* Frequency guidance: the paper preset keeps alpha = 2.0, but on the demo recipe (exact visit
  structure) alpha = 2 drives prevalence R2 vs train from 0.99 (alpha = 0) to -0.95 and unique codes
  from 1,467 to 1,000 (alpha 0.25 / 0.5 / 1: R2 0.90 / 0.69 / 0.10): a calibrated decoder already
  matches the frequencies and the prior counts them twice. The smoke and demo presets use alpha = 0.
* ``length_buckets`` (demo and smoke presets, not the paper preset) batches patients of similar
  length: at batch 16 it cuts decoder padding from ~65% to ~11% on the demo recipe.
* Gradients are clipped at norm ``max_grad_norm`` (1.0, the HF Trainer default the original used).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ehrlib.cohort import AGE, CODE, SEX, SUBJECT, VISIT, Cohort
from ehrlib.data.encode import Vocabulary
from ehrlib.models.base import GeneratorError
from ehrlib.models.neural import TorchConfig, TorchGenerator, batches, transformers_module

log = logging.getLogger("ehrlib.models")

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>", "<v>", "</v>")
PAD, BOS, EOS, UNK, MASK, VOPEN, VCLOSE = range(7)
CODE_OFFSET = len(SPECIALS)
DECODER_START = EOS
N_PROMPTS = 2                     # age, sex
SEX_CODES = {"F": 0, "M": 1}      # 2 = unknown
UNKNOWN_SEX = 2
N_AGE_BINS = 9                    # 0-10, ..., 80-90 (90+ in the last bin)


@dataclass(frozen=True)
class PromptEHRConfig(TorchConfig):
    """PromptEHR settings; the defaults are Appendix F.3 (BART-base size)."""

    # architecture
    d_model: int = 768
    encoder_layers: int = 6
    decoder_layers: int = 6
    attention_heads: int = 12
    ffn_dim: int = 3072
    max_len: int = 512              # tokens of one record stream
    dropout: float = 0.1
    prompt_hidden: int = 128
    decoder_prompt: bool = True     # also prepend the prompt to the decoder (original)
    # training
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 1000
    max_grad_norm: float = 1.0
    mask_prob: float = 0.15         # share of codes covered by masked spans
    poisson_lambda: float = 3.0     # span lengths
    delete_prob: float = 0.15       # token deletion
    whole_mask_prob: float = 0.5    # encoder sees only <s> <mask> </s> (the generation input)
    shuffle_codes: bool = True      # shuffle codes within each visit every epoch
    val_fraction: float = 0.05
    length_buckets: bool = False    # batch patients of similar length (less padding; not in the paper)
    # generation
    top_p: float = 0.95
    top_k: int = 0                  # 0: off
    temperature: float = 1.0
    alpha: float = 2.0              # frequency guidance; 0 disables it
    visit_length: str = "sampled"   # sampled (exact) | cap (model may close a visit early)
    gen_batch_size: int = 256

    def check(self) -> None:
        super().check()
        self._positive("d_model", "encoder_layers", "decoder_layers", "attention_heads", "ffn_dim", "max_len",
                       "prompt_hidden", "epochs", "batch_size", "lr", "poisson_lambda", "top_p", "temperature",
                       "gen_batch_size")
        name = type(self).__name__
        if self.d_model % self.attention_heads:
            raise GeneratorError(f"{name}.attention_heads={self.attention_heads}; expected a divisor of "
                                 f"d_model={self.d_model}")
        if self.max_len < 5:
            raise GeneratorError(f"{name}.max_len={self.max_len}; expected >= 5 (<s> <v> code </v> </s>)")
        self._unit_interval("dropout", "mask_prob", "delete_prob", "whole_mask_prob", "val_fraction")
        if self.top_p > 1:
            raise GeneratorError(f"{name}.top_p={self.top_p!r}; expected a number in (0, 1]")
        self._non_negative("weight_decay", "warmup_steps", "max_grad_norm", "top_k", "alpha")
        self._choice("visit_length", ("sampled", "cap"))


# --------------------------------------------------------------------------- tokens
def record_tokens(visits, max_len: int) -> tuple[np.ndarray, bool]:
    """One record (a list of visits, each a sequence of code token ids) as a token stream.

    Keeps the first whole visits that fit in ``max_len`` tokens (a too-long first visit keeps its
    first codes); returns ``(tokens, truncated)``.
    """
    out, truncated = [BOS], False
    for j, v in enumerate(visits):
        v = list(v)
        if len(out) + len(v) + 3 > max_len:       # <v> codes </v> and the final </s>
            truncated = True
            if j == 0:
                out += [VOPEN, *v[:max_len - 4], VCLOSE]
            break
        out += [VOPEN, *v, VCLOSE]
    out.append(EOS)
    return np.asarray(out, dtype=np.int64), truncated


def tokenize(cohort: Cohort, vocab: Vocabulary, max_len: int = 512) -> tuple[list[np.ndarray], int]:
    """Every patient of ``cohort`` (in cohort order) as a token stream; returns ``(streams, n_truncated)``."""
    streams, n_cut = [], 0
    for visits in _code_visits(cohort, vocab):
        s, cut = record_tokens(visits, max_len)
        streams.append(s)
        n_cut += cut
    return streams, n_cut


def detokenize(streams, vocab: Vocabulary) -> list[list[list[str]]]:
    """Token streams back to nested records ``[patient][visit] -> codes`` (inverse of :func:`tokenize`)."""
    out = []
    for s in streams:
        rec, cur = [], None
        for t in np.asarray(s).tolist():
            if t == EOS:
                break
            if t == VOPEN:
                cur = []
            elif t == VCLOSE and cur is not None:
                if cur:
                    rec.append(cur)
                cur = None
            elif t >= CODE_OFFSET and cur is not None:
                cur.append(vocab.codes[t - CODE_OFFSET])
        out.append(rec)
    return out


def _code_visits(cohort: Cohort, vocab: Vocabulary) -> list[list[np.ndarray]]:
    """Per patient (cohort order), per visit: code token ids."""
    ev = cohort.events
    tok = vocab.index(ev[CODE].to_numpy()) + CODE_OFFSET
    subj = ev[SUBJECT].to_numpy()
    vis = ev[VISIT].to_numpy()
    pat_bounds = np.flatnonzero(subj[1:] != subj[:-1]) + 1
    out = []
    for p_tok, p_vis in zip(np.split(tok, pat_bounds), np.split(vis, pat_bounds)):
        change = np.flatnonzero(np.diff(p_vis)) + 1
        out.append(np.split(p_tok, change))
    return out


def corrupt(stream: np.ndarray, rng: np.random.Generator, mask_prob: float, poisson_lambda: float,
            delete_prob: float) -> np.ndarray:
    """The encoder input: code spans (Poisson lengths, inside one visit) replaced by one ``<mask>``
    each until about ``mask_prob`` of the codes are covered, then each remaining code deleted with
    ``delete_prob``. Codes are only removed, never replaced by other codes."""
    stream = np.asarray(stream)
    is_code = stream >= CODE_OFFSET
    n_codes = int(is_code.sum())
    masked = np.zeros(len(stream), dtype=bool)
    target = int(round(mask_prob * n_codes))
    code_pos = np.flatnonzero(is_code)
    while masked.sum() < target:
        free = code_pos[~masked[code_pos]]
        start = int(free[rng.integers(len(free))])
        length = max(1, int(rng.poisson(poisson_lambda)))
        end = start
        while end < len(stream) and end - start < length and is_code[end]:
            end += 1
        masked[start:end] = True
    deleted = is_code & ~masked & (rng.random(len(stream)) < delete_prob)
    out = []
    for i, t in enumerate(stream.tolist()):
        if masked[i]:
            if not (i and masked[i - 1]):
                out.append(MASK)
        elif not deleted[i]:
            out.append(t)
    return np.asarray(out, dtype=np.int64)


# --------------------------------------------------------------------------- sampling
def sampling_probs(logits, log_prior=None, alpha: float = 0.0, top_p: float = 0.95, top_k: int = 0,
                   temperature: float = 1.0):
    """Next-token probabilities: ``softmax((logits + alpha * log_prior) / temperature)`` restricted to
    the top-k (0: off) and to the smallest set whose mass reaches ``top_p`` (nucleus), renormalised.

    ``logits``: ``(B, V)``; entries at ``-inf`` are never chosen.
    """
    import torch

    z = logits.float()
    if alpha and log_prior is not None:
        z = z + alpha * log_prior
    z = z / temperature
    if top_k and top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    probs = torch.softmax(z, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p          # mass strictly before each token
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def age_bin(age: float) -> int:
    """0-10 -> 0, ..., 80-90 and 90+ -> 8."""
    return int(min(max(age, 0.0) // 10, N_AGE_BINS - 1))


# --------------------------------------------------------------------------- networks
def _networks():
    import torch
    from torch import nn

    class DemographicPrompt(nn.Module):
        """Age (numerical: w * age + b, or a learned missing-age vector) and sex (embedding of
        F/M/unknown plus a feature bias), each in ``hidden`` dims projected to ``d_model``."""

        def __init__(self, hidden: int, d_model: int):
            super().__init__()
            self.age_weight = nn.Parameter(torch.randn(hidden))
            self.age_bias = nn.Parameter(torch.zeros(hidden))
            self.age_missing = nn.Parameter(torch.randn(hidden))
            self.sex_embedding = nn.Embedding(3, hidden)
            self.sex_bias = nn.Parameter(torch.zeros(hidden))
            self.age_proj = nn.Linear(hidden, d_model)
            self.sex_proj = nn.Linear(hidden, d_model)

        def forward(self, age, age_missing, sex):
            h_age = age[:, None] * self.age_weight + self.age_bias
            h_age = torch.where(age_missing[:, None], self.age_missing.expand_as(h_age), h_age)
            h_sex = self.sex_embedding(sex) + self.sex_bias
            return torch.stack([self.age_proj(h_age), self.sex_proj(h_sex)], dim=1)

    class PromptBart(nn.Module):
        """``BartForConditionalGeneration`` with demographic prompts prepended to its inputs."""

        def __init__(self, cfg: PromptEHRConfig, vocab_size: int):
            super().__init__()
            BartConfig, BartForConditionalGeneration = transformers_module("BartConfig", "BartForConditionalGeneration")

            bart_cfg = BartConfig(
                vocab_size=vocab_size, d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
                decoder_layers=cfg.decoder_layers, encoder_attention_heads=cfg.attention_heads,
                decoder_attention_heads=cfg.attention_heads, encoder_ffn_dim=cfg.ffn_dim,
                decoder_ffn_dim=cfg.ffn_dim, max_position_embeddings=cfg.max_len + N_PROMPTS,
                dropout=cfg.dropout, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                decoder_start_token_id=DECODER_START, forced_bos_token_id=None, forced_eos_token_id=None,
            )
            self.bart = BartForConditionalGeneration(bart_cfg)
            self.encoder_prompt = DemographicPrompt(cfg.prompt_hidden, cfg.d_model)
            self.decoder_prompt = DemographicPrompt(cfg.prompt_hidden, cfg.d_model) if cfg.decoder_prompt else None

        @property
        def n_decoder_prompts(self) -> int:
            return N_PROMPTS if self.decoder_prompt is not None else 0

        def embed(self, ids):
            return self.bart.get_input_embeddings()(ids)

        def encode(self, enc_ids, enc_mask, age, age_missing, sex):
            prompt = self.encoder_prompt(age, age_missing, sex)
            emb = torch.cat([prompt, self.embed(enc_ids)], dim=1)
            mask = torch.cat([torch.ones(len(enc_ids), N_PROMPTS, dtype=enc_mask.dtype, device=enc_mask.device),
                              enc_mask], dim=1)
            return self.bart.model.encoder(inputs_embeds=emb, attention_mask=mask).last_hidden_state, mask

        def decoder_embeds(self, dec_ids, age, age_missing, sex):
            emb = self.embed(dec_ids)
            if self.decoder_prompt is not None:
                emb = torch.cat([self.decoder_prompt(age, age_missing, sex), emb], dim=1)
            return emb

        def decode(self, emb, enc_h, enc_mask, cache=None, use_cache=False):
            out = self.bart.model.decoder(inputs_embeds=emb, encoder_hidden_states=enc_h,
                                          encoder_attention_mask=enc_mask, cache=cache, use_cache=use_cache)
            return out.last_hidden_state, out.cache

        def logits(self, hidden):
            return self.bart.lm_head(hidden) + self.bart.final_logits_bias

        def forward(self, enc_ids, enc_mask, dec_ids, age, age_missing, sex):
            """Decoder hidden states at the token positions (prompt positions dropped)."""
            enc_h, mask = self.encode(enc_ids, enc_mask, age, age_missing, sex)
            h, _ = self.decode(self.decoder_embeds(dec_ids, age, age_missing, sex), enc_h, mask)
            return h[:, self.n_decoder_prompts:]

    return PromptBart


# --------------------------------------------------------------------------- generator
class PromptEHR(TorchGenerator):
    """PromptEHR (Section 2.4, Appendix F.3): demographic-prompted BART with frequency-guided sampling."""

    name = "promptehr"
    config_class = PromptEHRConfig
    # presets: ehrlib/profiles/<profile>.yaml, key models.promptehr

    # ------------------------------------------------------------------ data
    def _prepare(self, train: Cohort) -> None:
        cfg = self.config
        self.vocab = Vocabulary.from_cohorts(train)
        visits = _code_visits(train, self.vocab)
        self._records, self.n_truncated = [], 0
        for rec in visits:
            s, cut = record_tokens(rec, cfg.max_len)
            self.n_truncated += cut
            kept = detokenize_lengths(s)
            self._records.append(rec[:len(kept)] if not cut else _cut(rec, kept))
        if self.n_truncated:
            log.warning("promptehr: %d of %d records longer than max_len=%d tokens keep their first visits",
                        self.n_truncated, len(visits), cfg.max_len)
        self._lengths = np.array([sum(map(len, r)) + 2 * len(r) + 2 for r in self._records])
        age, missing, sex = self._demographics(train)
        self._age, self._missing, self._sex = age, missing, sex
        ok = ~missing
        self.age_mean = float(age[ok].mean()) if ok.any() else 0.0
        self.age_std = float(age[ok].std()) if ok.sum() > 1 and age[ok].std() > 0 else 1.0
        # empirical (age, sex) pairs
        pairs = pd.DataFrame({"age": np.where(missing, -1.0, age), "sex": sex})
        counts = pairs.value_counts().sort_index()
        self.demo_pairs = {"age": [None if a < 0 else float(a) for a, _ in counts.index],
                           "sex": [int(s) for _, s in counts.index], "count": counts.to_numpy().tolist()}
        # structure distributions (before truncation)
        n_visits = np.array([len(r) for r in visits])
        cpv = np.concatenate([[len(v) for v in r] for r in visits])
        self.visit_hist = _hist(n_visits)
        self.cpv_hist = _hist(cpv)
        # code frequencies and the first-code prior
        self.code_counts = np.bincount(self.vocab.index(train.events[CODE].to_numpy()),
                                       minlength=len(self.vocab)).tolist()
        self.first_prior = _first_code_prior(visits, age, missing, sex, len(self.vocab))
        # validation split
        n = len(self._records)
        perm = np.random.default_rng(cfg.seed).permutation(n)
        n_val = int(round(cfg.val_fraction * n)) if cfg.val_fraction > 0 else 0
        if cfg.val_fraction > 0 and n > 1:
            n_val = min(max(n_val, 1), n - 1)
        self._val_idx, self._train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        self.steps_per_epoch = math.ceil(len(self._train_idx) / cfg.batch_size)

    @staticmethod
    def _demographics(cohort: Cohort):
        n = cohort.n_patients
        demo = cohort.demographics
        if demo is None:
            log.warning("promptehr: the cohort has no demographics table; all %d patients get the 'unknown' "
                        "sex category and the age-missing prompt", n)
            return np.zeros(n), np.ones(n, dtype=bool), np.full(n, UNKNOWN_SEX, dtype=np.int64)
        demo = demo.set_index(SUBJECT).reindex(pd.Index(cohort.subject_ids, dtype="string"))
        age = pd.to_numeric(demo[AGE], errors="coerce").to_numpy(dtype=float)
        missing = ~np.isfinite(age)
        sex = demo[SEX].astype(object).map(SEX_CODES).fillna(UNKNOWN_SEX).to_numpy().astype(np.int64)
        n_age, n_sex = int(missing.sum()), int((sex == UNKNOWN_SEX).sum())
        if n_age or n_sex:
            log.warning("promptehr: %d patients without age and %d without sex use the age-missing prompt / "
                        "'unknown' sex category", n_age, n_sex)
        return np.where(missing, 0.0, age), missing, sex

    def _extra_state(self) -> dict:
        return {"codes": list(self.vocab.codes), "age_mean": self.age_mean, "age_std": self.age_std,
                "demo_pairs": self.demo_pairs, "visit_hist": self.visit_hist, "cpv_hist": self.cpv_hist,
                "code_counts": self.code_counts, "first_prior": self.first_prior,
                "n_truncated": self.n_truncated}

    def _set_extra_state(self, state: dict) -> None:
        self.vocab = Vocabulary(state["codes"])
        for k in ("age_mean", "age_std", "demo_pairs", "visit_hist", "cpv_hist", "code_counts", "first_prior",
                  "n_truncated"):
            setattr(self, k, state[k])

    # ------------------------------------------------------------------ networks
    def _build(self) -> dict:
        return {"model": _networks()(self.config, CODE_OFFSET + len(self.vocab))}

    def _optimizers(self) -> dict:
        import torch

        model = self.modules["model"]
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            (no_decay if p.ndim < 2 or "norm" in n else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return {"adamw": torch.optim.AdamW(groups, lr=self.config.lr)}

    def _schedulers(self) -> dict:
        import torch

        warmup = self.config.warmup_steps
        total = max(1, self.config.epochs * self.steps_per_epoch)

        def factor(step: int) -> float:
            if warmup and step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        return {"linear": torch.optim.lr_scheduler.LambdaLR(self.optimizers["adamw"], factor)}

    # ------------------------------------------------------------------ training
    def _stream(self, i: int, rng: np.random.Generator | None) -> np.ndarray:
        rec = self._records[i]
        if rng is not None and self.config.shuffle_codes:
            rec = [rng.permutation(v) for v in rec]
        return record_tokens(rec, self.config.max_len)[0]

    def _batch(self, rows, rng: np.random.Generator | None, generation_input: bool = False):
        """Tensors of one batch; ``rng=None``: no shuffling and no corruption."""
        import torch

        cfg = self.config
        streams = [self._stream(i, rng) for i in rows]
        enc = []
        for s in streams:
            if generation_input or (rng is not None and rng.random() < cfg.whole_mask_prob):
                enc.append(np.array([BOS, MASK, EOS]))
            elif rng is None:
                enc.append(s)
            else:
                enc.append(corrupt(s, rng, cfg.mask_prob, cfg.poisson_lambda, cfg.delete_prob))
        le, ld = max(map(len, enc)), max(map(len, streams))
        enc_ids = np.full((len(rows), le), PAD)
        dec_ids = np.full((len(rows), ld), PAD)
        labels = np.full((len(rows), ld), -100)
        for j, (e, s) in enumerate(zip(enc, streams)):
            enc_ids[j, :len(e)] = e
            dec_ids[j, 0] = DECODER_START
            dec_ids[j, 1:len(s)] = s[:-1]
            labels[j, :len(s)] = s
        dev = self.device
        rows = np.asarray(rows)
        return dict(
            enc_ids=torch.as_tensor(enc_ids, device=dev), enc_mask=torch.as_tensor(enc_ids != PAD, device=dev).long(),
            dec_ids=torch.as_tensor(dec_ids, device=dev),
            age=torch.as_tensor((self._age[rows] - self.age_mean) / self.age_std, dtype=torch.float32, device=dev),
            age_missing=torch.as_tensor(self._missing[rows], device=dev),
            sex=torch.as_tensor(self._sex[rows], device=dev),
        ), torch.as_tensor(labels, device=dev)

    def _loss(self, inputs, labels, reduction: str = "mean"):
        import torch.nn.functional as F

        model = self.modules["model"]
        h = model(**inputs)
        keep = labels != -100
        return F.cross_entropy(model.logits(h[keep]), labels[keep], reduction=reduction), int(keep.sum())

    def _train_epoch(self, epoch: int, rng) -> dict:
        import torch

        cfg = self.config
        model, opt, sched = self.modules["model"], self.optimizers["adamw"], self.schedulers["linear"]
        np_rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
        total, n_tok, t0 = 0.0, 0, time.perf_counter()
        for rows in self._epoch_batches(rng):
            inputs, labels = self._batch(self._train_idx[rows], np_rng)
            loss, k = self._loss(inputs, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            total += loss.item() * k
            n_tok += k
        self.train_tokens_per_s = n_tok / max(time.perf_counter() - t0, 1e-9)
        stats = {"loss": total / max(n_tok, 1), "lr": sched.get_last_lr()[0]}
        if len(self._val_idx):
            stats["val_loss"] = self.validation_nll()
            stats["val_ppl"] = math.exp(min(stats["val_loss"], 50.0))
        return stats

    def _epoch_batches(self, rng) -> list[np.ndarray]:
        """Minibatches (positions in the training split) drawn from ``rng``; with ``length_buckets``
        each run of 50 batches is sorted by record length before it is cut, and the batches shuffled."""
        import torch

        bs, n = self.config.batch_size, len(self._train_idx)
        if not self.config.length_buckets:
            return [b.numpy() for b in batches(n, bs, rng)]
        perm = torch.randperm(n, generator=rng).numpy()
        lengths = self._lengths[self._train_idx]
        out = []
        for c in range(0, n, 50 * bs):
            idx = perm[c:c + 50 * bs]
            idx = idx[np.argsort(lengths[idx], kind="stable")]
            out += [idx[i:i + bs] for i in range(0, len(idx), bs)]
        return [out[i] for i in torch.randperm(len(out), generator=rng).tolist()]

    def validation_nll(self) -> float:
        """Mean token NLL of the validation patients given their demographics only (the generation input)."""
        import torch

        model = self.modules["model"]
        was_training = model.training
        model.eval()
        rng = np.random.default_rng(self.config.seed)     # a fixed within-visit order
        total, n_tok = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(self._val_idx), 64):
                rows = self._val_idx[start:start + 64]
                streams_rng = rng if self.config.shuffle_codes else None
                inputs, labels = self._batch(rows, streams_rng, generation_input=True)
                loss, k = self._loss(inputs, labels, reduction="sum")
                total += loss.item()
                n_tok += k
        model.train(was_training)
        return total / max(n_tok, 1)

    # ------------------------------------------------------------------ generation
    def with_alpha(self, alpha: float) -> "PromptEHR":
        """A generator sharing these trained weights with frequency guidance ``alpha``."""
        other = copy.copy(self)
        other.config = dataclasses.replace(self.config, alpha=alpha)
        return other

    def _log_prior(self, device):
        import torch

        counts = torch.as_tensor(self.code_counts, dtype=torch.float64)
        prior = torch.zeros(CODE_OFFSET + len(counts), dtype=torch.float64)
        prior[CODE_OFFSET:] = torch.log(counts.clamp_min(1) / counts.sum())
        return prior.float().to(device)

    def _plan(self, n: int, g):
        """Demographics, visit counts, codes per visit and first codes of ``n`` patients."""
        import torch

        cfg = self.config
        pairs = self.demo_pairs
        pick = torch.multinomial(torch.as_tensor(pairs["count"], dtype=torch.float64), n, True, generator=g).numpy()
        age = np.array([np.nan if pairs["age"][i] is None else pairs["age"][i] for i in pick])
        sex = np.asarray(pairs["sex"], dtype=np.int64)[pick]
        vv, vc = self.visit_hist
        n_vis = np.asarray(vv)[torch.multinomial(torch.as_tensor(vc, dtype=torch.float64), n, True,
                                                 generator=g).numpy()]
        cv, cc = self.cpv_hist
        max_v = int(n_vis.max())
        k = np.asarray(cv)[torch.multinomial(torch.as_tensor(cc, dtype=torch.float64), n * max_v, True,
                                             generator=g).numpy()].reshape(n, max_v)
        k[np.arange(max_v)[None, :] >= n_vis[:, None]] = 0
        # fit the structure in max_len: <s> (<v> k </v>)* </s>
        budget = cfg.max_len - 2
        for i in range(n):
            used = 0
            for j in range(n_vis[i]):
                if used + k[i, j] + 2 > budget:
                    if j == 0:
                        k[i, 0] = budget - 2
                        n_vis[i] = 1
                    else:
                        n_vis[i] = j
                    k[i, n_vis[i]:] = 0
                    break
                used += k[i, j] + 2
        first = np.zeros(n, dtype=np.int64)
        keys = np.array([self._prior_key(a, s) for a, s in zip(age, sex)], dtype=object)
        for key in sorted(set(keys)):
            idx = np.flatnonzero(keys == key)
            codes, weights = self.first_prior[key]
            draw = torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), len(idx), True, generator=g)
            first[idx] = np.asarray(codes, dtype=np.int64)[draw.numpy()]
        return age, sex, n_vis, k, first

    def _prior_key(self, age: float, sex: int) -> str:
        """The first-code stratum: age bin x sex, else sex only, else all (documented fall-backs)."""
        if sex != UNKNOWN_SEX and np.isfinite(age):
            key = f"{age_bin(age)},{sex}"
            if key in self.first_prior:
                return key
        if sex != UNKNOWN_SEX and f"sex{sex}" in self.first_prior:
            return f"sex{sex}"
        return "all"

    def _generate(self, n: int, seed: int, use_cache: bool = True) -> Cohort:
        import torch

        g = torch.Generator().manual_seed(int(seed))
        age, sex, n_vis, k, first = self._plan(n, g)
        order = np.argsort(k.sum(1) + 2 * n_vis, kind="stable")
        records: list = [None] * n
        model = self.modules["model"]
        model.eval()
        bs = self.config.gen_batch_size
        with torch.no_grad():
            log_prior = self._log_prior("cpu")
            for start in range(0, n, bs):
                rows = order[start:start + bs]
                for r, rec in zip(rows, self._decode(age[rows], sex[rows], n_vis[rows], k[rows], first[rows], g,
                                                     log_prior, use_cache)):
                    records[r] = rec
        keep = [i for i in range(n) if records[i]]
        ids = [f"P{i:07d}" for i in keep]
        demo = pd.DataFrame({SUBJECT: ids, AGE: age[keep],
                             SEX: pd.array([{0: "F", 1: "M"}.get(int(s)) for s in sex[keep]], dtype="string")})
        return Cohort.from_visits([records[i] for i in keep], subject_ids=ids, demographics=demo,
                                  source="promptehr")

    def _decode(self, age, sex, n_vis, k, first, g, log_prior, use_cache: bool = True):
        """Sample a batch of records (lists of visits of code strings) with a state machine over the
        planned structure; KV-cached unless ``use_cache=False`` (the naive baseline)."""
        import torch

        cfg, dev, model = self.config, self.device, self.modules["model"]
        B, V = len(age), CODE_OFFSET + len(self.vocab)
        missing = ~np.isfinite(age)
        age_t = torch.as_tensor((np.where(missing, 0.0, age) - self.age_mean) / self.age_std,
                                dtype=torch.float32, device=dev)
        miss_t = torch.as_tensor(missing, device=dev)
        sex_t = torch.as_tensor(sex, device=dev)
        enc_ids = torch.tensor([[BOS, MASK, EOS]], device=dev).expand(B, -1)
        enc_h, enc_mask = model.encode(enc_ids, torch.ones_like(enc_ids), age_t, miss_t, sex_t)
        start = torch.tensor([[DECODER_START, BOS]], device=dev).expand(B, -1)
        emb = model.decoder_embeds(start, age_t, miss_t, sex_t)
        h, cache = model.decode(emb, enc_h, enc_mask, use_cache=use_cache)
        history = emb

        n_vis_t = torch.as_tensor(n_vis)
        k_t = torch.as_tensor(k)
        first_t = torch.as_tensor(first) + CODE_OFFSET
        last = torch.full((B,), BOS)
        vis = torch.full((B,), -1)
        cnt = torch.zeros(B, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        seen = torch.zeros(B, V, dtype=torch.bool)
        special = torch.zeros(V, dtype=torch.bool)
        special[:CODE_OFFSET] = True
        out_p, out_v, out_c = [], [], []
        ar = torch.arange(B)
        for _ in range(cfg.max_len):
            nxt = torch.full((B,), PAD)
            in_visit = (last == VOPEN) | (last >= CODE_OFFSET)
            k_cur = k_t[ar, vis.clamp_min(0)]
            need_first = in_visit & (vis == 0) & (cnt == 0)
            full = in_visit & (cnt >= k_cur)
            slot = in_visit & ~need_first & ~full & ~done
            nxt[last == BOS] = VOPEN
            nxt[need_first] = first_t[need_first]
            nxt[full] = VCLOSE
            closing = last == VCLOSE
            nxt[closing] = torch.where(vis[closing] + 1 < n_vis_t[closing], VOPEN, EOS)
            nxt[done] = PAD
            if slot.any():
                logits = model.logits(h[:, -1]).float().cpu()
                ban = special.expand(B, -1).clone()
                if cfg.visit_length == "cap":
                    ban[:, VCLOSE] = cnt == 0
                ban |= seen
                z = logits[slot].masked_fill(ban[slot], float("-inf"))
                probs = sampling_probs(z, log_prior, cfg.alpha, cfg.top_p, cfg.top_k, cfg.temperature)
                nxt[slot] = torch.multinomial(probs, 1, generator=g).squeeze(1)
            opened = nxt == VOPEN
            vis[opened] += 1
            cnt[opened] = 0
            seen[opened] = False
            is_code = nxt >= CODE_OFFSET
            cnt[is_code] += 1
            seen[is_code, nxt[is_code]] = True
            out_p.append(ar[is_code])
            out_v.append(vis[is_code])
            out_c.append(nxt[is_code] - CODE_OFFSET)
            done |= nxt == EOS
            last = torch.where(done, torch.full_like(last, EOS), nxt)
            if bool(done.all()):
                break
            step = model.embed(nxt.to(dev)[:, None])
            if use_cache:
                h, cache = model.decode(step, enc_h, enc_mask, cache=cache, use_cache=True)
            else:
                history = torch.cat([history, step], dim=1)
                h, _ = model.decode(history, enc_h, enc_mask)
        p, v, c = (torch.cat(x).numpy() for x in (out_p, out_v, out_c))
        records = [[[] for _ in range(int(n_vis[i]))] for i in range(B)]
        codes = self.vocab.codes
        for pi, vi, ci in zip(p.tolist(), v.tolist(), c.tolist()):
            records[pi][vi].append(codes[ci])
        return [[vv for vv in r if vv] for r in records]


# --------------------------------------------------------------------------- helpers
def detokenize_lengths(stream: np.ndarray) -> list[int]:
    """Codes per visit of one token stream."""
    out = []
    for t in np.asarray(stream).tolist():
        if t == VOPEN:
            out.append(0)
        elif t >= CODE_OFFSET:
            out[-1] += 1
    return out


def _cut(rec, lengths):
    return [np.asarray(rec[j][:n]) for j, n in enumerate(lengths)]


def _hist(values) -> list[list[int]]:
    v, c = np.unique(np.asarray(values, dtype=np.int64), return_counts=True)
    return [v.tolist(), c.tolist()]


def _first_code_prior(visits, age, missing, sex, n_codes: int) -> dict:
    """Stratum -> ``[code indices, weights]``: each code of a patient's first visit weighs 1/|visit|.

    Strata ``"<age bin>,<sex>"`` (known age and sex), ``"sex<s>"`` (known sex) and ``"all"``.
    """
    acc: dict[str, np.ndarray] = {}

    def add(key, codes, w):
        if key not in acc:
            acc[key] = np.zeros(n_codes)
        np.add.at(acc[key], codes, w)

    for rec, a, m, s in zip(visits, age, missing, sex):
        codes = np.asarray(rec[0]) - CODE_OFFSET
        w = 1.0 / len(codes)
        add("all", codes, w)
        if s != UNKNOWN_SEX:
            add(f"sex{s}", codes, w)
            if not m:
                add(f"{age_bin(a)},{s}", codes, w)
    out = {}
    for key, weights in acc.items():
        idx = np.flatnonzero(weights)
        out[key] = [idx.tolist(), weights[idx].tolist()]
    return out
