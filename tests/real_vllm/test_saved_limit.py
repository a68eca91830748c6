"""A launch that already knows the limit for this GPU starts once, at that limit."""

from __future__ import annotations

import pytest

from tests.real_vllm.recording import recorded_launches

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def saved_limit_launch(two_stage, vllm_python, model_dir):
    """One launch with the limit the two-stage launch learned, shared by the tests below."""
    learned = two_stage.run.result["learned_limit"]
    with recorded_launches("saved-limit-module", vllm_python, model_dir) as launches:
        run = launches.run(1, vllm_version="0.32.0", known_limit=learned, detect_only=True)
    return learned, run


def test_a_launch_with_the_saved_limit_starts_in_one_attempt(saved_limit_launch):
    learned, run = saved_limit_launch

    assert run.result is not None, run.describe()
    assert run.result["outcome"] == "ready", run.describe()
    (attempt,) = run.result["attempts"]
    assert attempt["requested_len"] == learned
    argv = attempt["argv"]
    assert argv[argv.index("--max-model-len") + 1] == str(learned)
    assert run.result["max_model_len"] == learned


def test_a_ready_start_does_not_learn_a_limit_above_what_vllm_accepts(saved_limit_launch):
    # vLLM 0.32.0 logs "CPU KV cache size: 32,768 tokens" for a cache whose longest accepted request
    # is 32,640 tokens: the KV capacity is not itself a length that starts.
    learned, run = saved_limit_launch

    assert run.result is not None, run.describe()
    relearned = run.result["learned_limit"]
    assert relearned is None or relearned <= learned, (
        f"a start at the saved {learned} learned {relearned} ({run.result['learned_from']}), "
        f"which vLLM refuses; KV capacity logged: {run.result['kv_capacity_tokens']}"
    )
