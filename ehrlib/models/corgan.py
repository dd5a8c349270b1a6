"""CorGAN: a WGAN-GP whose generator decodes through a pretrained 1-D convolutional autoencoder.

Paper: appendix F.2 (Torfi and Fox, 2020, extended to 8 layers). A binary patients x codes
record (length V) is read as a 1-channel signal. The encoder has eight Conv1d layers
(LeakyReLU(0.2), last Tanh) down to length 1; the decoder mirrors them with eight
ConvTranspose1d layers (ReLU, last Sigmoid) back to exactly V. The autoencoder is pretrained
with BCE; then a generator (Linear 128->256->128->bottleneck, LeakyReLU(0.2), final Tanh)
maps N(0, I) noise to the bottleneck, the decoder turns it into a record, and a critic of four
Conv1d layers scores records; trained as WGAN-GP (lambda = 10, 5 critic steps per generator
step). Generated probabilities are thresholded at 0.5 (``decoding="threshold"``) or drawn as
Bernoulli variables (``"sample"``); output is one visit per patient.

Length pathway (:func:`corgan_pathway`): encoder layer i (1..7) has stride
``STRIDES[i] = 2, 2, 3, 3, 3, 3, 5`` and the smallest kernel ``k >= 5`` with
``(L_in - k) % stride == 0``, i.e. ``L_out = (L_in - 5) // stride + 1`` and
``k = L_in - stride * (L_out - 1)`` (so 5 <= k < 5 + stride); layer 8 has a kernel equal to its
whole input length (stride 1) and lands on length 1. Each ConvTranspose1d uses the same kernel
and stride, and since ``(L_in - k)`` is divisible by the stride it returns exactly to ``L_in``.
For V = 6955 this is the paper's 6955 -> 3476 -> 1736 -> 578 -> 192 -> 63 -> 20 -> 4 -> 1
(kernels 5, 6, 5, 5, 6, 6, 5, 4). Any V >= 1 gets an exact pathway with no pooling, padding or
cropping: a layer whose input is shorter than 5 becomes a stride-1, kernel-1 (pointwise) layer,
so tiny vocabularies keep their length until layer 8. Large V (beyond ~20,000) gives layer 8 a
long kernel (about V / 1620).

Channels (the paper gives none): encoder 1 -> c, 2c, 4c, ... doubling per layer, capped at
``bottleneck``, with the 8th layer giving ``bottleneck`` channels at length 1 (c = 4,
bottleneck = 128: 4, 8, 16, 32, 64, 128, 128, 128, as the original's 4..128 doubling); the
decoder mirrors them. Critic: the first three encoder kernels/strides with channels 1 -> 16 ->
32 -> 64 (LeakyReLU(0.2), no normalisation, as WGAN-GP requires) and a fourth Conv1d whose kernel
spans the remaining length, giving one score.

Deviations:
    * From the paper: the generator's output layer is ``128 -> bottleneck`` (128 channels at
      length 1), our reading of the table's "128 -> 1" (a scalar latent cannot carry a record);
      BatchNorm after the hidden encoder/decoder layers (as in the original; the paper lists
      activations only); channel counts and the critic's layout are ours (paper silent);
      adversarial Adam betas (0.5, 0.9) (paper silent; its AE row and Gulrajani et al.);
      the decoder is fine-tuned with the generator at ``decoder_lr`` = 1e-4 (the original does
      this; paper silent); the AE batch size is the adversarial batch size (paper silent).
    * ``smoke``/``demo`` presets (CPU budgets) use AE lr 1e-2, batch 32 and adversarial lr 3e-4;
      ``paper`` is appendix F.2.
    * From the original (``astorfi/cor-gan``): 8 layers and WGAN-GP instead of 6 layers with
      weight clipping (as the paper); Xavier-uniform init of every conv/linear weight (paper;
      the original uses N(0, 0.02) for convs); BCE summed over codes and averaged over patients
      (as the original); seeded; records with no code are redrawn at generation.
    * From PyHealth's port: no adaptive pooling (it makes neighbouring codes share values).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ehrlib.cohort import Cohort
from ehrlib.data.encode import Vocabulary, binary_matrix, from_binary_matrix
from ehrlib.models.base import GeneratorError
from ehrlib.models.medgan import GEN_CHUNK, REDRAW_ROUNDS, PretrainedGAN, PretrainedGANConfig
from ehrlib.models.neural import Running, batches, draw_nonempty, optimizer_step

STRIDES = (2, 2, 3, 3, 3, 3, 5)  # encoder layers 1..7; layer 8 spans its whole input
MIN_KERNEL = 5
N_LAYERS = 8


def corgan_pathway(vocab_size: int) -> list[tuple[int, int, int, int]]:
    """The encoder's 8 layers as ``(L_in, L_out, kernel, stride)`` for a record of ``vocab_size`` codes.

    Every layer satisfies ``L_out = (L_in - kernel) / stride + 1`` exactly, so the mirrored
    ConvTranspose1d (same kernel and stride) maps ``L_out`` back to ``L_in``; the last layer
    ends at length 1. See the module docstring for the rule.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise GeneratorError(f"corgan: vocab_size={vocab_size!r}; expected a positive integer")
    layers, length = [], int(vocab_size)
    for stride in STRIDES:
        if length >= MIN_KERNEL:
            out = (length - MIN_KERNEL) // stride + 1
            kernel = length - stride * (out - 1)
        else:
            out, kernel, stride = length, 1, 1
        layers.append((length, out, kernel, stride))
        length = out
    layers.append((length, 1, length, 1))
    return layers


