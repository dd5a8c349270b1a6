"""GPT-2 baseline: a causal language model over flattened records ``[BOS] codes VISIT_DELIM codes ... [EOS]``.

Paper: appendix F.5 (GPT baseline) — Hugging Face ``GPT2LMHeadModel`` (8 layers, 8 heads,
512 dimensions), a word-level tokenizer whose tokens are whole ICD-9 codes plus ``[BOS]``,
``[EOS]``, ``[PAD]``, ``[UNK]`` and ``VISIT_DELIM``; causal-LM cross-entropy, 50 epochs, batch 64,
AdamW at lr 1e-4 with a cosine schedule; sampling with top-k 50 and top-p 0.95.

Deviations:

* Context: the paper's script truncates to 128 tokens (context window 512), which cuts ``[EOS]``
  from long records, and can generate past ``n_positions``. Here ``n_positions`` is the length of
  the longest training sequence (``[BOS]`` ... ``[EOS]``, recorded as ``context``); nothing is
  truncated. ``max_positions`` (1024, GPT-2's own default) is a cap: a longer training record
  raises :class:`GeneratorError`. Generation stops each record at ``[EOS]`` or at ``context``.
* The tokenizer (``tokenizers`` WordLevel, WhitespaceSplit) is built from the sorted training
  vocabulary (specials first: ``[PAD]=0 [BOS]=1 [EOS]=2 [UNK]=3 VISIT_DELIM=4``) instead of a
  frequency-ordered WordLevelTrainer, so ids are stable across runs. It is saved with the model
  (``tokenizer.json``).
* Training: our own loop instead of the HF Trainer, keeping its defaults (no warm-up, no weight
  decay, gradient-norm clip 1.0, per-step cosine decay to 0, dropout 0.1). Padding is masked
  out of the loss (labels -100). Batches are padded to their own longest record, and records of
  similar length are batched together (``length_buckets`` batches per length-sorted pool, batch
  order shuffled); ``length_buckets=1`` gives plain random batches. A batch with more than
  ``max_batch_tokens`` padded tokens runs in chunks with gradient accumulation (same loss,
  bounded memory: attention over 64 records of ~460 tokens needs several GB on CPU).
* Optimizer: the table says Adam, the text AdamW; AdamW with the Trainer's weight decay 0 is
  both. The ``smoke``/``demo`` presets are smaller models (2 layers, 32/128 dimensions) with a
  higher learning rate and a few epochs, for CPU; ``paper`` is F.5 (8 x 8 x 512).
* Validation: a seeded ``val_fraction`` (5 %) of training patients is held out for an
  epoch-level ``val_loss``; the best epoch's weights are kept (the paper trains on all patients
  for 50 epochs). ``patience`` > 0 turns on early stopping (off in every preset).
* Generation: our own batched sampling loop with the KV cache (``cache=``), drawing uniforms from a
  ``torch.Generator`` seeded by ``seed`` (not the global RNG). Decoding drops duplicate codes
  within a visit, empty visits and special tokens (the released GPT-2 samples hold 1,709
  within-visit duplicates); a record with no code is redrawn, in at most ``max_attempts``
  rounds (``ehrlib.models.neural.draw_nonempty``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort
from ehrlib.data.encode import Vocabulary, from_token_sequences
from ehrlib.models.base import GeneratorError, ModelLoadError, reading
from ehrlib.models.fidelity import validation_cohort
from ehrlib.models.neural import (GPT2_ACTIVATION, Running, TorchConfig, TorchGenerator, draw_nonempty, filter_logits, to_device,
                                  transformers_module)

log = logging.getLogger("ehrlib.models")

PAD, BOS, EOS, UNK, DELIM = "[PAD]", "[BOS]", "[EOS]", "[UNK]", "VISIT_DELIM"
SPECIALS = (PAD, BOS, EOS, UNK, DELIM)  # token ids 0..4; code i of the vocabulary is id 5 + i
PAD_ID, BOS_ID, EOS_ID, UNK_ID, DELIM_ID = range(len(SPECIALS))
CODE_OFFSET = len(SPECIALS)
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class GPTConfig(TorchConfig):
    """GPT-2 baseline settings; defaults are appendix F.5 (the presets override sizes)."""

    n_layer: int = 8                # transformer blocks
    n_head: int = 8                 # attention heads
    n_embd: int = 512               # hidden size (divisible by n_head)
    dropout: float = 0.1            # residual, embedding and attention dropout (GPT-2 default)
    max_positions: int = 1024       # cap on the context; the longest training record must fit
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0       # AdamW (HF Trainer default)
    grad_clip: float = 1.0          # max gradient norm (HF Trainer default)
    length_buckets: int = 50        # batches per length-sorted pool (1: plain random batches)
    val_fraction: float = 0.05      # training patients held out for val_loss (0: none)
    top_k: int = 50                 # sampling: keep the k most likely tokens (0: off)
    top_p: float = 0.95             # sampling: nucleus mass in (0, 1]
    max_batch_tokens: int = 8192    # padded tokens per forward pass; longer batches accumulate gradients
    gen_batch_size: int = 512       # records sampled together
    max_attempts: int = 10          # rounds of redrawing records with no code before giving up

    def check(self) -> None:
        super().check()
        self._positive("n_layer", "n_head", "n_embd", "max_positions", "epochs", "batch_size", "lr",
                       "grad_clip", "length_buckets", "max_batch_tokens", "gen_batch_size", "max_attempts")
        name = type(self).__name__
        if self.n_embd % self.n_head:
            raise GeneratorError(f"{name}.n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                                 "expected n_embd % n_head == 0")
        self._unit_interval("dropout")
        self._non_negative("weight_decay")
        if not 0 <= self.val_fraction < 0.5:
            raise GeneratorError(f"{name}.val_fraction={self.val_fraction!r}; expected a value in [0, 0.5)")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            raise GeneratorError(f"{name}.top_k={self.top_k!r}; expected an integer >= 0 (0: off)")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise GeneratorError(f"{name}.top_p={self.top_p!r}; expected a value in (0, 1]")
        if self.max_positions < 3:
            raise GeneratorError(f"{name}.max_positions={self.max_positions}; expected >= 3 ([BOS] code [EOS])")


# ---------------------------------------------------------------------- tokenizer
def build_tokenizer(codes):
    """A WordLevel tokenizer: specials ``[PAD] [BOS] [EOS] [UNK] VISIT_DELIM`` then the sorted codes."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    codes = list(codes)
    clash = sorted(set(codes) & set(SPECIALS))
    if clash:
        raise GeneratorError(f"gpt: training code(s) {clash} collide with special tokens {list(SPECIALS)}")
    spaced = [c for c in codes if not c or c.split() != [c]]
    if spaced:
        raise GeneratorError(f"gpt: code {spaced[0]!r} is empty or contains whitespace; codes must be atomic words")
    vocab = {t: i for i, t in enumerate([*SPECIALS, *codes])}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.add_special_tokens(list(SPECIALS))
    return tok


