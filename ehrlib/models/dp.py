"""Differentially private generators: DP-SGD MedGAN and GPT (Opacus), and DP marginals.

Paper: not in the benchmarked paper (its generators carry no formal guarantee). DP-SGD is Abadi et
al. (2016), "Deep Learning with Differential Privacy": per-sample gradient clipping at
``max_grad_norm``, Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` on the
sum, Poisson sampling of each batch (every record in with probability ``q = batch_size / n``).
Opacus (Yousefpongy et al. 2021) computes the per-sample gradients (``GradSampleModule``), clips and
noises them (``DPOptimizer``), and its RDP accountant (Mironov 2017) gives ε at the profile's δ;
the noise multiplier is the smallest that the accountant says reaches the target ε over every
noisy step of the fit (the composition of all phases that touch real records). Neighbouring
datasets differ by adding or removing one patient.

What is private, per model (the rest is post-processing of private outputs, which costs nothing
more; Dwork & Roth 2014, Proposition 2.1):

* ``dp_medgan``: the autoencoder phase (encoder and decoder see real records: DP-SGD) and the
  discriminator's updates (it sees real records: DP-SGD on its per-record loss, the generated
  half of each batch clipped alike). The generator and the decoder's fine-tuning in the generator
  step see only the discriminator's (private) output, so they are post-processing. The
  discriminator has no minibatch averaging (a record's gradient would depend on the other records
  of its batch, so no per-record bound holds): a deviation from MedGAN (Choi et al. 2017).
* ``dp_gpt``: every parameter of the GPT-2 baseline (the only network; DP-SGD on each record's
  summed next-token loss); sampling is post-processing.
* ``dp_marginals``: per-code patient counts, each patient's record bounded to ``max_codes``
  codes (a seeded subset of longer records), with Laplace noise of scale ``max_codes / ε_counts``
  (the counts' L1 sensitivity is ``max_codes``), and the patient count with Laplace noise of scale
  ``1 / ε_n``; ε = ε_counts + ε_n exactly (pure ε-DP, δ = 0; Dwork et al. 2006). Records are
  drawn code by code, independently, from the noisy prevalences (post-processing).

The vocabulary: the non-private models build theirs from the training codes, which reveals every
code that some patient has (a rare code points at one patient). The DP models take a public
vocabulary instead (:func:`public_vocabulary`: the ``public_codes`` most prevalent codes of the
package's public code profile, aggregates of open sources); training codes outside it are dropped.
Early stopping and best-epoch selection read held-out real patients, which DP-SGD does not
account for, so the DP models train a fixed number of epochs with no validation split.

Deviations: DP-SGD trains with plain per-record batches (no length buckets, no gradient
accumulation in chunks, no gradient-norm clip of the whole batch: per-sample clipping replaces it).
The ``noise_multiplier`` and ``clip`` fields exist for the audit's negative controls
(:mod:`ehrlib.metrics.dp_audit`): ``noise_multiplier=0`` trains without noise (ε = ∞) and
``clip=False`` without clipping; neither is a private model.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort
from ehrlib.data.encode import Vocabulary
from ehrlib.errors import GeneratorError
from ehrlib.models.base import Config, FitOptions, Generator, check_seed, reading
from ehrlib.models.gpt import GPT, GPTConfig
from ehrlib.models.medgan import MedGAN, MedGANConfig
from ehrlib.models.neural import Phase, Running, epoch_seed, to_device

log = logging.getLogger("ehrlib.models")

#: The accountant of every DP-SGD model here (Opacus' name).
ACCOUNTANT = "rdp"
#: Clipping norm used when ``clip`` is off (no per-sample gradient is this large: clipping never acts).
NO_CLIP = 1e12


@functools.lru_cache(maxsize=8)
def _public_vocabulary(n_codes: int) -> tuple:
    return tuple(public_vocabulary_uncached(n_codes))


def public_vocabulary(n_codes: int) -> list[str]:
    """The ``n_codes`` most prevalent codes of the package's public code profile (see
    :func:`public_vocabulary_uncached`), cached per size."""
    return list(_public_vocabulary(int(n_codes)))


def public_vocabulary_uncached(n_codes: int) -> list[str]:
    """The ``n_codes`` most prevalent codes of the package's public code profile (pooled
    prevalence of open sources; ties by code): a vocabulary that depends on no training record."""
    from ehrlib.data.codeprofile import load_code_profile

    profile = load_code_profile()
    order = np.lexsort((np.asarray(profile.codes, dtype=str), -np.asarray(profile.pooled, dtype=float)))
    return sorted(str(c) for c in np.asarray(profile.codes)[order[:int(n_codes)]])


def restricted(train: Cohort, vocab_codes) -> Cohort:
    """``train`` with the codes outside ``vocab_codes`` dropped (and the records left empty)."""
    keep = set(vocab_codes)
    ev = train.events[train.events[CODE].isin(keep)]
    dropped = len(train.events) - len(ev)
    if dropped:
        log.info("dp: %d of %d training events have a code outside the public vocabulary and are dropped",
                 dropped, len(train.events))
    if ev.empty:
        raise GeneratorError("dp: no training code is in the public vocabulary; raise public_codes")
    return Cohort.from_events(ev[[SUBJECT, VISIT, CODE]].reset_index(drop=True), source="train (public codes)")


def _epsilon(sigma: float, delta: float, parts) -> float:
    """ε of Gaussian noise ``sigma`` over ``parts`` by Opacus' RDP accountant (its analysis and
    default orders), phases with the same sampling rate grouped (RDP adds up over steps)."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    steps: dict[float, int] = {}
    for q, t in parts:
        if t > 0:
            steps[float(q)] = steps.get(float(q), 0) + int(t)
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = sum(compute_rdp(q=q, noise_multiplier=float(sigma), steps=t, orders=orders) for q, t in steps.items())
    return float(get_privacy_spent(orders=orders, rdp=rdp, delta=float(delta))[0])


