"""Managed flags are refused in every spelling vLLM accepts; other flags change the fingerprint."""

from __future__ import annotations

import pytest

from gpus.fingerprint import memory_fingerprint
from launches.vllm.flags import ExtraArgsError, memory_relevant_args, parse_extra_args

BASE = {
    "gpu_memory_utilization": 0.9,
    "dtype": "auto",
    "quantization": None,
    "kv_cache_dtype": "auto",
    "tensor_parallel_size": 1,
    "max_num_batched_tokens": None,
    "enforce_eager": False,
    "vllm_version": "0.32.0",
}


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("--gpu-memory 0.6", "--gpu-memory-utilization"),
        ("--max-model 1024", "--max-model-len"),
        ("--por 1", "--port"),
        ("--max_model_len=4096", "--max-model-len"),
        ("--hf-overrides.max_position_embeddings 262144", "--hf-overrides"),
        ("--hf_overrides.rope_parameters.factor=4", "--hf-overrides"),
        ("--gpu_memory_utilization=0.5", "--gpu-memory-utilization"),
        ("--no-enforce-eager", "--enforce-eager"),
        ("-tp=2", "-tp"),
        ("--kv-cache-dt fp8", "--kv-cache-dtype"),
        ("--trust-remote-code --tensor-parallel 2", "--tensor-parallel-size"),
    ],
)
def test_every_spelling_of_a_managed_flag_is_refused(text: str, flag: str) -> None:
    with pytest.raises(ExtraArgsError, match=flag):
        parse_extra_args(text)


@pytest.mark.parametrize(
    "text", ["--max-num-seqs 8", "--trust-remote-code", "--block-size 32", "-O3", "--seed -1"]
)
def test_flags_the_launcher_does_not_manage_pass(text: str) -> None:
    assert parse_extra_args(text)


def test_memory_neutral_flags_and_their_values_leave_the_fingerprint_alone() -> None:
    plain, _ = memory_fingerprint(BASE)
    neutral, _ = memory_fingerprint(
        {
            **BASE,
            "extra_args": [
                "--chat-template",
                "/t.jinja",
                "--enable-auto-tool-choice",
                "--tool-call-parser=hermes",
            ],
        }
    )
    assert neutral == plain


@pytest.mark.parametrize(
    "extra",
    [
        ["--max-num-seqs", "8"],
        ["--kv-cache-memory", "4G"],
        ["--block-size", "32"],
        ["--cpu-offload-gb", "4"],
        ["--num-gpu-blocks-override", "100"],
        ["--kv-offloading-size", "8"],
        ["--limit-mm-per-prompt", '{"image": 2}'],
        ["-O3"],
        ["--compilation-config", '{"cudagraph_mode": "NONE"}'],
    ],
)
def test_a_memory_changing_extra_flag_changes_the_fingerprint(extra: list[str]) -> None:
    plain, _ = memory_fingerprint(BASE)
    changed, fields = memory_fingerprint({**BASE, "extra_args": extra})
    assert changed != plain
    assert fields["extra_args"] == memory_relevant_args(extra)


def test_spellings_of_the_same_flag_give_the_same_fingerprint() -> None:
    one, _ = memory_fingerprint({**BASE, "extra_args": ["--max_num_seqs=8"]})
    other, _ = memory_fingerprint({**BASE, "extra_args": ["--max-num-seqs", "8"]})
    assert one == other