def pathway_table(vocab_size: int):
    """:func:`corgan_pathway` as a table, one row per encoder layer (for the book)."""
    import pandas as pd

    table = pd.DataFrame(corgan_pathway(vocab_size), columns=["length_in", "length_out", "kernel", "stride"])
    table.insert(0, "encoder_layer", range(1, len(table) + 1))
    return table


def encoder_channels(base: int, bottleneck: int) -> list[int]:
    """Output channels of the 8 encoder layers: base, 2 base, ... capped at ``bottleneck``; last = bottleneck."""
    return [min(base * 2 ** i, bottleneck) for i in range(N_LAYERS - 1)] + [bottleneck]


@dataclass(frozen=True)
class CorGANConfig(PretrainedGANConfig):
    """CorGAN hyperparameters; the defaults are appendix F.2 (``paper`` preset)."""

    latent_dim: int = 128        # noise size (paper)
    bottleneck: int = 128        # encoder output channels at length 1
    channels: int = 4            # first encoder layer's channels (doubling per layer)
    critic_channels: int = 16    # first critic layer's channels (doubling over 3 layers)
    ae_epochs: int = 10          # autoencoder pretraining (paper)
    ae_lr: float = 1e-3
    ae_beta1: float = 0.5
    ae_beta2: float = 0.9
    gan_epochs: int = 500        # adversarial epochs (paper)
    batch_size: int = 256        # paper
    lr: float = 1e-3
    beta1: float = 0.5           # paper silent
    beta2: float = 0.9
    decoder_lr: float = 1e-4     # decoder fine-tuning during the adversarial phase (original); 0: frozen
    critic_steps: int = 5        # critic updates per generator update (paper)
    gp_weight: float = 10.0      # gradient-penalty lambda (paper)

    def check(self) -> None:
        super().check()
        self._positive("latent_dim", "bottleneck", "channels", "critic_channels", "critic_steps")
        self._non_negative("decoder_lr", "gp_weight")


