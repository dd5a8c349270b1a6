"""PromptEHR networks: demographic prompts and the prompted BART (module-level ``nn.Module`` classes)."""
from __future__ import annotations

import torch
from torch import nn

from ehrlib.models.neural import transformers_module
from ehrlib.models.promptehr.config import BOS, DECODER_START, EOS, N_PROMPTS, PAD, PromptEHRConfig


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
