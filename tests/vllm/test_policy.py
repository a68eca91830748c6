"""The launch policy finds the largest context against the stand-in and leaves no process behind."""

from __future__ import annotations

import json
import threading
import time

import pytest

from launches.contract import LimitLearnedPayload
from launches.vllm.argv import ServeOptions
from launches.vllm.policy import LaunchRequest, LaunchResult, run_launch
from tests.vllm.conftest import DEMO_MODEL, STANDIN_API_SERVER, STANDIN_SERVE, free_port, group_gone, recorder

SMALL_CARD = {"AIFRED_STANDIN_GPU_TOTAL_MIB": "12288", "AIFRED_STANDIN_WEIGHTS_MIB": "5837"}
BIG_CARD = {"AIFRED_STANDIN_GPU_TOTAL_MIB": "81920", "AIFRED_STANDIN_WEIGHTS_MIB": "5837"}
FAST = {"AIFRED_STANDIN_LOAD_SECONDS": "0.2", "AIFRED_STANDIN_TEARDOWN_SECONDS": "5"}


def launch(version: str, card: dict[str, str], **kwargs) -> tuple[LaunchResult, list[tuple[str, dict]]]:
    events: list[tuple[str, dict]] = []
    env = {
        **card,
        **FAST,
        "AIFRED_STANDIN_VLLM_VERSION": version,
        "HF_TOKEN": "hf_very_secret",
        **kwargs.pop("env", {}),
    }
    request = LaunchRequest(
        options=ServeOptions(model=str(DEMO_MODEL), port=free_port()),
        base_command=kwargs.pop("base_command", STANDIN_SERVE),
        extra_env=env,
        ready_timeout=kwargs.pop("ready_timeout", 30),
        **kwargs,
    )
    result = run_launch(request, on_event=recorder(events))
    return result, events


def finish(result: LaunchResult) -> None:
    if result.process is not None:
        result.process.stop(5)
    for attempt_pgid in [result.pgid] if result.pgid else []:
        assert group_gone(attempt_pgid)


def test_native_context_that_fits_starts_once_and_reports_the_kv_capacity_without_calling_it_a_limit() -> (
    None
):
    result, _ = launch("0.10.2", BIG_CARD)
    try:
        assert result.outcome == "ready"
        assert [a.requested_len for a in result.attempts] == [40960]
        assert result.max_model_len == 40960
        # The KV capacity is not always a length vLLM accepts, so it is a hint, never a learned limit.
        assert (result.learned_limit, result.learned_from) == (None, "fits")
        assert result.kv_capacity_tokens > 40960
    finally:
        finish(result)


def test_without_auto_fit_a_ceiling_hint_is_where_the_first_start_begins() -> None:
    two_stage, _ = launch("0.10.2", SMALL_CARD, detect_only=True)
    hint = two_stage.learned_limit + 512
    result, _ = launch("0.10.2", SMALL_CARD, detect_only=True, ceiling_hint=hint)
    # Above what fits, so vLLM refuses and its number corrects the hint in the second start.
    assert [a.requested_len for a in result.attempts] == [hint, two_stage.learned_limit]
    assert (result.learned_limit, result.learned_from) == (two_stage.learned_limit, "refusal")