class CorGANNets(nn.Module):
    """Encoder, decoder, generator and critic of CorGAN for one vocabulary size."""

    def __init__(self, vocab_size: int, cfg: CorGANConfig):
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.pathway = corgan_pathway(vocab_size)
        chans = [1, *encoder_channels(cfg.channels, cfg.bottleneck)]
        enc, dec = [], []
        for i, (_, _, k, s) in enumerate(self.pathway):
            enc.append(nn.Conv1d(chans[i], chans[i + 1], k, stride=s))
            if 0 < i < N_LAYERS - 1:
                enc.append(nn.BatchNorm1d(chans[i + 1]))
            enc.append(nn.Tanh() if i == N_LAYERS - 1 else nn.LeakyReLU(0.2))
        for i in reversed(range(N_LAYERS)):
            k, s = self.pathway[i][2], self.pathway[i][3]
            dec.append(nn.ConvTranspose1d(chans[i + 1], chans[i], k, stride=s))
            if i > 0:
                dec += [nn.BatchNorm1d(chans[i]), nn.ReLU()]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)  # logits; sigmoid applied in decode()
        self.generator = nn.Sequential(
            nn.Linear(cfg.latent_dim, 256), nn.LeakyReLU(0.2),
            nn.Linear(256, 128), nn.LeakyReLU(0.2),
            nn.Linear(128, cfg.bottleneck), nn.Tanh())
        cc = [1, cfg.critic_channels, 2 * cfg.critic_channels, 4 * cfg.critic_channels]
        crit = []
        for i in range(3):
            _, _, k, s = self.pathway[i]
            crit += [nn.Conv1d(cc[i], cc[i + 1], k, stride=s), nn.LeakyReLU(0.2)]
        crit.append(nn.Conv1d(cc[3], 1, self.pathway[2][1]))
        self.critic = nn.Sequential(*crit)
        self.bottleneck = cfg.bottleneck
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def encode(self, x):
        """(B, V) records -> (B, bottleneck, 1) codes."""
        return self.encoder(x.unsqueeze(1))

    def decode_logits(self, h):
        """(B, bottleneck, 1) codes -> (B, V) logits."""
        return self.decoder(h).squeeze(1)

    def decode(self, h):
        return torch.sigmoid(self.decode_logits(h))

    def generate(self, z):
        """(B, latent_dim) noise -> (B, V) probabilities."""
        return self.decode(self.generator(z).unsqueeze(2))

    def score(self, x):
        """(B, V) records -> (B,) critic scores."""
        return self.critic(x.unsqueeze(1)).reshape(-1)


