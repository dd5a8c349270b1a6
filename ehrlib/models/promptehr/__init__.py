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
* Frequency guidance: the paper preset keeps alpha = 2.0, but with the exact visit structure a
  calibrated decoder already matches the code frequencies and the prior counts them twice
  (prevalence fit falls as alpha grows; measured in the book's PromptEHR ablation). The smoke
  and demo presets use alpha = 0.
* ``length_buckets`` (on in every preset, ``paper`` included; the paper says nothing about
  batching) batches patients of similar length: each run of 50 random batches is sorted by record
  length before it is cut, and the batches are shuffled. It cuts decoder padding (measured by
  ``benchmarks/padding_share.py`` and ``benchmarks/bench_promptehr.py``); ``length_buckets=False``
  gives plain random batches.
* Prompts: the paper prepends the demographic prompts to the encoder input; the original
  (``PromptBartDecoder``) also prepends prompts, from a second prompt module, to the decoder
  input, and so do we (``decoder_prompt``, on in every preset).
* The first-code prior (the paper's ``build_first_code_prior``) draws the first code of the
  first visit only; the first codes of later visits are decoded by the model (the paper does
  not say which visits the prior covers).
* Gradients are clipped at norm ``max_grad_norm`` (1.0, the HF Trainer default the original used).

Package layout: ``config`` (token ids, constants, :class:`PromptEHRConfig`), ``tokens`` (records
as token streams, corruptions), ``prior`` (first-code prior, sampling distribution),
``networks`` (prompted BART), ``model`` (:class:`PromptEHR`).
"""
from __future__ import annotations

from ehrlib.models.promptehr.config import (BOS, CODE_OFFSET, DECODER_START, EOS, MASK, N_AGE_BINS, N_PROMPTS, PAD,
                                            SEX_CODES, SPECIALS, UNK, UNKNOWN_SEX, VCLOSE, VOPEN, PromptEHRConfig)
from ehrlib.models.promptehr.model import PromptEHR
from ehrlib.models.promptehr.networks import DemographicPrompt, PromptBart
from ehrlib.models.promptehr.prior import age_bin, sampling_probs
from ehrlib.models.promptehr.tokens import corrupt, detokenize, detokenize_lengths, record_tokens, tokenize

__all__ = ["BOS", "CODE_OFFSET", "DECODER_START", "EOS", "MASK", "N_AGE_BINS", "N_PROMPTS", "PAD", "SEX_CODES",
           "SPECIALS", "UNK", "UNKNOWN_SEX", "VCLOSE", "VOPEN", "DemographicPrompt", "PromptBart", "PromptEHR",
           "PromptEHRConfig", "age_bin", "corrupt", "detokenize", "detokenize_lengths", "record_tokens",
           "sampling_probs", "tokenize"]
