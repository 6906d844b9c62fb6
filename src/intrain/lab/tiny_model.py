"""Small Qwen3 models with a byte-level chat tokenizer, built offline in seconds.

The test suite's tiny random model, the lab model (`intrain lab pretrain`) and the GPU smoke test
all come from here: a byte-level BPE tokenizer trained on a given corpus (ChatML special tokens and
template, so chat rendering, prompt masking and the no-end-of-turn SFT format work unchanged) and a
randomly initialised `Qwen3ForCausalLM` of a chosen shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


@dataclass(frozen=True)
class Shape:
    """A Qwen3 decoder's size. `vocab_size` None = the tokenizer's own size."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    intermediate_size: int | None = None  # None = 2 x hidden_size
    max_position_embeddings: int = 1024
    vocab_size: int | None = None
    tie_word_embeddings: bool = True


# SmolLM2-135M's dimensions (a Llama; Qwen3 adds q/k norms, a negligible cost), for speed measurements.
SMOLLM2_135M_SHAPE = Shape(
    hidden_size=576,
    num_layers=30,
    num_heads=9,
    num_kv_heads=3,
    head_dim=64,
    intermediate_size=1536,
    max_position_embeddings=8192,
    vocab_size=49152,
)


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `corpus`, with ChatML specials, end of turn as EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>", unk_token=None)
    hf_tok.chat_template = CHATML_TEMPLATE
    return hf_tok


def build_model(out_dir: str | Path, tokenizer: PreTrainedTokenizerFast, shape: Shape = Shape(), seed: int = 0) -> str:
    """Save `tokenizer` and a random-weight Qwen3ForCausalLM of `shape` to `out_dir`; return the path."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer.save_pretrained(str(out_dir))
    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=shape.vocab_size or len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size or 2 * shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=shape.tie_word_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir))
    return str(out_dir)
