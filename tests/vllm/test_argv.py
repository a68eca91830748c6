"""The vLLM command line is built exactly as each vLLM era expects it."""

from __future__ import annotations

import json

import pytest

from launches.vllm.argv import ArgvError, ServeOptions, YarnSetting, build_argv, build_env

OPTIONS = ServeOptions(model="Qwen/Qwen3-8B-AWQ", port=8001, gpu_memory_utilization=0.9)
YARN = YarnSetting(factor=4.0, original_max_position_embeddings=32768, rope_theta=1000000.0)
SERVE = ["vllm", "serve"]
HEAD = [
    "vllm",
    "serve",
    "Qwen/Qwen3-8B-AWQ",
    "--host",
    "127.0.0.1",
    "--port",
    "8001",
    "--max-model-len",
    "131072",
    "--gpu-memory-utilization",
    "0.9",
    "--dtype",
    "auto",
]


def test_vllm_0_5_passes_yarn_with_the_legacy_type_key() -> None:
    argv = build_argv(SERVE, OPTIONS, max_model_len=131072, vllm_version="0.5.1", yarn=YARN)
    assert argv == [
        *HEAD,
        "--rope-scaling",
        '{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}',
    ]


@pytest.mark.parametrize("version", ["0.6.4.post1", "0.8.5"])
def test_vllm_0_6_to_0_8_passes_yarn_through_rope_scaling_with_rope_type(version: str) -> None:
    argv = build_argv(SERVE, OPTIONS, max_model_len=131072, vllm_version=version, yarn=YARN)
    assert argv == [
        *HEAD,
        "--rope-scaling",
        '{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}',
    ]


def test_vllm_0_11_0_still_uses_the_rope_scaling_flag() -> None:
    argv = build_argv(SERVE, OPTIONS, max_model_len=131072, vllm_version="0.11.0", yarn=YARN)
    assert argv[-2] == "--rope-scaling"


def test_vllm_0_11_1_passes_rope_scaling_inside_hf_overrides() -> None:
    argv = build_argv(SERVE, OPTIONS, max_model_len=131072, vllm_version="0.11.1", yarn=YARN)
    assert argv == [
        *HEAD,
        "--hf-overrides",
        '{"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}',
    ]


@pytest.mark.parametrize("version", ["0.12.0", "0.20.1", "0.29.0"])
def test_vllm_0_12_to_0_29_passes_rope_parameters_with_the_theta(version: str) -> None:
    argv = build_argv(SERVE, OPTIONS, max_model_len=131072, vllm_version=version, yarn=YARN)
    assert argv == [
        *HEAD,
        "--hf-overrides",
        '{"rope_parameters": {"rope_type": "yarn", "factor": 4.0, '
        '"original_max_position_embeddings": 32768, "rope_theta": 1000000}}',
    ]


@pytest.mark.parametrize("version", ["0.30.0", "0.32.0"])
def test_vllm_0_30_and_later_also_overrides_max_position_embeddings(version: str) -> None:
    argv = build_argv(SERVE, OPTIONS, max_model_len="auto", vllm_version=version, yarn=YARN)
    assert argv[argv.index("--max-model-len") + 1] == "auto"
    overrides = json.loads(argv[argv.index("--hf-overrides") + 1])
    assert overrides == {
        "max_position_embeddings": 131072,
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 32768,
            "rope_theta": 1000000,
        },
    }


def test_a_yarn_factor_of_one_adds_no_rope_flags() -> None:
    argv = build_argv(
        SERVE, OPTIONS, max_model_len=131072, vllm_version="0.32.0", yarn=YarnSetting(1.0, 40960, None)
    )
    assert argv == HEAD


def test_yarn_on_a_vllm_older_than_0_4_3_is_refused() -> None:
    with pytest.raises(ArgvError, match=r"0\.4\.3 or later"):
        build_argv(SERVE, OPTIONS, max_model_len=131072, vllm_version="0.4.2", yarn=YARN)


def test_auto_length_on_a_vllm_older_than_0_14_is_refused() -> None:
    with pytest.raises(ArgvError, match=r"0\.14\.0"):
        build_argv(SERVE, OPTIONS, max_model_len="auto", vllm_version="0.13.0")


def test_the_api_server_module_form_passes_the_model_as_a_flag() -> None:
    base = ["python", "-m", "vllm.entrypoints.openai.api_server"]
    options = ServeOptions(
        model="/models/q",
        quantization="awq",
        kv_cache_dtype="fp8",
        tensor_parallel_size=2,
        max_num_batched_tokens=4096,
        enforce_eager=True,
        served_model_name="q",
        revision="main",
        extra_args=("--seed", "1"),
    )
    argv = build_argv(base, options, max_model_len=26624, vllm_version="0.32.0")
    assert argv == [
        *base,
        "--model",
        "/models/q",
        "--revision",
        "main",
        "--served-model-name",
        "q",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--max-model-len",
        "26624",
        "--gpu-memory-utilization",
        "0.9",
        "--dtype",
        "auto",
        "--quantization",
        "awq",
        "--kv-cache-dtype",
        "fp8",
        "--tensor-parallel-size",
        "2",
        "--max-num-batched-tokens",
        "4096",
        "--enforce-eager",
        "--seed",
        "1",
    ]


@pytest.mark.parametrize("extra", [("--max-model-len", "9"), ("--max_model_len=9",), ("-tp", "2")])
def test_extra_arguments_that_repeat_a_managed_flag_are_refused(extra: tuple[str, ...]) -> None:
    options = ServeOptions(model="m", extra_args=extra)
    with pytest.raises(ArgvError, match="managed by the launcher"):
        build_argv(SERVE, options, max_model_len=4096, vllm_version="0.32.0")


def test_extra_arguments_with_spaces_stay_one_element() -> None:
    options = ServeOptions(model="m", extra_args=("--chat-template", "a b.jinja"))
    argv = build_argv(SERVE, options, max_model_len=4096, vllm_version="0.32.0")
    assert argv[-2:] == ["--chat-template", "a b.jinja"]


def test_the_environment_pins_the_gpus_and_turns_colour_off() -> None:
    env = build_env(["GPU-aaa", "GPU-bbb"], {"PATH": "/usr/bin"}, hf_token="hf_x")
    assert env == {
        "PATH": "/usr/bin",
        "CUDA_VISIBLE_DEVICES": "GPU-aaa,GPU-bbb",
        "NO_COLOR": "1",
        "VLLM_LOGGING_COLOR": "0",
        "PYTHONUNBUFFERED": "1",
        "HF_TOKEN": "hf_x",
    }


def test_the_environment_leaves_the_gpus_alone_when_none_are_named() -> None:
    assert "CUDA_VISIBLE_DEVICES" not in build_env(None, {})
