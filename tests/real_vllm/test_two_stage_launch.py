"""Old-style launch: vLLM refuses the native length, the launcher reads its number and restarts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.real_vllm import support

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(900)]

ESTIMATE = re.compile(r"estimated maximum model length is (\d+)")
BLOCK_SIZE = 16


def test_a_refused_native_length_is_restarted_at_the_length_vllm_printed(two_stage):
    result = two_stage.run.result
    assert len(result["attempts"]) == 2, two_stage.run.describe()
    first, second = result["attempts"]

    assert first["requested_len"] == support.NATIVE_CONTEXT
    assert first["outcome"] == "context_too_long"
    printed = int(ESTIMATE.search(support.log_tail(first)).group(1))
    assert 0 < printed < support.NATIVE_CONTEXT
    assert first["parsed_len"] == printed
    # The launcher retries at the printed number rounded down to vLLM's block size.
    restart_len = printed - printed % BLOCK_SIZE
    assert result["learned_limit"] == restart_len
    assert result["learned_from"] == "refusal"

    assert second["requested_len"] == restart_len
    assert second["outcome"] == "ready"
    assert result["max_model_len"] == restart_len
    assert two_stage.served_max_model_len == restart_len, "/v1/models reports another max_model_len"


def test_the_refused_attempt_keeps_vllms_own_message_and_its_log_file(two_stage):
    first = two_stage.run.result["attempts"][0]

    assert "To serve at least one request with the model's max seq len (40960)" in support.log_tail(first)
    assert first["log_path"], "the failed attempt names no log file"
    log = Path(first["log_path"])
    assert log.is_file()
    assert "estimated maximum model length is" in log.read_text(errors="replace")
