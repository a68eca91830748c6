"""YaRN on vLLM 0.32.0: the factor extends the context where the KV cache allows it, else is capped."""

from __future__ import annotations

import pytest

from tests.real_vllm import support

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(900)]


def test_yarn_factor_two_serves_twice_the_native_length_when_the_cache_holds_it(launches):
    run = launches.run(4, vllm_version="0.32.0", yarn_factor=2.0)

    assert run.result is not None, run.describe()
    assert run.result["outcome"] == "ready", run.describe()
    assert len(run.result["attempts"]) == 1
    assert run.result["max_model_len"] == support.YARN_FACTOR_2_CONTEXT
    assert support.served_max_model_len(run.result["url"]) == support.YARN_FACTOR_2_CONTEXT

    pgid = int(run.result["pgid"])
    support.stop_group(pgid)
    assert not support.group_members(pgid), "the server's process group outlived its stop"


def test_yarn_is_capped_at_the_saved_limit_without_a_failed_attempt(two_stage, launches):
    learned = two_stage.run.result["learned_limit"]

    run = launches.run(1, vllm_version="0.32.0", known_limit=learned, yarn_factor=2.0, detect_only=True)

    assert run.result is not None, run.describe()
    assert run.result["outcome"] == "ready", run.describe()
    if "wanted_len" in run.result:
        assert run.result["wanted_len"] == support.YARN_FACTOR_2_CONTEXT
    (attempt,) = run.result["attempts"]
    assert attempt["outcome"] == "ready"
    assert attempt["requested_len"] == learned < support.YARN_FACTOR_2_CONTEXT
    assert "--hf-overrides" in attempt["argv"]
    assert run.result["max_model_len"] == learned
