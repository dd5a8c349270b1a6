"""PromptEHR: token ids, demographic constants and the typed config (Appendix F.3)."""
from __future__ import annotations

from dataclasses import dataclass

from ehrlib.models.base import GeneratorError
from ehrlib.models.neural import TorchConfig

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
    length_buckets: bool = True     # batch patients of similar length (less padding; paper silent on batching)
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
