"""MedGAN: a GAN over the latent space of a pretrained autoencoder of flat patient records.

Paper: appendix F.1 (Choi et al., 2017). A linear autoencoder (embedding 128; codes through
tanh in binary mode, ReLU in count mode, as in the original) is pretrained on the patients x
codes matrix; then a residual generator (``generator_layers`` 128-wide Linear-BatchNorm layers
with skip connections: 3 in the ``paper`` preset, as the original's ``generator_size (128, 128)``
plus its always-added embedding-size layer) maps N(0, I) noise to latent codes, the decoder maps them to records, and a
discriminator (256, 128, 1) with minibatch averaging (each row is concatenated with the batch
mean) tells real from generated records. The decoder is fine-tuned with the generator, as in
the original.

Two data modes (a config field, so it travels through save/load and generation):

* ``binary``: data = ``binary_matrix`` (a code is in the record or not); sigmoid decoder, BCE
  reconstruction; generated probabilities are thresholded at 0.5 (``decoding="threshold"``) or
  drawn as Bernoulli variables (``"sample"``); the generator's last layer is tanh. Output: one
  visit per patient.
* ``count``: data = ``count_matrix`` (number of visits with each code); ReLU decoder, MSE
  reconstruction; outputs are rounded and clipped to non-negative integers (``"threshold"``) or
  drawn as Poisson counts of that mean (``"sample"``); the generator's last layer is ReLU.
  Output via ``from_count_matrix``: a code with count k appears in visits 0..k-1 (our documented count-mode representation, so visit structure is not modelled).

``generate`` redraws records with no code (further batches from the same seeded noise
generator, at most ``REDRAW_ROUNDS`` rounds) and logs the rejection rate.

Deviations:
    * From the paper: the D:G update ratio is not given; we keep the original's 2:1
      (``d_steps``; each D step uses a batch of its own permutation of train). The AE batch size
      and the adversarial Adam betas are not given; we use the original's 100 and (0.9, 0.999).
      Losses are summed over codes and averaged over patients (as the original's BCE; its
      count-mode MSE averages over codes too).
    * ``smoke``/``demo`` presets (CPU budgets of seconds/minutes, not the paper's) use AE lr
      1e-2, adversarial batch 32 (more, smaller steps) and 2 residual generator layers;
      ``paper`` is appendix F.1 with the original's 3 layers (the paper does not give the count).
    * From the original (``mp2893/medgan``): L2 regularisation is Adam weight decay 1e-4 (paper)
      instead of an explicit 0.001 L2 term; adversarial batch 128 (paper) instead of 1,000;
      no 3-digit code truncation; BatchNorm in PyTorch's parameterisation (momentum 0.01,
      eps 0.001 as in the original's TF defaults); records with no code are redrawn. The
      generator's BatchNorm uses batch statistics in D steps too (the original uses its moving
      averages there) and generation uses the moving averages without the original's burn-in.
      Minibatch averaging is on, as in the paper and in the released TF code (both versions we
      read concatenate ``[x_input, inputMean]`` before the first discriminator layer).
    * From the CorGAN codebase's PyTorch port (used by PyHealth/SynthEHRella): count mode is
      restored and D is updated twice per G step.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ehrlib.cohort import Cohort
from ehrlib.data.encode import Vocabulary, binary_matrix, count_matrix, from_binary_matrix, from_count_matrix
from ehrlib.models.base import GeneratorError
from ehrlib.models.fidelity import validation_cohort
from ehrlib.models.neural import (Phase, Rows, Running, TorchConfig, TorchGenerator, batches, draw_nonempty,
                                  optimizer_step, validation_split)

log = logging.getLogger("ehrlib.models")

DATA_MODES = ("binary", "count")
#: How a generated record is read off the decoder's output. ``threshold``: a code is present where its
#: probability is at least 0.5 (binary) or its rounded count at least 1 (count), the rule of the ports
#: the paper ran; ``sample``: each code drawn from that output (Bernoulli of the probability; Poisson of
#: the count), with the seeded generator that draws the noise.
DECODINGS = ("threshold", "sample")
REDRAW_ROUNDS = 20  # generate(): rounds of redrawing empty records before giving up
GEN_CHUNK = 8192  # generate(): records decoded per forward pass


@dataclass(frozen=True)
class PretrainedGANConfig(TorchConfig):
    """What MedGAN's and CorGAN's configs share: an autoencoder phase (``ae_epochs``, ``ae_lr``,
    ``ae_beta1/2``) then an adversarial phase (``gan_epochs``, ``batch_size``, ``lr``,
    ``beta1/2``) on one epoch counter; the subclasses declare the fields with their paper values.
    ``decoding`` (:data:`DECODINGS`) is how generation reads a record off the decoder's output."""

    decoding: str = "threshold"      # paper silent; the ports' 0.5 threshold (DECODINGS)

    def check(self) -> None:
        super().check()
        self._choice("decoding", DECODINGS)
        self._positive("ae_lr", "gan_epochs", "batch_size", "lr")
        self._non_negative("ae_epochs")
        self._unit_interval("ae_beta1", "ae_beta2", "beta1", "beta2")
        if self.batch_size < 2:
            raise GeneratorError(f"{type(self).__name__}.batch_size={self.batch_size!r}; expected >= 2 (BatchNorm)")

    @property
    def epochs_total(self) -> int:
        """Autoencoder epochs, then adversarial epochs, on one epoch counter (caps of the two phases)."""
        return int(self.ae_epochs) + int(self.gan_epochs)