@functools.lru_cache(maxsize=256)
def _calibrated(epsilon: float, delta: float, parts: tuple) -> float:
    lo, hi = 0.05, 1.0
    while _epsilon(hi, delta, parts) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise GeneratorError(f"dp: no noise multiplier reaches epsilon={epsilon} at delta={delta}")
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        if _epsilon(mid, delta, parts) > epsilon:
            lo = mid
        else:
            hi = mid
    return hi


def noise_multiplier_for(epsilon: float, delta: float, parts) -> float:
    """The smallest noise multiplier (to 0.1%) for which Opacus' RDP accountant gives at most
    ``epsilon`` at ``delta`` over ``parts``, a list of ``(sample_rate, steps)`` phases noised alike."""
    return _calibrated(float(epsilon), float(delta), tuple((float(q), int(t)) for q, t in parts))


def spent_epsilon(noise_multiplier: float, delta: float, parts) -> float:
    """ε of a fit by Opacus' RDP accountant (``inf`` without noise)."""
    if noise_multiplier <= 0:
        return float("inf")
    return _epsilon(noise_multiplier, delta, parts)


def poisson_rows(n: int, rate: float, rng: torch.Generator) -> torch.Tensor:
    """Indices of one Poisson-sampled batch: each of ``n`` rows in with probability ``rate``."""
    return torch.nonzero(torch.rand(n, generator=rng) < rate).squeeze(1)


def _noise_only_step(optimizer) -> None:
    """A DP step on an empty Poisson batch: the noise alone (skipping it would reveal the emptiness)."""
    for p in optimizer.params:
        p.summed_grad = torch.zeros_like(p)
    optimizer.add_noise()
    optimizer.scale_grad()
    optimizer.original_optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _check_dp(cfg) -> None:
    name = type(cfg).__name__
    if not (isinstance(cfg.epsilon, (int, float)) and cfg.epsilon > 0):
        raise GeneratorError(f"{name}.epsilon={cfg.epsilon!r}; expected a positive number")
    if not (isinstance(cfg.delta, (int, float)) and 0 < cfg.delta < 1):
        raise GeneratorError(f"{name}.delta={cfg.delta!r}; expected a number in (0, 1), below 1/n")
    if cfg.noise_multiplier < 0 and cfg.noise_multiplier != -1:
        raise GeneratorError(f"{name}.noise_multiplier={cfg.noise_multiplier!r}; expected -1 (calibrated to "
                             "epsilon) or a number >= 0")
    if cfg.max_grad_norm <= 0:
        raise GeneratorError(f"{name}.max_grad_norm={cfg.max_grad_norm!r}; expected a positive number")
    if cfg.public_codes < 1:
        raise GeneratorError(f"{name}.public_codes={cfg.public_codes!r}; expected a positive integer")
    if cfg.val_fraction or cfg.patience or cfg.check_every:
        raise GeneratorError(f"{name}: val_fraction, patience and check_every must be 0 (selection on held-out "
                             "real patients is not accounted for by DP-SGD)")


