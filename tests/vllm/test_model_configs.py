"""Real models' config.json files are read to the lengths real vLLM derives, per vLLM version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launches.vllm.modelinfo import facts_from_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "data" / "model-configs"

# file -> {vLLM version: (native_context, default_context)}
EXPECTED: dict[str, dict[str, tuple[int, int]]] = {
    # Gemma 3: the text config names no length, Gemma3TextConfig's default does; its linear
    # factor 8 is never multiplied.
    "gemma-3-12b-it.json": {
        "0.32.0": (131072, 131072),
        "0.29.0": (131072, 131072),
        "0.11.0": (131072, 131072),
    },
    # Llava: sparse text_config, the Llama class defaults fill heads and hidden size.
    "llava-1.5-7b-hf.json": {"0.32.0": (4096, 4096), "0.29.0": (4096, 4096), "0.11.0": (4096, 4096)},
    # LongRoPE: 131,072 is accepted, 4,096 is where vLLM starts without a length.
    "Phi-3.5-mini-instruct.json": {
        "0.32.0": (131072, 4096),
        "0.29.0": (131072, 4096),
        "0.11.0": (131072, 4096),
    },
}


@pytest.mark.parametrize("version", ["0.32.0", "0.29.0", "0.11.0"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_shared_config_gets_the_lengths_vllm_derives(name: str, version: str) -> None:
    config = json.loads((CONFIG_DIR / name).read_text())
    facts = facts_from_config(config, model=name, vllm_version=version)
    assert (facts.native_context, facts.default_context) == EXPECTED[name][version], name


def test_llava_is_read_with_the_llama_class_defaults() -> None:
    facts = facts_from_config(json.loads((CONFIG_DIR / "llava-1.5-7b-hf.json").read_text()), model="llava")
    assert (facts.num_layers, facts.num_kv_heads, facts.head_dim) == (32, 32, 128)
    assert facts.kv_bytes_per_token() == 2 * 32 * 32 * 128 * 2


def test_gemma_3_reads_its_text_model_and_its_sliding_layers() -> None:
    facts = facts_from_config(json.loads((CONFIG_DIR / "gemma-3-12b-it.json").read_text()), model="gemma")
    assert (facts.num_layers, facts.num_kv_heads, facts.head_dim) == (48, 8, 256)
    assert facts.attention_kind == "sliding"


YARN_QWEN = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 1024,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
}


@pytest.mark.parametrize(("version", "native"), [("0.11.0", 131072), ("0.29.0", 131072), ("0.30.0", 32768)])
def test_yarn_in_the_config_multiplies_the_length_only_before_0_30(version: str, native: int) -> None:
    assert facts_from_config(YARN_QWEN, model="qwen", vllm_version=version).native_context == native


def test_a_linear_factor_multiplies_the_length_in_every_version() -> None:
    config = {**YARN_QWEN, "rope_scaling": {"type": "linear", "factor": 2.0}}
    for version in ("0.11.0", "0.29.0", "0.32.0"):
        assert facts_from_config(config, model="m", vllm_version=version).native_context == 65536


def test_an_architecture_transformers_does_not_know_is_read_from_the_raw_file() -> None:
    config = {
        "architectures": ["AcmeForCausalLM"],
        "model_type": "acme-unknown",
        "n_layer": 4,
        "num_attention_heads": 8,
        "hidden_size": 512,
        "seq_length": 8192,
    }
    facts = facts_from_config(config, model="acme")
    assert (facts.read_with, facts.native_context, facts.num_layers, facts.head_dim) == ("raw", 8192, 4, 64)


def test_mla_models_count_one_latent_vector_per_layer() -> None:
    config = {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "hidden_size": 1024,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "kv_lora_rank": 512,
        "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 128,
        "v_head_dim": 128,
        "max_position_embeddings": 163840,
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096},
        "torch_dtype": "bfloat16",
    }
    facts = facts_from_config(config, model="ds")
    assert facts.attention_kind == "mla"
    assert facts.kv_bytes_per_token() == 4 * (512 + 64) * 2
    assert facts.native_context == 163840


RECORDED = json.loads((CONFIG_DIR.parent / "vllm-0.32.0-model-facts.json").read_text())


def mismatches(name: str, recorded: dict) -> list[str]:
    """Each value the product derives differently from vLLM 0.32.0, naming the model and both numbers."""
    facts = facts_from_config(json.loads((CONFIG_DIR / name).read_text()), model=name, vllm_version="0.32.0")
    found = []
    for key in ("native_context", "default_context", "num_layers", "num_kv_heads", "head_dim"):
        theirs, ours = recorded[key], getattr(facts, key)
        if key == "native_context" and theirs is None:
            # vLLM accepts any explicit length for a config that names none; we say so by the empty key.
            theirs, ours = "any", "any" if facts.max_len_key == "" else ours
        if ours != theirs:
            found.append(f"{name}: {key} is {ours} here, vLLM 0.32.0 derives {theirs}")
    return found


def test_every_corpus_config_is_recorded_with_vllms_own_numbers() -> None:
    assert sorted(RECORDED) == sorted(path.name for path in CONFIG_DIR.glob("*.json"))
    assert len(RECORDED) >= 20


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_the_product_derives_what_vllm_0_32_derives_for_each_real_config(name: str) -> None:
    assert mismatches(name, RECORDED[name]) == []


def test_disabling_the_sliding_window_caps_the_length_at_the_window() -> None:
    facts = facts_from_config(
        json.loads((CONFIG_DIR / "Mistral-7B-Instruct-v0.1.json").read_text()), model="m"
    )
    assert facts.lengths_for_version("0.32.0") == (32768, 32768)
    assert facts.lengths_for_version("0.32.0", disable_sliding_window=True) == (4096, 4096)