class PretrainedGAN(TorchGenerator):
    """What MedGAN and CorGAN share: a flat records matrix with a seeded validation share of the
    patients held out, and two phases: the autoencoder (stopped on its validation loss) and the
    adversarial one (stopped on the fidelity check; :mod:`ehrlib.models.fidelity`)."""

    def _decode(self, out: torch.Tensor, generator: torch.Generator | None) -> np.ndarray:
        """Records (rows, float32) read off the decoder's output ``out`` by the config's ``decoding``:
        probabilities, or non-negative counts in MedGAN's count mode (``generator``: the seeded
        stream that draws them; unused by the threshold)."""
        out = out.detach().cpu().float()
        count = getattr(self.config, "data_mode", "binary") == "count"
        if self.config.decoding == "sample":
            drawn = torch.poisson(out.clamp_min(0), generator=generator) if count else \
                torch.bernoulli(out.clamp(0, 1), generator=generator)
        else:
            drawn = out.round().clamp_min(0) if count else (out >= 0.5).float()
        return drawn.numpy()

    def phases(self) -> list[Phase]:
        c = self.config
        return [Phase("autoencoder", int(c.ae_epochs), "val_loss", checks=False),
                Phase("adversarial", int(c.gan_epochs), "fidelity")]

    def _records(self, train: Cohort, encode) -> None:
        """``self.x`` (the fitted patients' rows, as :class:`Rows`) and ``self.x_val`` (the held-out
        ones) of the matrix ``encode(train, vocab)``, and ``self.validation``."""
        self.vocab = Vocabulary.from_cohorts(train)
        if len(self.vocab) == 0:
            raise GeneratorError(f"{self.name}: the training cohort has no codes (vocabulary of size 0)")
        x = encode(train, self.vocab).tocsr()
        train_idx, val_idx = validation_split(x.shape[0], self.config.val_fraction, self.config.seed)
        if len(val_idx):
            self.validation = validation_cohort(train, val_idx)
            self.x_val = Rows(x[val_idx])
            x = x[train_idx]
        else:
            self.x_val = None
        self.x = Rows(x)

    def _ae_epoch(self, rng, minimum: int) -> dict:
        """One autoencoder epoch (batches of ``ae_batch_size`` or ``batch_size``); ``val_loss`` on the
        held-out patients."""
        c = self.config
        size = getattr(c, "ae_batch_size", c.batch_size)
        total, count = Running(), 0
        for rows in self._steps(batches(self.x.n, size, rng)):
            if not self._keeps(rows, minimum):
                continue
            mine = self._part(rows)
            total.add(self.ae_step(self.x.dense(mine, self.device), sync=False), len(mine))
            count += len(mine)
        stats = {"loss": total.value() / max(count, 1), "phase": 0}
        if self.x_val is not None:
            stats["val_loss"] = self.ae_val_loss(size)
        return stats

    def ae_val_loss(self, size: int) -> float:
        """Mean reconstruction loss of the held-out patients (eval mode, no gradient)."""
        for m in self.modules.values():
            m.eval()
        total = 0.0
        with torch.no_grad():
            for rows in batches(self.x_val.n, size, None, shuffle=False):
                total += float(self.ae_loss(self.x_val.dense(rows, self.device))) * len(rows)
        for m in self.modules.values():
            m.train()
        return total / self.x_val.n


