"""Model facts are read from config.json the way vLLM derives them, offline from a real HF cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launches.vllm.modelinfo import ModelConfigError, ModelFacts, read_model_facts
from tests.vllm.conftest import DEMO_MODEL

REVISION = "0123456789abcdef0123456789abcdef01234567"


def make_cache(cache: Path, repo: str, files: dict[str, str]) -> None:
    """Lay out a Hugging Face cache the way huggingface_hub writes it."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REVISION)
    (repo_dir / "blobs").mkdir()
    for name, text in files.items():
        (snapshot / name).write_text(text)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_demo_model_has_qwen3_8b_facts() -> None:
    facts = read_model_facts(str(DEMO_MODEL))
    assert facts.native_context == 40960
    assert facts.max_len_key == "max_position_embeddings"
    assert (facts.num_layers, facts.num_kv_heads, facts.head_dim) == (36, 8, 128)
    assert facts.dtype == "bfloat16"
    assert facts.architectures == ("Qwen3ForCausalLM",)
    assert facts.kv_bytes_per_token() == 2 * 36 * 8 * 128 * 2
    assert facts.kv_bytes_per_token("fp8") == 2 * 36 * 8 * 128


def test_a_cached_repo_is_read_offline_from_the_hf_cache_layout(tmp_path: Path) -> None:
    config = json.loads((DEMO_MODEL / "config.json").read_text())
    make_cache(tmp_path, "acme/qwen-like", {"config.json": json.dumps(config)})
    facts = read_model_facts("acme/qwen-like", cache_dir=str(tmp_path))
    assert facts.native_context == 40960
    assert facts.model == "acme/qwen-like"


def test_the_smallest_length_key_of_the_text_config_wins(tmp_path: Path) -> None:
    config = {
        "architectures": ["LlavaForConditionalGeneration"],
        "max_position_embeddings": 999999,
        "text_config": {
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "hidden_size": 256,
            "max_position_embeddings": 8192,
            "seq_length": 4096,
        },
    }
    make_cache(tmp_path, "acme/vision", {"config.json": json.dumps(config)})
    facts = read_model_facts("acme/vision", cache_dir=str(tmp_path))
    assert (facts.native_context, facts.max_len_key) == (4096, "seq_length")
    assert facts.num_kv_heads == 4
    assert facts.head_dim == 64


def test_model_max_length_in_the_config_overrides_other_keys(tmp_path: Path) -> None:
    config = {
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "hidden_size": 256,
        "max_position_embeddings": 8192,
        "model_max_length": 131072,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    facts = read_model_facts(str(tmp_path))
    assert (facts.native_context, facts.max_len_key) == (131072, "model_max_length")


def test_the_tokenizer_model_max_length_does_not_lower_a_generative_model(tmp_path: Path) -> None:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "hidden_size": 256,
        "max_position_embeddings": 8192,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 2048}))
    assert read_model_facts(str(tmp_path)).native_context == 8192


def test_the_tokenizer_model_max_length_lowers_a_pooling_model_with_absolute_positions(
    tmp_path: Path,
) -> None:
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "hidden_size": 256,
        "max_position_embeddings": 8192,
        "position_embedding_type": "absolute",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    assert read_model_facts(str(tmp_path)).native_context == 512


def test_yarn_in_the_config_multiplies_the_original_length(tmp_path: Path) -> None:
    config = {
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "hidden_size": 256,
        "max_position_embeddings": 40960,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    facts = read_model_facts(str(tmp_path), vllm_version="0.29.0")
    assert facts.native_context == 131072
    assert facts.context_for_version("0.29.0") == 131072
    assert facts.context_for_version("0.30.0") == 40960
    assert facts.rope_scaling == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 32768,
    }


def test_facts_survive_a_round_trip_through_a_dict() -> None:
    facts = read_model_facts(str(DEMO_MODEL))
    again = ModelFacts.from_dict(json.loads(json.dumps(facts.to_dict())))
    assert again == facts


def test_a_directory_without_config_json_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=r"has no config\.json"):
        read_model_facts(str(tmp_path))


def test_malformed_json_is_reported_as_such(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match="not valid JSON"):
        read_model_facts(str(tmp_path))


def test_a_malformed_json_message_names_the_line_and_column_once(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen\x01"}')
    with pytest.raises(ModelConfigError) as raised:
        read_model_facts(str(tmp_path))
    assert "(Invalid control character at line 1, column 21)" in str(raised.value)
    assert "at at" not in str(raised.value)


def test_a_config_without_any_length_key_gets_the_2048_vllm_assumes(tmp_path: Path) -> None:
    config = {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 256}
    (tmp_path / "config.json").write_text(json.dumps(config))
    facts = read_model_facts(str(tmp_path))
    assert (facts.native_context, facts.default_context) == (2048, 2048)


def test_a_config_without_layers_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    with pytest.raises(ModelConfigError, match="names no layers"):
        read_model_facts(str(tmp_path))


def test_an_uncached_repo_is_refused_when_the_hub_is_not_allowed(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="not in the Hugging Face cache"):
        read_model_facts("acme/absent", cache_dir=str(tmp_path), local_files_only=True)


def test_an_uncached_repo_offline_says_the_hub_cannot_be_reached(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="hub cannot be reached") as info:
        read_model_facts("acme/absent", cache_dir=str(tmp_path), token="hf_secret_token_value")
    assert "hf_secret_token_value" not in str(info.value)