def cohort_texts(cohort: Cohort) -> list[str]:
    """Each patient as ``"[BOS] c c VISIT_DELIM c ... [EOS]"`` (events are sorted by subject, visit)."""
    subj = cohort.events[SUBJECT].to_numpy()
    vis = cohort.events[VISIT].to_numpy()
    code = cohort.events[CODE].astype(str).to_numpy()
    out: list[str] = []
    words: list[str] = []
    for i in range(len(subj)):
        if i == 0 or subj[i] != subj[i - 1]:
            if words:
                out.append(" ".join(words + [EOS]))
            words = [BOS]
        elif vis[i] != vis[i - 1]:
            words.append(DELIM)
        words.append(code[i])
    if words:
        out.append(" ".join(words + [EOS]))
    return out


def encode(tokenizer, cohort: Cohort) -> list[np.ndarray]:
    """Token ids of every patient of ``cohort`` (``[BOS]`` ... ``[EOS]``); unknown codes become ``[UNK]``."""
    return [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(cohort_texts(cohort))]


def decode(sequences, vocab: Vocabulary) -> Cohort:
    """Cohort from token-id sequences: stops at ``[EOS]``, drops special tokens, ``[UNK]``,
    duplicate codes within a visit and empty visits; records left with no code are dropped."""
    return from_token_sequences(sequences, vocab, code_offset=CODE_OFFSET, visit_delim=DELIM_ID, eos=EOS_ID)