class DPSGDMixin:
    """What DP-MedGAN and DP-GPT share: the public vocabulary, the noise calibration, Opacus'
    wrappers, the privacy record (``privacy``) saved with the model."""

    privacy: dict

    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "privacy": getattr(self, "privacy", None)}

    def _set_extra_state(self, state: dict) -> None:
        super()._set_extra_state(state)
        self.privacy = state.get("privacy")

    def _calibrate(self, n: int, parts) -> float:
        c = self.config
        if c.delta >= 1.0 / n:
            raise GeneratorError(f"{self.name}: delta={c.delta} is not below 1/n = 1/{n}; choose a smaller delta")
        sigma = (noise_multiplier_for(c.epsilon, c.delta, parts) if c.noise_multiplier == -1
                 else float(c.noise_multiplier))
        self.privacy = {"epsilon": spent_epsilon(sigma, c.delta, parts), "target_epsilon": float(c.epsilon),
                        "delta": float(c.delta), "noise_multiplier": sigma, "accountant": ACCOUNTANT,
                        "max_grad_norm": float(c.max_grad_norm) if c.clip else None, "n": int(n),
                        "phases": [{"sample_rate": float(q), "steps": int(t)} for q, t in parts]}
        log.info("%s: noise multiplier %.4g for epsilon %.3g at delta %.2g (%s accountant, %s)", self.name, sigma,
                 self.privacy["epsilon"], c.delta, ACCOUNTANT, parts)
        return sigma

    def _dp_optimizer(self, optimizer, sigma: float, expected: int):
        from opacus.optimizers import DPOptimizer

        c = self.config
        return DPOptimizer(optimizer, noise_multiplier=sigma, max_grad_norm=c.max_grad_norm if c.clip else NO_CLIP,
                           expected_batch_size=max(int(expected), 1), loss_reduction="mean",
                           generator=torch.Generator().manual_seed(0))

    def _reseed_noise(self, epoch: int) -> None:
        for i, opt in enumerate(self._dp_opts.values()):
            opt.generator = torch.Generator(device=self.device).manual_seed(epoch_seed(self.config.seed, epoch) + 11 + i)

    def _check_world(self) -> None:
        if self._dist is not None:
            raise GeneratorError(f"{self.name}: DP-SGD trains in one process (the accountant counts one sampler)")


# ====================================================================== DP-MedGAN
@dataclass(frozen=True)
class DPMedGANConfig(MedGANConfig):
    """MedGAN with DP-SGD on the autoencoder and the discriminator (module docstring)."""

    epsilon: float = 8.0           # target ε of the whole fit
    delta: float = 1e-5            # δ (must be below 1/n)
    noise_multiplier: float = -1.0  # -1: calibrated to epsilon; >= 0: as given (0: no noise; not private)
    max_grad_norm: float = 1.0     # per-sample clipping norm
    clip: bool = True              # False: no clipping (a negative control; not private)
    public_codes: int = 1000       # the public vocabulary's size
    val_fraction: float = 0.0
    d_steps: int = 1               # discriminator updates per generator update

    def check(self) -> None:
        super().check()
        _check_dp(self)


