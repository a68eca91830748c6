"""On vLLM 0.14.0 and later the launcher lets vLLM fit the length itself (`--max-model-len auto`)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(900)]


def test_auto_fit_learns_the_same_limit_as_the_two_stage_launch_in_one_start(two_stage, launches):
    run = launches.run(1, vllm_version="0.32.0", detect_only=True)

    assert run.result is not None, run.describe()
    assert run.result["outcome"] == "ready", run.describe()
    (attempt,) = run.result["attempts"]
    argv = attempt["argv"]
    assert argv[argv.index("--max-model-len") + 1] == "auto"
    assert run.result["learned_limit"] == two_stage.run.result["learned_limit"]
    assert run.result["max_model_len"] == two_stage.run.result["learned_limit"]
