"""vLLM versions are detected from the installed command and mapped to what they can do."""

from __future__ import annotations

import sys

import pytest

from launches.vllm.versions import (
    VllmVersionError,
    detect_vllm_version,
    supports_auto_max_model_len,
    version_query_command,
    yarn_flag_form,
)


@pytest.mark.parametrize(
    ("version", "form"),
    [
        ("0.4.3", "rope_scaling_flag"),
        ("0.11.0", "rope_scaling_flag"),
        ("0.11.1", "hf_overrides_rope_scaling"),
        ("0.12.0", "hf_overrides_rope_parameters"),
        ("0.29.0", "hf_overrides_rope_parameters"),
        ("0.30.0", "hf_overrides_rope_parameters_with_max_pos"),
    ],
)
def test_each_version_gets_its_yarn_flag_form(version: str, form: str) -> None:
    assert yarn_flag_form(version) == form


def test_yarn_before_0_4_3_is_a_clear_error() -> None:
    with pytest.raises(VllmVersionError, match=r"0\.4\.3"):
        yarn_flag_form("0.4.2")


def test_auto_context_starts_with_0_14() -> None:
    assert not supports_auto_max_model_len("0.13.0")
    assert supports_auto_max_model_len("0.14.0")


def test_the_version_query_matches_the_command_form() -> None:
    assert version_query_command(["vllm", "serve"]) == ["vllm", "--version"]
    assert version_query_command(["py", "-m", "vllm.entrypoints.openai.api_server"]) == [
        "py",
        "-c",
        "import vllm; print(vllm.__version__)",
    ]


@pytest.mark.parametrize("base", [[sys.executable, "-m", "launches.vllm.standin", "serve"]])
def test_the_version_is_read_from_the_stand_in(base: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIFRED_STANDIN_VLLM_VERSION", "0.10.2")
    assert detect_vllm_version(base) == "0.10.2"


def test_a_missing_vllm_command_is_reported() -> None:
    with pytest.raises(VllmVersionError, match="not found"):
        detect_vllm_version(["no-such-vllm-command-here", "serve"])


def test_a_failing_vllm_command_is_reported() -> None:
    with pytest.raises(VllmVersionError, match="failed"):
        detect_vllm_version([sys.executable, "-c", "import sys; sys.exit(3)", "serve"])