class PlainDiscriminator(nn.Module):
    """Records -> real/fake logit: the MedGAN discriminator's layers without minibatch averaging."""

    def __init__(self, vocab_size: int, dim1: int, dim2: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(vocab_size, dim1), nn.ReLU(), nn.Linear(dim1, dim2), nn.ReLU(),
                                 nn.Linear(dim2, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)


class _AutoEncoder(nn.Module):
    """Encoder then decoder's raw output: the one module DP-SGD wraps for the autoencoder phase."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x):
        return self.decoder.raw(self.encoder(x))


class DPMedGAN(DPSGDMixin, MedGAN):
    """MedGAN trained with DP-SGD (Opacus) on every part that sees real records."""

    name = "dp_medgan"
    config_class = DPMedGANConfig
    allows_bf16 = False

    def _prepare(self, train: Cohort) -> None:
        codes = public_vocabulary(self.config.public_codes)
        self._records(restricted(train, codes), self._encoder_for(codes))
        c, n = self.config, self.x.n
        q_ae, q_d = min(c.ae_batch_size / n, 1.0), min(c.batch_size / n, 1.0)
        steps = lambda q: int(math.ceil(1.0 / q))  # noqa: E731  (steps per epoch: one pass in expectation)
        self._plan = {"ae": (q_ae, steps(q_ae)), "d": (q_d, steps(q_d))}
        self._sigma = self._calibrate(n, [(q_ae, c.ae_epochs * steps(q_ae)),
                                          (q_d, c.gan_epochs * steps(q_d) * c.d_steps)])

    def _encoder_for(self, codes):
        from ehrlib.data.encode import binary_matrix, count_matrix

        vocab = Vocabulary(codes)
        base = binary_matrix if self.config.data_mode == "binary" else count_matrix
        return lambda cohort, _vocab: base(cohort, vocab)

    def _records(self, train, encode):
        super()._records(train, encode)
        self.vocab = Vocabulary(public_vocabulary(self.config.public_codes))

    def build(self, vocab_size: int) -> dict:
        out = super().build(vocab_size)
        c = self.config
        torch.manual_seed(c.seed + 1)
        out["discriminator"] = PlainDiscriminator(int(vocab_size), c.discriminator_dim1, c.discriminator_dim2)
        return out

    def _optimizers(self) -> dict:
        from opacus import GradSampleModule

        opts = super()._optimizers()
        m, c = self.modules, self.config
        self._ae_gsm = GradSampleModule(_AutoEncoder(m["encoder"], m["decoder"]), loss_reduction="mean")
        self._d_gsm = GradSampleModule(m["discriminator"], loss_reduction="mean")
        opts["ae"] = self._dp_optimizer(opts["ae"], self._sigma, self._plan["ae"][0] * self.x.n)
        # each D step's batch: the real rows plus as many generated rows (the expected 2 q n)
        opts["d"] = self._dp_optimizer(opts["d"], self._sigma, 2 * self._plan["d"][0] * self.x.n)
        self._dp_opts = {"ae": opts["ae"], "d": opts["d"]}
        return opts

    def ae_loss(self, x):
        if getattr(self, "_ae_gsm", None) is None or not torch.is_grad_enabled():
            return super().ae_loss(x)
        raw = self._ae_gsm(x)
        if self.config.data_mode == "binary":
            return F.binary_cross_entropy_with_logits(raw, x, reduction="none").sum(1).mean()
        return ((F.relu(raw) - x) ** 2).sum(1).mean()

    def _train_epoch(self, epoch: int, rng) -> dict:
        self._reseed_noise(epoch)
        c, n = self.config, self.x.n
        if self.phase_name == "autoencoder":
            self._ae_gsm.enable_hooks()
            self._d_gsm.disable_hooks()
            q, steps = self._plan["ae"]
            total, count = Running(), 0
            for _ in self._steps(range(steps)):
                rows = poisson_rows(n, q, rng)
                opt = self.optimizers["ae"]
                if len(rows) == 0:
                    _noise_only_step(opt)
                    continue
                opt.zero_grad(set_to_none=True)
                loss = self.ae_loss(self.x.dense(rows, self.device))
                loss.backward()
                opt.step()
                total.add(loss.detach(), len(rows))
                count += len(rows)
            return {"loss": total.value() / max(count, 1), "phase": 0}
        self._ae_gsm.disable_hooks()
        self.modules["encoder"].eval()
        q, steps = self._plan["d"]
        d_total, g_total = Running(), Running()
        batch = max(int(round(q * n)), 2)
        for _ in self._steps(range(steps)):
            for _ in range(c.d_steps):
                rows = poisson_rows(n, q, rng)
                opt = self.optimizers["d"]
                if len(rows) == 0:
                    _noise_only_step(opt)
                    continue
                self._d_gsm.enable_hooks()
                opt.zero_grad(set_to_none=True)
                x = self.x.dense(rows, self.device)
                z = torch.randn(max(len(rows), 2), c.embedding_dim, generator=rng).to(self.device)
                with torch.no_grad():
                    fake = self.fake(z)
                logits = self._d_gsm(torch.cat([x, fake]))
                target = torch.cat([torch.ones(len(x)), torch.zeros(len(fake))]).to(self.device)
                loss = F.binary_cross_entropy_with_logits(logits, target)
                loss.backward()
                opt.step()
                d_total.add(loss.detach())
            self._d_gsm.disable_hooks()  # the generator step reads D: no per-sample gradients, no privacy cost
            z = torch.randn(batch, c.embedding_dim, generator=rng).to(self.device)
            g_opt = self.optimizers["g"]
            g_opt.zero_grad(set_to_none=True)
            logit = self.modules["discriminator"](self.fake(z))
            loss = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
            loss.backward()
            g_opt.step()
            self.modules["discriminator"].zero_grad(set_to_none=True)
            g_total.add(loss.detach())
        return {"loss": g_total.value() / steps, "d_loss": d_total.value() / (steps * c.d_steps), "phase": 1}

    def canary_scores(self, canaries: Cohort) -> np.ndarray:
        """The audit's white-box attack: minus each canary's reconstruction loss (higher = member)."""
        from ehrlib.data.encode import binary_matrix, count_matrix

        base = binary_matrix if self.config.data_mode == "binary" else count_matrix
        x = torch.as_tensor(base(restricted(canaries, self.vocab.codes), self.vocab).toarray(), dtype=torch.float32)
        for m in self.modules.values():
            m.eval()
        with torch.no_grad():
            raw = self.modules["decoder"].raw(self.modules["encoder"](x.to(self.device)))
            if self.config.data_mode == "binary":
                loss = F.binary_cross_entropy_with_logits(raw, x.to(self.device), reduction="none").sum(1)
            else:
                loss = ((F.relu(raw) - x.to(self.device)) ** 2).sum(1)
        return -loss.cpu().numpy().astype(float)


# ====================================================================== DP-GPT
@dataclass(frozen=True)
class DPGPTConfig(GPTConfig):
    """The GPT-2 baseline with DP-SGD on all its parameters (module docstring)."""

    epsilon: float = 8.0
    delta: float = 1e-5
    noise_multiplier: float = -1.0
    max_grad_norm: float = 1.0
    clip: bool = True
    public_codes: int = 1000
    val_fraction: float = 0.0
    dropout: float = 0.0

    def check(self) -> None:
        super().check()
        _check_dp(self)


class DPGPT(DPSGDMixin, GPT):
    """The GPT-2 baseline trained with DP-SGD (Opacus per-sample gradients of GPT-2's layers)."""

    name = "dp_gpt"
    config_class = DPGPTConfig
    allows_bf16 = False

    def _prepare(self, train: Cohort) -> None:
        codes = public_vocabulary(self.config.public_codes)
        super()._prepare(restricted(train, codes))
        self.vocab = Vocabulary(codes)
        from ehrlib.models.gpt import build_tokenizer, encode

        # re-encode with the public vocabulary's tokenizer (the training codes are a subset of it)
        self.tokenizer = build_tokenizer(self.vocab.codes)
        seqs = encode(self.tokenizer, restricted(train, codes))
        for i, s in enumerate(seqs):
            self._ids[i, :len(s)] = torch.from_numpy(s)
        n = len(self._train_idx)
        q = min(self.config.batch_size / n, 1.0)
        self._plan = (q, int(math.ceil(1.0 / q)))
        self._steps_per_epoch = self._plan[1]
        self.context = int(self.config.max_positions)  # public, not the longest training record
        self._sigma = self._calibrate(n, [(q, self.config.epochs * self._plan[1])])

    def _optimizers(self) -> dict:
        from opacus import GradSampleModule

        opts = super()._optimizers()
        self._gsm = GradSampleModule(self.modules["gpt2"], loss_reduction="mean", strict=False)
        opts["adamw"] = self._dp_optimizer(opts["adamw"], self._sigma, self._plan[0] * len(self._train_idx))
        self._dp_opts = {"adamw": opts["adamw"]}
        return opts

    def _schedulers(self) -> dict:
        total = max(1, self.config.epochs * self._plan[1])
        return {"cosine": torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizers["adamw"].original_optimizer,
                                                                      T_max=total, eta_min=0.0)}

    def _record_losses(self, rows, model):
        """Each record's summed next-token loss (a vector over ``rows``; padding masked out)."""
        ids, mask, labels = self._tensors(rows)
        # positions per row (GPT-2 would broadcast one row of them: no per-record gradient of wpe)
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).repeat(ids.shape[0], 1)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, :-1]
        target = labels[:, 1:]
        tok = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none",
                              ignore_index=-100).view(target.shape)
        return tok.sum(1), (target != -100).sum(1)

    def _train_epoch(self, epoch: int, rng) -> dict:
        self._reseed_noise(epoch)
        opt, sched = self.optimizers["adamw"], self.schedulers["cosine"]
        q, steps = self._plan
        total, tokens = Running(), 0
        for _ in self._steps(range(steps)):
            rows = self._train_idx[poisson_rows(len(self._train_idx), q, rng)]
            if len(rows) == 0:
                _noise_only_step(opt)
                sched.step()
                continue
            opt.zero_grad(set_to_none=True)
            per_record, n_tok = self._record_losses(rows, self._gsm)
            per_record.mean().backward()
            opt.step()
            sched.step()
            total.add(per_record.detach().sum())
            tokens += int(n_tok.sum())
        return {"loss": total.value() / max(tokens, 1), "tokens": float(tokens), "lr": sched.get_last_lr()[0]}

    def canary_scores(self, canaries: Cohort) -> np.ndarray:
        """The audit's white-box attack: minus each canary's summed next-token loss (higher = member)."""
        from ehrlib.models.gpt import encode

        model = self.modules["gpt2"].eval()
        seqs = encode(self.tokenizer, canaries)
        out = []
        with torch.no_grad():
            for s in seqs:
                ids = to_device(torch.from_numpy(s).unsqueeze(0), self.device)
                logits = model(input_ids=ids).logits[0, :-1]
                out.append(-float(F.cross_entropy(logits.float(), ids[0, 1:], reduction="sum")))
        return np.asarray(out, dtype=float)