@dataclass(frozen=True)
class MedGANConfig(PretrainedGANConfig):
    """MedGAN hyperparameters; the defaults are appendix F.1 (``paper`` preset)."""

    data_mode: str = "binary"        # binary | count
    embedding_dim: int = 128         # autoencoder code size = noise size = generator width (paper)
    generator_layers: int = 3        # residual Linear-BatchNorm layers, each embedding_dim wide (original: 3)
    discriminator_dim1: int = 256    # discriminator hidden sizes (original: 256, 128, 1)
    discriminator_dim2: int = 128
    ae_epochs: int = 100             # autoencoder pretraining (paper)
    ae_batch_size: int = 100         # paper silent; original
    ae_lr: float = 1e-3
    ae_beta1: float = 0.9
    ae_beta2: float = 0.999
    ae_weight_decay: float = 1e-4
    gan_epochs: int = 1000           # adversarial epochs (paper)
    batch_size: int = 128            # adversarial batch (paper)
    lr: float = 1e-3
    beta1: float = 0.9               # paper silent; original (TF Adam defaults)
    beta2: float = 0.999
    weight_decay: float = 1e-4
    d_steps: int = 2                 # discriminator updates per generator update (original)

    def check(self) -> None:
        super().check()
        self._choice("data_mode", DATA_MODES)
        self._positive("embedding_dim", "generator_layers", "discriminator_dim1", "discriminator_dim2",
                       "ae_batch_size", "d_steps")
        self._non_negative("ae_weight_decay", "weight_decay")


class Decoder(nn.Module):
    """Linear decoder; ``forward`` gives probabilities (binary) or counts (count)."""

    def __init__(self, embedding_dim: int, vocab_size: int, data_mode: str):
        super().__init__()
        self.linear = nn.Linear(embedding_dim, vocab_size)
        self.data_mode = data_mode

    def raw(self, h):
        return self.linear(h)

    def forward(self, h):
        out = self.linear(h)
        return torch.sigmoid(out) if self.data_mode == "binary" else torch.relu(out)

class ResidualGenerator(nn.Module):
    """Noise -> latent code: Linear-BatchNorm-activation layers with skip connections."""

    def __init__(self, dim: int, n_layers: int, data_mode: str):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(dim, eps=1e-3, momentum=0.01) for _ in range(n_layers))
        self.last = torch.tanh if data_mode == "binary" else torch.relu

    def forward(self, z):
        h = z
        for i, (lin, bn) in enumerate(zip(self.linears, self.norms)):
            act = self.last if i == len(self.linears) - 1 else torch.relu
            h = act(bn(lin(h))) + h
        return h

class Discriminator(nn.Module):
    """Records -> real/fake logit, each row concatenated with the batch mean (minibatch averaging).

    The first layer of ``[x, mean(x)]`` is computed as ``x W_x + mean(x) W_m``: the batch mean is
    one row, so its half costs one vector-matrix product instead of a batch of them, forward and
    backward (``W_x`` and ``W_m`` are two parameters, not slices of one, whose backward would copy a
    full-size gradient per slice). They are initialised as the two halves of one
    ``Linear(2 * vocab_size, dim1)``, the original's layer: the same function and the same draws.
    """

    def __init__(self, vocab_size: int, dim1: int, dim2: int):
        super().__init__()
        first = nn.Linear(2 * vocab_size, dim1)  # drawn first, as the original's layer
        self.weight_x = nn.Parameter(first.weight.detach()[:, :vocab_size].clone())
        self.weight_m = nn.Parameter(first.weight.detach()[:, vocab_size:].clone())
        self.bias = nn.Parameter(first.bias.detach().clone())
        self.rest = nn.Sequential(nn.ReLU(), nn.Linear(dim1, dim2), nn.ReLU(), nn.Linear(dim2, 1))

    def forward(self, x):
        h = F.linear(x, self.weight_x, self.bias) + F.linear(x.mean(0, keepdim=True), self.weight_m)
        return self.rest(h).squeeze(1)