def test_a_ceiling_hint_that_fits_starts_once() -> None:
    result, _ = launch("0.10.2", SMALL_CARD, detect_only=True, ceiling_hint=20000)
    assert [a.requested_len for a in result.attempts] == [20000 // 16 * 16]
    assert result.outcome == "ready"


def test_a_refused_native_context_is_retried_at_exactly_the_printed_number() -> None:
    result, events = launch("0.10.2", SMALL_CARD, detect_only=True)
    assert result.outcome == "ready"
    assert [a.requested_len for a in result.attempts] == [40960, 27168]
    assert [a.outcome for a in result.attempts] == ["context_too_long", "ready"]
    assert (result.max_model_len, result.learned_limit, result.learned_from) == (27168, 27168, "refusal")
    first = result.attempts[0]
    # Stopped on the refusal line, well before the stand-in's 5 s teardown.
    assert first.duration < 4
    assert result.attempts[1].started_at - first.ended_at < 0.5
    assert group_gone(result.pgid)
    kinds = [k for k, _ in events]
    assert kinds[0] == "attempt_started" and kinds[-1] == "ready"
    assert "limit_learned" in kinds and "log" in kinds
    # The launcher stopped the refused start itself: its exit code is the answer to that stop.
    finished = [data for kind, data in events if kind == "attempt_finished"]
    assert [data["stopped_by_launcher"] for data in finished] == [True, False]
    assert "hf_very_secret" not in json.dumps(events) + json.dumps(result.to_dict())


def test_a_saved_limit_starts_once_at_that_limit() -> None:
    result, _ = launch("0.10.2", SMALL_CARD, known_limit=27168, detect_only=True)
    assert [a.requested_len for a in result.attempts] == [27168]
    assert result.outcome == "ready" and result.max_model_len == 27168


def test_auto_fit_starts_once_and_learns_the_same_number_as_two_stages() -> None:
    result, events = launch("0.32.0", SMALL_CARD, detect_only=True)
    assert [a.requested_len for a in result.attempts] == ["auto"]
    assert (result.max_model_len, result.learned_limit, result.learned_from) == (27168, 27168, "auto_fit")
    learned = LimitLearnedPayload(max_model_len=27168, learned_from="auto_fit", kv_capacity_tokens=27168)
    assert ("limit_learned", learned.to_dict()) in events


def test_the_api_server_module_form_works_as_well() -> None:
    result, _ = launch(
        "0.32.0", BIG_CARD, base_command=STANDIN_API_SERVER, detect_only=True, vllm_version="0.32.0"
    )
    assert result.outcome == "ready" and result.learned_from == "fits"
    assert result.max_model_len == 40960


@pytest.mark.parametrize("version", ["0.10.2", "0.32.0"])
def test_yarn_four_times_a_native_context_that_fits_learns_the_kv_ceiling(version: str) -> None:
    result, _ = launch(
        version, SMALL_CARD, yarn_factor=4.0, detect_only=True, env={"AIFRED_STANDIN_WEIGHTS_MIB": "3000"}
    )
    assert result.outcome == "ready"
    assert result.wanted_len == 163840
    assert 40960 < result.max_model_len < 163840
    assert result.learned_limit == result.max_model_len


def test_a_cap_below_what_auto_fit_chose_means_one_more_start_at_the_cap() -> None:
    result, _ = launch("0.32.0", BIG_CARD, context_cap=16384, detect_only=True)
    assert [a.requested_len for a in result.attempts] == ["auto", 16384]
    assert result.max_model_len == 16384


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({"AIFRED_STANDIN_GPU_FREE_MIB": "6000"}, "gpu_busy"),
        ({"AIFRED_STANDIN_WEIGHTS_MIB": "20000"}, "weights_do_not_fit"),
        ({"AIFRED_STANDIN_CRASH": "1"}, "crashed"),
    ],
)
def test_failures_that_are_not_about_the_context_fail_at_once_and_teach_nothing(env, outcome) -> None:
    result, events = launch("0.32.0", SMALL_CARD, env=env)
    assert result.outcome == "failed"
    assert [a.outcome for a in result.attempts] == [outcome]
    assert result.learned_limit is None
    assert "limit_learned" not in [k for k, _ in events]
    assert events[-1][0] == "failed" and events[-1][1]["reason"]
    assert result.process is None


def test_a_server_that_never_becomes_ready_times_out_and_is_stopped() -> None:
    result, _ = launch("0.32.0", BIG_CARD, ready_timeout=2, env={"AIFRED_STANDIN_HANG": "1"})
    assert result.outcome == "timeout"
    assert result.attempts[0].outcome == "timeout"


def test_a_cancelled_launch_stops_the_server() -> None:
    cancel = threading.Event()
    env = {**BIG_CARD, **FAST, "AIFRED_STANDIN_VLLM_VERSION": "0.32.0", "AIFRED_STANDIN_HANG": "1"}
    request = LaunchRequest(
        options=ServeOptions(model=str(DEMO_MODEL), port=free_port()),
        base_command=STANDIN_SERVE,
        extra_env=env,
        ready_timeout=30,
    )
    events: list[tuple[str, dict]] = []
    threading.Timer(1.0, cancel.set).start()
    started = time.monotonic()
    result = run_launch(request, on_event=recorder(events), cancel=cancel)
    assert result.outcome == "cancelled"
    assert time.monotonic() - started < 10
    argv_pid_gone = [d for k, d in events if k == "attempt_finished"]
    assert argv_pid_gone and argv_pid_gone[0]["outcome"] == "cancelled"


def test_before_retry_is_called_between_the_refusal_and_the_second_start() -> None:
    calls: list[float] = []
    env = {**SMALL_CARD, **FAST, "AIFRED_STANDIN_VLLM_VERSION": "0.8.5"}
    request = LaunchRequest(
        options=ServeOptions(model=str(DEMO_MODEL), port=free_port()),
        base_command=STANDIN_SERVE,
        extra_env=env,
        ready_timeout=30,
        detect_only=True,
    )
    result = run_launch(request, before_retry=lambda: calls.append(time.time()))
    assert len(calls) == 1
    assert result.attempts[0].ended_at <= calls[0] <= result.attempts[1].started_at


def test_the_request_and_result_are_json_serialisable() -> None:
    request = LaunchRequest(options=ServeOptions(model="m", extra_args=("--seed", "1")), launch_id=7)
    assert LaunchRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


def test_a_request_shown_or_serialised_never_carries_the_hugging_face_token() -> None:
    request = LaunchRequest(
        options=ServeOptions(model="org/gated"), extra_env={"HF_TOKEN": "hf_very_secret", "NO_COLOR": "1"}
    )
    assert "hf_very_secret" not in repr(request)
    assert "hf_very_secret" not in json.dumps(request.to_dict())
    assert request.to_dict()["extra_env"]["NO_COLOR"] == "1"