# ====================================================================== DP marginals
@dataclass(frozen=True)
class DPMarginalsConfig(Config):
    """DP marginals: ``epsilon`` (pure ε-DP; ``inf``: no noise, a negative control), ``max_codes``
    per patient, ``count_share`` of ε on the per-code counts (the rest on the patient count)."""

    epsilon: float = 1.0
    max_codes: int = 20
    count_share: float = 0.9
    public_codes: int = 1000
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.epsilon, (int, float)) and self.epsilon > 0):
            raise GeneratorError(f"DPMarginalsConfig.epsilon={self.epsilon!r}; expected a positive number (inf: "
                                 "no noise)")
        if not isinstance(self.max_codes, int) or self.max_codes < 1:
            raise GeneratorError(f"DPMarginalsConfig.max_codes={self.max_codes!r}; expected a positive integer")
        if not 0 < self.count_share < 1:
            raise GeneratorError(f"DPMarginalsConfig.count_share={self.count_share!r}; expected a number in (0, 1)")
        check_seed("dp_marginals", self.seed, label="DPMarginalsConfig.seed")


class DPMarginals(Generator):
    """Independent codes drawn from Laplace-noised per-code prevalences (module docstring); one
    visit per patient."""

    name = "dp_marginals"
    config_class = DPMarginalsConfig

    def __init__(self, config: DPMarginalsConfig | None = None, **fields):
        super().__init__(config if config is not None else DPMarginalsConfig(**fields))

    def _fit(self, train: Cohort, options: FitOptions) -> None:
        c = self.config
        codes = public_vocabulary(c.public_codes)
        vocab = Vocabulary(codes)
        ev = train.events[[SUBJECT, CODE]].drop_duplicates()
        ev = ev[ev[CODE].isin(set(codes))]
        # bound each patient to max_codes codes: a seeded random subset of longer records
        key = np.random.default_rng([c.seed, 0xB0]).random(len(ev))
        ev = ev.assign(_k=key).sort_values([SUBJECT, "_k"])
        ev = ev[ev.groupby(SUBJECT, sort=False).cumcount().to_numpy() < c.max_codes]
        counts = np.bincount(vocab.index(ev[CODE].to_numpy()), minlength=len(vocab)).astype(float)
        n = float(train.n_patients)
        rng = np.random.default_rng([c.seed, 0x1A])
        if math.isinf(c.epsilon):
            noisy, noisy_n = counts, n
        else:
            eps_counts, eps_n = c.epsilon * c.count_share, c.epsilon * (1 - c.count_share)
            noisy = counts + rng.laplace(0.0, c.max_codes / eps_counts, size=len(counts))
            noisy_n = n + rng.laplace(0.0, 1.0 / eps_n)
        self.codes = np.asarray(vocab.codes, dtype=object)
        self.prevalence = noisy / max(noisy_n, 1.0)  # the released values (unclipped; clipped to draw)
        self.privacy = {"epsilon": float(c.epsilon), "delta": 0.0, "mechanism": "laplace",
                        "l1_sensitivity_counts": int(c.max_codes), "n": int(n)}

    def _generate(self, n: int, seed: int) -> Cohort:
        rng = np.random.default_rng(seed)
        p = np.clip(self.prevalence, 0.0, 1.0)
        if not (p > 0).any():
            raise GeneratorError("dp_marginals: every noisy prevalence is 0; nothing to draw (raise epsilon)")
        rows, have = [], 0
        while have < n:
            draw = rng.random((min(4096, 2 * (n - have) + 8), len(p))) < p
            draw = draw[draw.any(axis=1)][: n - have]  # empty records redrawn
            rows.append(draw)
            have += len(draw)
        x = np.concatenate(rows)
        r, col = np.nonzero(x)
        return Cohort.from_events(pd.DataFrame({SUBJECT: r, VISIT: 0, CODE: self.codes[col]}))

    def canary_scores(self, canaries: Cohort) -> np.ndarray:
        """The audit's attack: the sum of the released (noisy) prevalences of each canary's codes
        (higher = member: an included canary adds one patient to each of its codes' counts)."""
        vocab = Vocabulary(self.codes)
        ev = canaries.events
        idx = vocab.index(ev[CODE].to_numpy(), strict=False)
        p = np.where(idx >= 0, self.prevalence[np.maximum(idx, 0)], 0.0)
        score = pd.Series(p).groupby(ev[SUBJECT].to_numpy(), sort=False).sum()
        return score.reindex(canaries.subject_ids).to_numpy(dtype=float)

    def _save_state(self, d):
        import json

        np.savez(d / "dp_marginals.npz", codes=self.codes.astype(str), prevalence=self.prevalence)
        (d / "privacy.json").write_text(json.dumps(self.privacy))

    def _load_state(self, d):
        import json

        with reading(d, "dp_marginals.npz", "the noisy prevalences") as path:
            with np.load(path, allow_pickle=False) as z:
                self.codes, self.prevalence = z["codes"].astype(object), z["prevalence"]
        with reading(d, "privacy.json", "the privacy record") as path:
            self.privacy = json.loads(path.read_text())


#: The DP generators and their non-private counterparts (the ε = ∞ row of the trade-off figure).
BASELINE = {"dp_medgan": "medgan", "dp_gpt": "gpt", "dp_marginals": "marginals"}

__all__ = ["ACCOUNTANT", "BASELINE", "DPGPT", "DPGPTConfig", "DPMarginals", "DPMarginalsConfig", "DPMedGAN",
           "DPMedGANConfig", "noise_multiplier_for", "public_vocabulary", "restricted", "spent_epsilon"]