class MedGAN(PretrainedGAN):
    """MedGAN (binary or count mode) over flat patient records; see the module docstring."""

    name = "medgan"
    config_class = MedGANConfig
    min_shard_rows = 2  # BatchNorm in the generator
    batch_fields = ("batch_size", "ae_batch_size")
    # presets: ehrlib/profiles/<profile>.yaml, key models.medgan

    # ---------------------------------------------------------------- data
    def _prepare(self, train: Cohort) -> None:
        self._records(train, binary_matrix if self.config.data_mode == "binary" else count_matrix)

    def _extra_state(self) -> dict:
        return {"codes": list(self.vocab.codes)}

    def _set_extra_state(self, state: dict) -> None:
        self.vocab = Vocabulary(state["codes"])

    # ---------------------------------------------------------------- networks
    def build(self, vocab_size: int) -> dict:
        """The untrained networks for ``vocab_size`` codes: encoder, decoder, generator, discriminator."""
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size <= 0:
            raise GeneratorError(f"{self.name}: vocab_size={vocab_size!r}; expected a positive integer")
        c = self.config
        torch.manual_seed(c.seed)
        return {
            "encoder": nn.Sequential(nn.Linear(int(vocab_size), c.embedding_dim),
                                     nn.Tanh() if c.data_mode == "binary" else nn.ReLU()),
            "decoder": Decoder(c.embedding_dim, int(vocab_size), c.data_mode),
            "generator": ResidualGenerator(c.embedding_dim, c.generator_layers, c.data_mode),
            "discriminator": Discriminator(int(vocab_size), c.discriminator_dim1, c.discriminator_dim2),
        }

    def _build(self) -> dict:
        return self.build(len(self.vocab))

    def _optimizers(self) -> dict:
        c, m = self.config, self.modules
        return {
            "ae": torch.optim.Adam([*m["encoder"].parameters(), *m["decoder"].parameters()], lr=c.ae_lr,
                                   betas=(c.ae_beta1, c.ae_beta2), weight_decay=c.ae_weight_decay, fused=True),
            "g": torch.optim.Adam([*m["generator"].parameters(), *m["decoder"].parameters()], lr=c.lr,
                                  betas=(c.beta1, c.beta2), weight_decay=c.weight_decay, fused=True),
            "d": torch.optim.Adam(m["discriminator"].parameters(), lr=c.lr, betas=(c.beta1, c.beta2),
                                  weight_decay=c.weight_decay, fused=True),
        }

    # ---------------------------------------------------------------- losses and steps
    def ae_loss(self, x):
        """Reconstruction loss of a batch: BCE (binary) or squared error (count), summed over codes."""
        raw = self.modules["decoder"].raw(self.modules["encoder"](x))
        if self.config.data_mode == "binary":
            return F.binary_cross_entropy_with_logits(raw, x, reduction="none").sum(1).mean()
        return ((F.relu(raw) - x) ** 2).sum(1).mean()

    def ae_step(self, x, sync: bool = True):
        return optimizer_step(self.optimizers["ae"], self._synced(self.ae_loss, x), sync=sync)

    def fake(self, z):
        """Decoded records from noise ``z``."""
        return self.modules["decoder"](self.modules["generator"](z))

    def d_loss(self, x, z):
        disc = self.modules["discriminator"]
        with torch.no_grad():
            fake = self.fake(z)
        real_logit, fake_logit = disc(x), disc(fake)
        return (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))

    def g_loss(self, z):
        logit = self.modules["discriminator"](self.fake(z))
        return F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))  # -log D(G(z))

    def d_step(self, x, z, sync: bool = True):
        return optimizer_step(self.optimizers["d"], self._synced(self.d_loss, x, z), sync=sync)

    def g_step(self, z, sync: bool = True):
        return optimizer_step(self.optimizers["g"], self._synced(self.g_loss, z), sync=sync)

    def _noise(self, k: int, rng):
        """Noise for a global batch of ``k`` rows, drawn whole from ``rng``; this rank's rows of it."""
        return self._part(torch.randn(k, self.config.embedding_dim, generator=rng)).to(self.device)

    def _train_epoch(self, epoch: int, rng) -> dict:
        c, n = self.config, self.x.n
        if self.phase_name == "autoencoder":
            return self._ae_epoch(rng, 1)
        self.modules["encoder"].eval()
        perms = [[b for b in batches(n, c.batch_size, rng) if self._keeps(b, 2)] for _ in range(c.d_steps)]
        d_total, g_total, steps = Running(), Running(), len(perms[0])
        for i in self._steps(range(steps)):
            for perm in perms:
                x = self.x.dense(self._part(perm[i]), self.device)
                d_total.add(self.d_step(x, self._noise(len(perm[i]), rng), sync=False))
            g_total.add(self.g_step(self._noise(len(perms[0][i]), rng), sync=False))
        steps = max(steps, 1)
        return {"loss": g_total.value() / steps, "d_loss": d_total.value() / (steps * c.d_steps), "phase": 1}

    # ---------------------------------------------------------------- generation
    def _generate(self, n: int, seed: int) -> Cohort:
        for m in self.modules.values():
            m.eval()
        binary = self.config.data_mode == "binary"

        def sample(k, g):
            with torch.no_grad():
                out = self.fake(torch.randn(k, self.config.embedding_dim, generator=g).to(self.device))
            return self._decode(out, g)

        rows, self.last_drawn = draw_nonempty(n, sample, lambda rows: (rows > 0).any(axis=1), name=self.name,
                                generator=torch.Generator().manual_seed(int(seed)), batch_size=GEN_CHUNK,
                                rounds=REDRAW_ROUNDS)
        return from_binary_matrix(rows, self.vocab) if binary else from_count_matrix(rows, self.vocab)