def sample(logits, uniforms):
    """One token per row from ``softmax(logits)`` by inverting the CDF at ``uniforms`` in [0, 1)."""
    probs = torch.softmax(logits.float(), dim=-1)
    cdf = torch.cumsum(probs, dim=-1)
    target = (uniforms.to(cdf.device) * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


# ---------------------------------------------------------------------- the generator
class GPT(TorchGenerator):
    """GPT-2 language model over flattened visit sequences (appendix F.5)."""

    name = "gpt"
    config_class = GPTConfig
    # presets: ehrlib/profiles/<profile>.yaml, key models.gpt

    # ---------------------------------------------------------------- data
    def _prepare(self, train: Cohort) -> None:
        cfg = self.config
        self.vocab = Vocabulary.from_cohorts(train)
        self.tokenizer = build_tokenizer(self.vocab.codes)
        seqs = encode(self.tokenizer, train)
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        longest = int(lengths.max())
        if longest > cfg.max_positions:
            n_long = int((lengths > cfg.max_positions).sum())
            raise GeneratorError(
                f"gpt: {n_long} training record(s) need more than max_positions={cfg.max_positions} tokens "
                f"(longest: {longest}, [BOS] ... [EOS]); raise GPTConfig.max_positions to at least {longest} "
                "(records are never truncated, so [EOS] is always learned)")
        self.context = longest
        n = len(seqs)
        n_val = int(round(cfg.val_fraction * n)) if n >= 2 else 0
        n_val = min(n_val, n - 1)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 7_777)).numpy()
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        ids = np.full((n, longest), PAD_ID, dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
        self._ids = torch.from_numpy(ids)
        self._len = torch.from_numpy(lengths)
        self._train_idx = torch.from_numpy(train_idx)
        self._val_idx = torch.from_numpy(val_idx)
        self.validation = validation_cohort(train, val_idx)
        self._steps_per_epoch = len(self._batches(torch.Generator().manual_seed(0)))
        log.info("gpt: %d training records (%d held out for val_loss), %d codes, context %d tokens, %d tokens",
                 len(train_idx), n_val, len(self.vocab), longest, int(lengths.sum()))

    def _batches(self, rng) -> list:
        """Index tensors into the training records: length-sorted pools, shuffled batch order."""
        cfg = self.config
        perm = self._train_idx[torch.randperm(len(self._train_idx), generator=rng)]
        if cfg.length_buckets <= 1:
            return [perm[i:i + cfg.batch_size] for i in range(0, len(perm), cfg.batch_size)]
        pool = cfg.batch_size * cfg.length_buckets
        out = []
        for start in range(0, len(perm), pool):
            chunk = perm[start:start + pool]
            chunk = chunk[torch.argsort(self._len[chunk], stable=True)]
            out.extend(chunk[i:i + cfg.batch_size] for i in range(0, len(chunk), cfg.batch_size))
        return [out[i] for i in torch.randperm(len(out), generator=rng).tolist()]

    def _tensors(self, rows):
        """``(input_ids, attention_mask, labels)`` of ``rows`` padded to their longest record."""
        width = int(self._len[rows].max())
        ids = self._ids[rows, :width]
        mask = (torch.arange(width).unsqueeze(0) < self._len[rows].unsqueeze(1)).long()
        labels = ids.masked_fill(mask == 0, -100)
        return to_device(ids, self.device), to_device(mask, self.device), to_device(labels, self.device)

    def _extra_state(self) -> dict:
        return {"codes": list(self.vocab.codes), "context": int(self.context)}

    def _set_extra_state(self, state: dict) -> None:
        self.vocab = Vocabulary(state["codes"])
        self.tokenizer = build_tokenizer(self.vocab.codes)
        self.context = int(state["context"])

    # ---------------------------------------------------------------- model
    def _build(self) -> dict:
        GPT2Config, GPT2LMHeadModel = transformers_module("GPT2Config", "GPT2LMHeadModel")

        cfg = self.config
        conf = GPT2Config(vocab_size=CODE_OFFSET + len(self.vocab), n_positions=self.context,
                          n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
                          resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                          bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
                          activation_function=GPT2_ACTIVATION)
        return {"gpt2": GPT2LMHeadModel(conf)}

    def _optimizers(self) -> dict:
        return {"adamw": torch.optim.AdamW(self.modules["gpt2"].parameters(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay)}

    def _schedulers(self) -> dict:
        total = max(1, self.config.epochs * self._steps_per_epoch)
        return {"cosine": torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizers["adamw"], T_max=total, eta_min=0.0)}

    def _chunks(self, rows) -> list:
        """``rows`` split so that no forward pass holds more than ``max_batch_tokens`` padded tokens."""
        width = int(self._len[rows].max())
        per = max(1, self.config.max_batch_tokens // width)
        return [rows[i:i + per] for i in range(0, len(rows), per)]

    def _chunk_loss(self, ids, mask, labels):
        """Summed next-token cross-entropy of one padded chunk (padding masked out).

        The language-model head runs on the predicted positions only (each real token but the
        last): padding neither costs a vocabulary-wide projection nor a copy of its logits.
        """
        model = self.modules["gpt2"]
        hidden = model.transformer(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        target = labels[:, 1:]
        keep = target != -100
        logits = model.lm_head(hidden[keep])
        return F.cross_entropy(logits.float(), target[keep], reduction="sum")

    def _loss_sum(self, rows, scale: float | None = None, as_tensor: bool = False) -> tuple[float, int]:
        """Summed next-token cross-entropy and predicted-token count of ``rows`` (padding masked out);
        with ``scale``, backpropagates ``sum / scale`` chunk by chunk (gradient accumulation; in
        distributed training the gradients are averaged over ranks after the last chunk only;
        ``as_tensor``: the sum as a float64 tensor on the device, not copied to the host)."""
        total, tokens = Running(), 0
        chunks = self._chunks(rows)
        for i, chunk in enumerate(chunks):
            tokens += int((self._len[chunk] - 1).sum())
            ids, mask, labels = self._tensors(chunk)
            if scale is None:
                loss = self._chunk_loss(ids, mask, labels)
            else:
                with self._no_sync(i < len(chunks) - 1):
                    loss = self._synced(self._chunk_loss, ids, mask, labels)
                    (loss / scale).backward()
            total.add(loss)
        return (total.total if as_tensor else total.value()), tokens

    def _train_epoch(self, epoch: int, rng) -> dict:
        model, opt, sched = self.modules["gpt2"], self.optimizers["adamw"], self.schedulers["cosine"]
        total, tokens = Running(), 0
        for rows in self._steps(self._batches(rng)):
            if not self._keeps(rows):
                sched.step()  # every rank skips the same batch; the schedule stays on the global step count
                continue
            n_tok = int((self._len[rows] - 1).sum())  # predicted tokens of the global batch
            opt.zero_grad(set_to_none=True)
            # DDP averages over ranks: dividing each rank's sum by n_tok / world gives the global mean's gradient
            loss_sum, local = self._loss_sum(self._part(rows), scale=max(n_tok, 1) / self.world_size, as_tensor=True)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
            opt.step()
            sched.step()
            total.add(loss_sum)
            tokens += local
        stats = {"loss": total.value() / max(tokens, 1), "tokens": float(tokens), "lr": sched.get_last_lr()[0]}
        if len(self._val_idx):
            stats["val_loss"] = self.loss(self._val_idx)
            model.train()
        return stats

    def loss(self, rows) -> float:
        """Mean next-token cross-entropy (per predicted token) over training records ``rows``, in eval mode."""
        self.modules["gpt2"].eval()
        rows = rows[torch.argsort(self._len[rows], stable=True)]  # little padding
        step = self.config.batch_size
        total, tokens = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(rows), step):
                s, t = self._loss_sum(rows[start:start + step])
                total, tokens = total + s, tokens + t
        return total / max(tokens, 1)

    # ---------------------------------------------------------------- generation
    def sample_tokens(self, n: int, generator, use_cache: bool = True) -> np.ndarray:
        """``n`` raw token sequences (``[BOS]`` first, ``[PAD]`` after ``[EOS]``), shape ``(n, <= context)``.

        Rows that end (``[EOS]``) leave the batch, and their cache rows are dropped; ``use_cache=False``
        re-reads the whole prefix each step (the naive baseline of the benchmark).
        """
        cfg = self.config
        model = self.modules["gpt2"].eval()
        out = torch.full((n, self.context), PAD_ID, dtype=torch.long)
        out[:, 0] = BOS_ID
        active = torch.arange(n)  # rows of `out` still being sampled
        tokens = torch.full((n, 1), BOS_ID, dtype=torch.long, device=self.device)
        past = None
        with torch.inference_mode():
            for pos in range(1, self.context):
                if use_cache:
                    res = model(input_ids=tokens[:, -1:], cache=past, use_cache=True, logits_to_keep=1)
                    past = res.cache
                else:
                    res = model(input_ids=tokens, use_cache=False, logits_to_keep=1)
                logits = filter_logits(res.logits[:, -1, :].float(), cfg.top_k, cfg.top_p)
                u = torch.rand(len(active), generator=generator)
                nxt = sample(logits, u)
                out[active, pos] = nxt.cpu()
                alive = nxt != EOS_ID
                if not bool(alive.any()):
                    break
                if not bool(alive.all()):
                    keep = alive.nonzero().squeeze(-1)
                    active = active[keep.cpu()]
                    nxt = nxt[keep]
                    if use_cache:
                        past.batch_select_indices(keep)
                    tokens = tokens[keep]
                tokens = torch.cat([tokens, nxt.unsqueeze(-1)], dim=1) if not use_cache else nxt.unsqueeze(-1)
        return out.numpy()

    def _generate(self, n: int, seed: int) -> Cohort:
        cfg = self.config
        g = torch.Generator().manual_seed(int(seed))
        hit_context = 0

        def has_code(seqs):
            nonlocal hit_context
            flags = []
            for seq in seqs:
                eos = np.flatnonzero(seq == EOS_ID)
                hit_context += int(len(eos) == 0)
                flags.append(bool((seq[:eos[0] if len(eos) else len(seq)] >= CODE_OFFSET).any()))
            return flags

        kept, drawn = draw_nonempty(n, lambda k, gen: list(self.sample_tokens(k, gen)), has_code, name="gpt",
                                    generator=g, batch_size=cfg.gen_batch_size, rounds=cfg.max_attempts)
        log.info("gpt: %d of %d sampled records reached the context length %d", hit_context, drawn, self.context)
        self.last_drawn = drawn
        self.last_generation = {"drawn": drawn, "rejected": drawn - n, "hit_context": hit_context}
        return decode(kept, self.vocab)

    # ---------------------------------------------------------------- save / load
    def _save_state(self, d: Path) -> None:
        super()._save_state(d)
        self.tokenizer.save(str(d / TOKENIZER_FILE))  # d: the new folder of an all-or-nothing save

    def _load_state(self, d: Path) -> None:
        from tokenizers import Tokenizer

        super()._load_state(d)
        path = Path(d) / TOKENIZER_FILE
        if not path.is_file():
            raise ModelLoadError(f"{d}: file {TOKENIZER_FILE!r} is missing; a saved GPT needs its tokenizer next to "
                                 "the weights")
        with reading(d, TOKENIZER_FILE, "the tokenizer"):
            saved = Tokenizer.from_file(str(path))
        if saved.get_vocab() != self.tokenizer.get_vocab():
            raise ModelLoadError(f"{d}: the vocabulary of {TOKENIZER_FILE!r} does not match state.json's codes")
        self.tokenizer = saved