class CorGAN(PretrainedGAN):
    """CorGAN (8-layer convolutional autoencoder + WGAN-GP); see the module docstring."""

    name = "corgan"
    config_class = CorGANConfig
    min_shard_rows = 2  # BatchNorm in the autoencoder
    # presets: ehrlib/profiles/<profile>.yaml, key models.corgan

    def _prepare(self, train: Cohort) -> None:
        self._records(train, binary_matrix)

    def _extra_state(self) -> dict:
        return {"codes": list(self.vocab.codes)}

    def _set_extra_state(self, state: dict) -> None:
        self.vocab = Vocabulary(state["codes"])

    def build(self, vocab_size: int):
        """The untrained networks for ``vocab_size`` codes as one module (``.encoder``, ``.decoder``,
        ``.generator``, ``.critic``); needs no data."""
        corgan_pathway(vocab_size)  # validates vocab_size
        torch.manual_seed(self.config.seed)
        return CorGANNets(int(vocab_size), self.config)

    def _build(self) -> dict:
        return {"nets": self.build(len(self.vocab))}

    def _optimizers(self) -> dict:
        c, nets = self.config, self.modules["nets"]
        g_groups = [{"params": list(nets.generator.parameters())}]
        if c.decoder_lr > 0:
            g_groups.append({"params": list(nets.decoder.parameters()), "lr": c.decoder_lr})
        return {
            "ae": torch.optim.Adam([*nets.encoder.parameters(), *nets.decoder.parameters()], lr=c.ae_lr,
                                   betas=(c.ae_beta1, c.ae_beta2)),
            "g": torch.optim.Adam(g_groups, lr=c.lr, betas=(c.beta1, c.beta2)),
            "critic": torch.optim.Adam(nets.critic.parameters(), lr=c.lr, betas=(c.beta1, c.beta2)),
        }

    # ---------------------------------------------------------------- losses and steps
    def ae_loss(self, x):
        """BCE of the reconstruction, summed over codes and averaged over patients."""
        nets = self.modules["nets"]
        logits = nets.decode_logits(nets.encode(x))
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()

    def ae_step(self, x, sync: bool = True):
        return optimizer_step(self.optimizers["ae"], self._synced(self.ae_loss, x), sync=sync)

    def critic_loss(self, x, z, eps):
        """WGAN-GP critic loss: E[D(fake)] - E[D(real)] + lambda * E[(||grad D(x_hat)|| - 1)^2].

        Always float32 (no bf16 autocast): the penalty differentiates the critic's input gradient,
        a second-order term whose bf16 rounding (8-bit mantissa) would enter the Lipschitz
        constraint directly; its effect has not been measured, so the critic is not cast.
        """
        if self._bf16:
            with torch.autocast(self.device.type, enabled=False):
                return self.critic_loss_fp32(x, z, eps)
        return self.critic_loss_fp32(x, z, eps)

    def critic_loss_fp32(self, x, z, eps):
        nets = self.modules["nets"]
        with torch.no_grad():
            fake = nets.generate(z)
        wasserstein = nets.score(fake).mean() - nets.score(x).mean()
        if self.config.gp_weight == 0:
            return wasserstein
        x_hat = (eps * x + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(nets.score(x_hat).sum(), x_hat, create_graph=True)
        return wasserstein + self.config.gp_weight * ((grad.norm(2, dim=1) - 1) ** 2).mean()

    def g_loss(self, z):
        nets = self.modules["nets"]
        return -nets.score(nets.generate(z)).mean()

    def critic_step(self, x, z, eps, sync: bool = True):
        return optimizer_step(self.optimizers["critic"], self._synced(self.critic_loss, x, z, eps), sync=sync)

    def g_step(self, z, sync: bool = True):
        return optimizer_step(self.optimizers["g"], self._synced(self.g_loss, z), sync=sync)

    def _noise(self, k: int, rng):
        """Noise for a global batch of ``k`` rows, drawn whole from ``rng``; this rank's rows of it."""
        return self._part(torch.randn(k, self.config.latent_dim, generator=rng)).to(self.device)

    def _train_epoch(self, epoch: int, rng) -> dict:
        c, n, nets = self.config, self.x.n, self.modules["nets"]
        if self.phase_name == "autoencoder":
            return self._ae_epoch(rng, 2)
        nets.encoder.eval()
        d_total, g_total, d_steps, g_steps = Running(), Running(), 0, 0
        for rows in self._steps(batches(n, c.batch_size, rng)):
            if not self._keeps(rows, 2):
                continue
            x = self.x.dense(self._part(rows), self.device)
            eps = self._part(torch.rand(len(rows), 1, generator=rng)).to(self.device)
            d_total.add(self.critic_step(x, self._noise(len(rows), rng), eps, sync=False))
            d_steps += 1
            if d_steps % c.critic_steps == 0:
                g_total.add(self.g_step(self._noise(c.batch_size, rng), sync=False))
                g_steps += 1
        return {"loss": g_total.value() / max(g_steps, 1), "d_loss": d_total.value() / max(d_steps, 1), "phase": 1}

    def _generate(self, n: int, seed: int) -> Cohort:
        nets = self.modules["nets"].eval()

        def sample(k, g):
            with torch.no_grad():
                p = nets.generate(torch.randn(k, self.config.latent_dim, generator=g).to(self.device))
            return self._decode(p, g)

        rows, self.last_drawn = draw_nonempty(n, sample, lambda rows: (rows > 0).any(axis=1), name=self.name,
                                generator=torch.Generator().manual_seed(int(seed)), batch_size=GEN_CHUNK,
                                rounds=REDRAW_ROUNDS)
        return from_binary_matrix(rows, self.vocab)
