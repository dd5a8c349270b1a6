"""HALO: a hierarchical autoregressive generator of longitudinal records (Theodorou et al., 2023).

A GPT-2-style *coarse* causal transformer reads a record as a sequence of multi-hot rows
(a start row, an optional label row, then one row per visit) and summarises the history before
each row; a *fine* autoregressive head of masked linear layers (MADE-style masks) turns that
history into the probabilities of the next row's columns, one column after another: the logit
of column j depends on the history and only on columns i < j of the same row. Row columns are
``[labels (K, only when config.labels)] [codes (V)] [end]``; the end marker is the last column
of a visit row, so "this is the last visit" is decided after (and conditioned on) that visit's
codes, as in the original, where the end token sits on the last visit's row. Loss: binary
cross-entropy averaged over the real rows' allowed columns (padding and the start row
excluded). Sampling is exact ancestral sampling, batched: within a row, each pass draws every
column after a per-patient pointer at once and commits the first 1 (the columns skipped were
drawn 0 under exactly the committed prefix), so a row costs (its codes + 1) head passes.

Paper: appendix F.4 (Table 8: 768 dims, 12 layers, 12 heads, n_ctx 48, n_positions 56,
batch 48, Adam, 80 epochs, validation every 500 batches; Table 9: Bernoulli sampling, batch
256, at most 48 rows). Original: ``btheodorou99/HALO_Inpatient``.

Deviations:
  * No label conditioning by default (``labels=False``): the original puts 25 CCS phenotype
    labels on row 1; with ``labels=True`` row 1 holds the patient's single-level CCS groups
    (``ehrlib.data.icd9.ccs_groups`` of its codes, the groups seen in train), sampled by the
    model like any row. Label columns are allowed only on that row, code and end columns only
    on visit rows (the original lets every column fire on every row and learns zeros).
  * The start row is an input embedding only (no start/pad output columns); padding rows are
    never computed by the head nor scored (the original masks them to zero with its mask).
  * The fine head computes only the V(+K+1) outputs it needs; hidden layers (``fine_layers``
    >= 2, the original's 2 in the paper preset) are (E+W)-wide with the original's degrees.
    The demo/smoke presets use ``fine_layers=1``: history projection + one strictly masked
    W x W layer, evaluated sparsely (rows of the weight gathered for the codes present).
  * Output biases start at the training log-odds of each column (the original starts at 0).
  * Validation once per epoch on a seeded ``val_fraction`` of the training patients, keeping
    the best epoch by ``val_loss`` (the original validates every 500 batches).
  * ``n_ctx`` rows include the start (and label) row, as in the original; records with more
    visits keep their first ``max_visits`` visits and get no end marker (counted in the log).
  * Sampled visit rows with no code are dropped from the output but stay in the model's
    history (the original's record conversion also skips empty visits); records with no code at all are redrawn
    (at most ``max_attempts`` rounds; the rejection rate is logged).
  * No dropout in the ``paper`` preset, as the original (its GPT-2 blocks have no dropout
    layer; the paper's table lists none); the ``demo`` preset uses 0.1 (a smaller model trained
    for fewer epochs on CPU).
  * Vocabulary: every code of the training cohort, sorted (the original filters to its CCS
    benchmark codes and builds the index from an unseeded shuffle).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ehrlib.cohort import Cohort
from ehrlib.data.encode import Vocabulary, visit_multihot
from ehrlib.models.base import GeneratorError
from ehrlib.models.fidelity import validation_cohort
from ehrlib.models.neural import (GPT2_ACTIVATION, Running, TorchConfig, TorchGenerator, batches, draw_nonempty, optimizer_step,
                                  to_device, transformers_module)

log = logging.getLogger("ehrlib.models")


@dataclass(frozen=True)
class HALOConfig(TorchConfig):
    """HALO's settings; defaults are appendix F.4 (the ``paper`` preset)."""

    n_embd: int = 768             # coarse transformer width
    n_layer: int = 12             # coarse transformer layers
    n_head: int = 12              # attention heads
    n_ctx: int = 48               # rows per record: start (+ label) + visits
    n_positions: int = 56         # position embeddings (>= n_ctx)
    dropout: float = 0.0          # GPT-2 residual/embedding/attention dropout (the original has none)
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    fine_layers: int = 2          # masked linear layers of the fine head (original: 2)
    labels: bool = False          # label row of CCS groups (original: 25 phenotype labels)
    epochs: int = 80
    batch_size: int = 48
    lr: float = 1e-4              # Adam
    val_fraction: float = 0.1     # training patients held out for val_loss (0: none)
    sample_batch_size: int = 256  # patients sampled together
    max_attempts: int = 20        # rounds of redrawing records with no code

    def check(self) -> None:
        super().check()
        self._positive("n_embd", "n_layer", "n_head", "n_ctx", "n_positions", "layer_norm_epsilon",
                       "initializer_range", "fine_layers", "epochs", "batch_size", "lr",
                       "sample_batch_size", "max_attempts")
        name = type(self).__name__
        if not isinstance(self.labels, bool):
            raise GeneratorError(f"{name}.labels={self.labels!r}; expected True or False")
        if self.n_embd % self.n_head:
            raise GeneratorError(f"{name}.n_head={self.n_head}; expected a divisor of n_embd={self.n_embd}")
        if self.n_ctx > self.n_positions:
            raise GeneratorError(f"{name}.n_ctx={self.n_ctx}; expected <= n_positions={self.n_positions}")
        if self.n_ctx < 2 + int(self.labels):
            raise GeneratorError(f"{name}.n_ctx={self.n_ctx}; expected >= {2 + int(self.labels)} "
                                 "(start row, label row if labels, one visit)")
        if not 0 <= self.dropout < 1:
            raise GeneratorError(f"{name}.dropout={self.dropout}; expected 0 <= dropout < 1")
        if not 0 <= self.val_fraction < 1:
            raise GeneratorError(f"{name}.val_fraction={self.val_fraction}; expected 0 <= val_fraction < 1")

    @property
    def max_visits(self) -> int:
        """Visit rows that fit the context."""
        return self.n_ctx - 1 - int(self.labels)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out x in)."""

    def __init__(self, mask):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(torch.float32), persistent=False)

    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.mask, self.bias)

class Head(nn.Module):
    """Fine autoregressive head over a row of ``width`` columns given an ``n_embd`` history.

    Degrees (MADE): history units 0, column i has degree i + 1. A layer-1 unit of max degree
    d reads columns of degree <= d; output column j reads hidden units of degree <= j, so it
    depends on columns i < j only. ``fine_layers == 1``: output = history projection +
    strictly masked W x W layer (linear in the row, which the sampler updates incrementally).
    """

    def __init__(self, n_embd: int, width: int, layers: int, init_std: float):
        super().__init__()
        self.width, self.layers = width, layers
        cols = torch.arange(width)
        if layers == 1:
            deg1 = cols.clone()                       # output j: columns < j
        else:
            deg1 = torch.cat([torch.zeros(n_embd, dtype=torch.long), cols + 1])  # original's E + W units
        h1 = len(deg1)
        self.register_buffer("deg1", deg1, persistent=False)
        self.hist = nn.Linear(n_embd, h1)
        self.code_w = nn.Parameter(torch.empty(width, h1))   # row i: what column i adds to layer 1
        hidden = []
        for _ in range(layers - 2):
            hidden.append(MaskedLinear(deg1[None, :] <= deg1[:, None]))
        self.hidden = nn.ModuleList(hidden)
        self.out = MaskedLinear(deg1[None, :] <= cols[:, None]) if layers > 1 else None
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, init_std)
            else:
                nn.init.zeros_(p)

    @property
    def out_bias(self):
        return self.hist.bias if self.layers == 1 else self.out.bias

    def code_rows(self, cols):
        """What columns ``cols`` add to layer 1 (len(cols) x h1), causally masked."""
        return self.code_w[cols] * (self.deg1[None, :] >= cols[:, None] + 1)

    def first(self, history, rows=None, cols=None, dense=None):
        """Layer-1 pre-activation from the history and the row (COO ``rows``/``cols`` or ``dense``)."""
        pre = self.hist(history)
        if dense is not None:
            mask = (self.deg1[None, :] >= torch.arange(1, self.width + 1, device=dense.device)[:, None])
            return pre + dense @ (self.code_w * mask)
        if cols is not None and len(cols):
            pre = pre.index_add(0, rows, self.code_rows(cols).to(pre.dtype))  # bf16 under autocast
        return pre

    def rest(self, pre):
        """Logits (n x width) from the layer-1 pre-activation."""
        if self.layers == 1:
            return pre
        z = torch.relu(pre)
        for layer in self.hidden:
            z = torch.relu(layer(z))
        return self.out(z)

    def forward(self, history, dense):
        return self.rest(self.first(history, dense=dense))

    @torch.no_grad()
    def sample(self, history, allowed, generator):
        """Exact ancestral samples of one row per history (n x width, 0/1 floats).

        Every pass draws all columns after each row's pointer from the probabilities given
        the committed prefix (later columns 0) and commits the first 1; columns skipped were
        drawn 0 under exactly that prefix. Rows without a 1 after their pointer are done.
        """
        n, dev = history.shape[0], history.device
        pre = self.first(history)
        x = torch.zeros(n, self.width, device=dev)
        ptr = torch.full((n,), -1, dtype=torch.long, device=dev)
        cols = torch.arange(self.width, device=dev)
        active = torch.arange(n, device=dev)
        while active.numel():
            p = torch.sigmoid(self.rest(pre[active])) * allowed
            u = torch.rand(active.numel(), self.width, generator=generator).to(dev)
            draw = (u < p) & (cols[None, :] > ptr[active][:, None])
            has = draw.any(1)
            first = draw.to(torch.uint8).argmax(1)     # first 1 (argmax returns the first maximum)
            active, first = active[has], first[has]
            x[active, first] = 1.0
            pre[active] += self.code_rows(first)
            ptr[active] = first
        return x

    @torch.no_grad()
    def sample_naive(self, history, allowed, generator, stop=None):
        """The same distribution, one column at a time with a full head pass per column (the
        reference the tests compare to); ``stop`` samples only the first columns (for timing)."""
        n, dev = history.shape[0], history.device
        x = torch.zeros(n, self.width, device=dev)
        for j in range(self.width if stop is None else stop):
            p = torch.sigmoid(self.rest(self.first(history, dense=x))[:, j]) * allowed[j]
            u = torch.rand(n, generator=generator).to(dev)
            x[:, j] = (u < p).float()
        return x


def fine_head(n_embd: int, width: int, layers: int, init_std: float = 0.02):
    """A fine autoregressive head (see :class:`Head`)."""
    return Head(n_embd, width, layers, init_std)


class Coarse(nn.Module):
    """Row embeddings (sum of column embeddings; index ``width`` is the start token) + GPT-2."""

    def __init__(self, cfg: HALOConfig, width: int):
        super().__init__()
        GPT2Config, GPT2Model = transformers_module("GPT2Config", "GPT2Model")
        self.embed = nn.Parameter(torch.empty(width + 1, cfg.n_embd))
        nn.init.normal_(self.embed, 0.0, cfg.initializer_range)
        gcfg = GPT2Config(vocab_size=1, n_positions=cfg.n_positions, n_embd=cfg.n_embd,
                          n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=cfg.dropout,
                          embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                          layer_norm_epsilon=cfg.layer_norm_epsilon,
                          initializer_range=cfg.initializer_range, use_cache=False,
                          bos_token_id=0, eos_token_id=0, activation_function=GPT2_ACTIVATION)
        self.gpt = GPT2Model(gcfg)

    def forward(self, rows_embedded):
        return self.gpt(inputs_embeds=rows_embedded, use_cache=False).last_hidden_state


def _coarse(cfg: HALOConfig, width: int):
    return Coarse(cfg, width)


class HALO(TorchGenerator):
    """HALO (appendix F.4): coarse GPT-2 over visits + fine masked autoregressive head."""

    name = "halo"
    config_class = HALOConfig
    # presets: ehrlib/profiles/<profile>.yaml, key models.halo

    # ---------------------------------------------------------------- data
    def _columns(self):
        """(K labels, V codes, width) of a row."""
        k, v = len(self.label_names), len(self.vocab)
        return k, v, k + v + 1

    def _prepare(self, train: Cohort) -> None:
        cfg = self.config
        self.vocab = Vocabulary.from_cohorts(train)
        self.label_names = self._label_names(self.vocab.codes) if cfg.labels else []
        k, v, width = self._columns()
        visits, offsets = visit_multihot(train, self.vocab)
        visits = sp.csr_matrix(visits)
        n_vis = np.diff(offsets)
        keep = np.minimum(n_vis, cfg.max_visits)
        self.n_cut = int((n_vis > cfg.max_visits).sum())
        if self.n_cut:
            log.info("halo: %d of %d records have more than %d visits; their first %d are kept (no end marker)",
                     self.n_cut, len(n_vis), cfg.max_visits, cfg.max_visits)
        # Each record's rows: [start] [labels] visits...; a CSR of rows x (width + 1).
        blocks, n_rows = [], []
        start_row = sp.csr_matrix(([1.0], ([0], [width])), shape=(1, width + 1))
        code_of_label = None
        if cfg.labels:
            groups = self._label_names(self.vocab.codes, all_groups=True)
            lab_index = {g: i for i, g in enumerate(self.label_names)}
            code_of_label = np.array([lab_index.get(g, -1) for g in groups])
        for p in range(len(n_vis)):
            vis = visits[offsets[p]:offsets[p] + keep[p]]
            rows = [start_row]
            if cfg.labels:
                labs = np.unique(code_of_label[visits[offsets[p]:offsets[p + 1]].indices])
                labs = labs[labs >= 0]
                rows.append(sp.csr_matrix((np.ones(len(labs)), (np.zeros(len(labs), int), labs)), shape=(1, width + 1)))
            coo = vis.tocoo()
            body = sp.csr_matrix((coo.data, (coo.row, coo.col + k)), shape=(vis.shape[0], width + 1)).tolil()
            if n_vis[p] <= cfg.max_visits:
                body[vis.shape[0] - 1, width - 1] = 1.0
            rows.append(body.tocsr())
            blocks.append(sp.vstack(rows, format="csr"))
            n_rows.append(sum(r.shape[0] for r in rows))
        self.rows = sp.vstack(blocks, format="csr")
        self.row_offsets = np.concatenate([[0], np.cumsum(n_rows)])
        # Seeded validation split of training patients.
        n = len(n_vis)
        n_val = int(round(cfg.val_fraction * n))
        if n_val >= n:
            n_val = n - 1
        perm = np.random.default_rng(cfg.seed).permutation(n)
        self.val_idx, self.train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        self.validation = validation_cohort(train, self.val_idx)
        # Column priors (for the output bias init) over the rows where a column is allowed.
        tgt = self.rows[np.setdiff1d(np.arange(self.rows.shape[0]), self.row_offsets[:-1])][:, :width]
        freq = np.asarray(tgt.sum(0)).ravel()
        n_label_rows = n if cfg.labels else 0
        denom = np.full(width, tgt.shape[0] - n_label_rows, dtype=float)
        denom[:k] = max(n_label_rows, 1)
        prior = np.clip((freq + 0.5) / (denom + 1.0), 1e-6, 1 - 1e-6)
        self._col_prior = np.log(prior / (1 - prior))

    @staticmethod
    def _label_names(codes, all_groups: bool = False):
        from ehrlib.data.icd9 import ccs_groups

        groups = ccs_groups(list(codes))
        if all_groups:
            return groups
        return sorted({str(g) for g in groups if g is not None})

    def _extra_state(self) -> dict:
        return {"codes": list(self.vocab.codes), "labels": list(self.label_names)}

    def _set_extra_state(self, state: dict) -> None:
        self.vocab = Vocabulary(state["codes"])
        self.label_names = list(state["labels"])

    # ---------------------------------------------------------------- model
    def _build(self) -> dict:
        cfg = self.config
        _, _, width = self._columns()
        head = fine_head(cfg.n_embd, width, cfg.fine_layers, cfg.initializer_range)
        prior = getattr(self, "_col_prior", None)
        if prior is not None:
            with torch.no_grad():
                head.out_bias.copy_(torch.as_tensor(prior, dtype=torch.float32))
        return {"coarse": _coarse(cfg, width), "head": head}

    def _optimizers(self) -> dict:
        params = [p for m in self.modules.values() for p in m.parameters()]
        return {"adam": torch.optim.Adam(params, lr=self.config.lr, fused=True)}

    def _allowed(self, label_row: bool, device):
        """0/1 float mask of the columns a row may hold."""
        k, _, width = self._columns()
        a = torch.zeros(width, device=device)
        if label_row:
            a[:k] = 1
        else:
            a[k:] = 1
        return a

    def _forward(self, patients, rows=None):
        """Logits, targets and allowed-column masks of every non-start row of ``patients``.

        Returns ``(logits, y, allowed, patient, t)``: one line per target row (row ``t >= 1`` of
        batch member ``patient``), predicted from the history up to row ``t - 1``. ``rows``
        replaces the encoded rows (tests use it to perturb a record).
        """
        dev = self.device
        rows = self.rows if rows is None else rows
        k, _, width = self._columns()
        starts, ends = self.row_offsets[patients], self.row_offsets[patients + 1]
        lens = ends - starts
        b, t_max = len(patients), int(lens.max())
        row_ids = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
        bpos = np.repeat(np.arange(b), lens)
        tpos = np.concatenate([np.arange(n) for n in lens])
        coo = rows[row_ids].tocoo()
        flat_np = bpos * t_max + tpos
        # Targets: every row but the start row, predicted from the history up to the row before.
        # The indices are computed on the host and copied once (no device round trip in the step).
        tgt = np.flatnonzero(tpos > 0)
        remap = np.full(len(row_ids), -1, dtype=np.int64)
        remap[tgt] = np.arange(len(tgt))
        keep = remap[coo.row] >= 0

        def index(a):
            return to_device(torch.as_tensor(np.asarray(a, dtype=np.int64)), dev)

        r, c, flat = index(coo.row), index(coo.col), index(flat_np)
        rr, cc, prev = index(remap[coo.row][keep]), index(coo.col[keep]), index(flat_np[tgt] - 1)
        is_label = to_device(torch.as_tensor((tpos[tgt] == 1) & self.config.labels), dev)
        coarse, head = self.modules["coarse"], self.modules["head"]
        row_emb = torch.zeros(len(row_ids), self.config.n_embd, device=dev).index_add(0, r, coarse.embed[c])
        emb = torch.zeros(b * t_max, self.config.n_embd, device=dev).index_copy(0, flat, row_emb)
        hist = coarse(emb.view(b, t_max, -1)).reshape(b * t_max, -1)
        logits = head.rest(head.first(hist[prev], rr, cc))
        y = torch.zeros(len(tgt), width, device=dev)
        y[rr, cc] = 1.0
        label_cols = torch.arange(width, device=dev) < k
        allowed = torch.where(is_label[:, None], label_cols, ~label_cols).float()  # label row: labels only
        return logits, y, allowed, bpos[tgt], tpos[tgt]

    def _batch_loss(self, patients):
        """Masked BCE: mean over the real rows' allowed columns (no start row, no padding)."""
        logits, y, allowed, _, _ = self._forward(patients)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        return (bce * allowed).sum() / allowed.sum()

    def _train_epoch(self, epoch: int, rng) -> dict:
        opt = self.optimizers["adam"]
        total, n = Running(), 0
        for idx in self._steps(batches(len(self.train_idx), self.config.batch_size, rng)):
            if not self._keeps(idx):
                continue
            idx = self._part(idx)
            loss = self._synced(self._batch_loss, self.train_idx[idx.numpy()])
            total.add(optimizer_step(opt, loss, sync=False), len(idx))
            n += len(idx)
        stats = {"loss": total.value() / max(n, 1)}
        if len(self.val_idx):
            for m in self.modules.values():
                m.eval()
            with torch.no_grad():
                vt, vn = 0.0, 0
                for i in range(0, len(self.val_idx), self.config.batch_size):
                    part = self.val_idx[i:i + self.config.batch_size]
                    vt += self._batch_loss(part).item() * len(part)
                    vn += len(part)
            for m in self.modules.values():
                m.train()
            stats["val_loss"] = vt / vn
        return stats

    # ---------------------------------------------------------------- sampling
    def _sample_batch(self, n: int, g, sampler: str = "exact") -> list[list[list[int]]]:
        """``n`` records as lists of visits of code indices (empty visits dropped)."""
        cfg, dev = self.config, self.device
        coarse, head = self.modules["coarse"], self.modules["head"]
        k, v, width = self._columns()
        emb = torch.zeros(n, cfg.n_ctx, cfg.n_embd, device=dev)
        emb[:, 0] = coarse.embed[width]
        alive = torch.ones(n, dtype=torch.bool, device=dev)
        records: list[list[list[int]]] = [[] for _ in range(n)]
        sample = head.sample if sampler == "exact" else head.sample_naive
        for t in range(1, cfg.n_ctx):
            idx = torch.nonzero(alive).ravel()
            if not idx.numel():
                break
            hist = coarse(emb[idx, :t])[:, t - 1]
            label_row = cfg.labels and t == 1
            x = sample(hist, self._allowed(label_row, dev), g)
            emb[idx, t] = x @ coarse.embed[:width]
            if label_row:
                continue
            codes = x[:, k:k + v].cpu().numpy()
            ended = x[:, width - 1] > 0
            rows, cols = np.nonzero(codes)
            split = np.searchsorted(rows, np.arange(len(idx) + 1))
            idx_np = idx.cpu().numpy()
            for j in np.flatnonzero(np.diff(split)):
                records[idx_np[j]].append(cols[split[j]:split[j + 1]].tolist())
            alive[idx[ended]] = False
        return records

    def _generate(self, n: int, seed: int) -> Cohort:
        g = torch.Generator().manual_seed(int(seed))
        for m in self.modules.values():
            m.eval()
        if self.device is None:
            from ehrlib.models.neural import pick_device
            self.device = pick_device(self.config.device)
        with torch.no_grad():
            out, drawn = draw_nonempty(n, self._sample_batch, lambda recs: [bool(r) for r in recs], name="halo",
                                       generator=g, batch_size=self.config.sample_batch_size,
                                       rounds=self.config.max_attempts)
        self.last_rejection_rate = 1 - n / drawn
        self.last_drawn = drawn
        codes = np.asarray(self.vocab.codes, dtype=object)
        records = [[[str(c) for c in codes[v]] for v in rec] for rec in out]
        return Cohort.from_visits(records)
