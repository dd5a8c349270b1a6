"""The PromptEHR generator: data preparation, training epochs, KV-cached generation."""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ehrlib.cohort import AGE, CODE, SEX, SUBJECT, VISIT, Cohort
from ehrlib.data.encode import Vocabulary
from ehrlib.models.base import GeneratorError
from ehrlib.models.fidelity import validation_cohort
from ehrlib.models.neural import Running, TorchGenerator, batches, optimizer_step, to_device
from ehrlib.models.promptehr.config import (BOS, CODE_OFFSET, DECODER_START, EOS, MASK, PAD, SEX_CODES, UNKNOWN_SEX,
                                            VCLOSE, VOPEN, PromptEHRConfig)
from ehrlib.models.promptehr.networks import PromptBart
from ehrlib.models.promptehr.prior import _first_code_prior, _hist, age_bin, sampling_probs
from ehrlib.models.promptehr.tokens import _code_visits, _cut, corrupt, detokenize_lengths, record_tokens

log = logging.getLogger("ehrlib.models")


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
        self.validation = validation_cohort(train, self._val_idx)
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
        return {"model": PromptBart(self.config, CODE_OFFSET + len(self.vocab))}

    def _optimizers(self) -> dict:
        model = self.modules["model"]
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            (no_decay if p.ndim < 2 or "norm" in n else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return {"adamw": torch.optim.AdamW(groups, lr=self.config.lr)}

    def _schedulers(self) -> dict:
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

        def put(a, dtype=None):
            return to_device(torch.as_tensor(a, dtype=dtype), dev)

        return dict(
            enc_ids=put(enc_ids), enc_mask=put(enc_ids != PAD).long(), dec_ids=put(dec_ids),
            age=put((self._age[rows] - self.age_mean) / self.age_std, torch.float32),
            age_missing=put(self._missing[rows]), sex=put(self._sex[rows]),
        ), put(labels)

    def _loss(self, inputs, labels, reduction: str = "mean"):
        model = self.modules["model"]
        h = model(**inputs)
        keep = labels != -100
        return F.cross_entropy(model.logits(h[keep]), labels[keep], reduction=reduction), int(keep.sum())

    def _train_epoch(self, epoch: int, rng) -> dict:
        cfg = self.config
        model, opt, sched = self.modules["model"], self.optimizers["adamw"], self.schedulers["linear"]
        np_seed = int(torch.randint(0, 2**62, (1,), generator=rng))
        # corruption and code shuffling: one stream per rank in distributed training
        np_rng = np.random.default_rng(np_seed if self._dist is None else [np_seed, self._dist.rank])
        total, n_tok, t0 = Running(), 0, time.perf_counter()
        for rows in self._steps(self._epoch_batches(rng)):
            if not self._keeps(rows):
                sched.step()  # every rank skips the same batch; the schedule stays on the global step count
                continue
            inputs, labels = self._batch(self._train_idx[self._part(rows)], np_rng)
            loss, k = self._synced(self._loss, inputs, labels)
            total.add(optimizer_step(opt, loss, clip_norm=cfg.max_grad_norm, parameters=model.parameters(),
                                     sync=False), k)
            sched.step()
            n_tok += k
        self.train_tokens_per_s = n_tok / max(time.perf_counter() - t0, 1e-9)
        stats = {"loss": total.value() / max(n_tok, 1), "lr": sched.get_last_lr()[0]}
        if len(self._val_idx):
            stats["val_loss"] = self.validation_nll()
            stats["val_ppl"] = math.exp(min(stats["val_loss"], 50.0))
        return stats

    def _epoch_batches(self, rng) -> list[np.ndarray]:
        """Minibatches (positions in the training split) drawn from ``rng``; with ``length_buckets``
        each run of 50 batches is sorted by record length before it is cut, and the batches shuffled."""
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
        counts = torch.as_tensor(self.code_counts, dtype=torch.float64)
        prior = torch.zeros(CODE_OFFSET + len(counts), dtype=torch.float64)
        prior[CODE_OFFSET:] = torch.log(counts.clamp_min(1) / counts.sum())
        return prior.float().to(device)

    def _plan(self, n: int, g):
        """Demographics, visit counts, codes per visit and first codes of ``n`` patients."""
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
