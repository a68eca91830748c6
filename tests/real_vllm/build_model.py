"""Build the small Qwen3-architecture model that the real-vLLM tests serve.

Run with the python of the vLLM virtualenv (scripts/vllm-cpu-env), which has torch, transformers and
tokenizers:

    python tests/real_vllm/build_model.py OUT_DIR

The model has random weights (seeded) and a byte-level BPE tokenizer trained on a small generated text,
so nothing is downloaded. Its shape is chosen for its KV cache, not its answers: 8 layers x 8 KV heads x
head_dim 128 in bfloat16 is 32 KiB per token, so 1 GiB of vLLM's CPU KV cache holds 32,768 tokens, less
than the native 40,960 of ``max_position_embeddings`` -- vLLM refuses the native length and prints the
length that fits, as it does on a real GPU with a real model.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20240611
NATIVE_CONTEXT = 40960
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TRAINING_WORDS = (
    "the a one two three model server launch context length cache token memory host card queue start "
    "stop ready failed learn limit yarn factor rope scaling native window attention layer head value "
    "key batch request answer prompt operator worker broker event attempt number text data log line"
)
WORDS = TRAINING_WORDS.split()


def training_text(seed: int) -> list[str]:
    """Sentences of common words, digits and punctuation: enough for a byte-level BPE of 1,024 entries."""
    rng = random.Random(seed)
    lines = []
    for _ in range(4000):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 16))]
        words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ","]))
    return lines


def build_tokenizer(out_dir: Path) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_text(SEED), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=NATIVE_CONTEXT,
    )
    fast.save_pretrained(out_dir)
    return tokenizer.get_vocab_size()


def build_model(out_dir: Path, vocab_size: int) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(SEED)
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=NATIVE_CONTEXT,
        rope_theta=1000000,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        torch_dtype="bfloat16",
    )
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)


# A Phi-3.5-style LongRoPE model: vLLM accepts LONGROPE_CONTEXT but starts (and auto-fits) at
# LONGROPE_ORIGINAL. Same KV size per token as the Qwen3 model (8 layers x 8 heads x 128 in bf16).
LONGROPE_ORIGINAL = 4096
LONGROPE_CONTEXT = 40960


def build_longrope_model(out_dir: Path, vocab_size: int) -> None:
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(SEED)
    half_head = 64
    config = Phi3Config(
        vocab_size=vocab_size,
        hidden_size=1024,
        intermediate_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=LONGROPE_CONTEXT,
        original_max_position_embeddings=LONGROPE_ORIGINAL,
        rope_scaling={
            "type": "longrope",
            "short_factor": [1.0] * half_head,
            "long_factor": [1.0 + i / half_head for i in range(half_head)],
        },
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        sliding_window=None,
        torch_dtype="bfloat16",
    )
    model = Phi3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the model into (created)")
    parser.add_argument("--longrope", action="store_true", help="a Phi-3-style LongRoPE model instead")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    vocab_size = build_tokenizer(args.out_dir)
    (build_longrope_model if args.longrope else build_model)(args.out_dir, vocab_size)
    config = json.loads((args.out_dir / "config.json").read_text())
    print(
        json.dumps(
            {
                "model_dir": str(args.out_dir),
                "max_position_embeddings": config["max_position_embeddings"],
                "vocab_size": vocab_size,
            }
        )
    )


if __name__ == "__main__":
    main()
