"""Every event kind's payload survives a trip through JSON, and a malformed one is refused naming its field.

The samples are what the GPU worker and the launch policy send (``launches.gpu.runtime``,
``launches.vllm.policy``); the malformed cases are derived from the payload classes themselves, so a
field added to a payload is checked without a new row here.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from typing import Any

import pytest

from launches.contract import (
    PAYLOADS,
    AcceptedPayload,
    AdoptedPayload,
    AttemptFinishedPayload,
    AttemptStartedPayload,
    CancelledPayload,
    ContractError,
    CrashedPayload,
    EventKind,
    FailedPayload,
    HealthyPayload,
    LimitLearnedPayload,
    LogPayload,
    ModelFactsPayload,
    Outcome,
    Payload,
    ReadyPayload,
    RestartingPayload,
    StoppedPayload,
    UnhealthyPayload,
    WorkerRestartedPayload,
    parse_event,
    parse_payload,
)
from launches.vllm.modelinfo import read_model_facts
from tests.vllm.conftest import DEMO_MODEL

ARGV = ["vllm", "serve", "Qwen/Qwen3-8B-AWQ", "--max-model-len", "40960"]
TAIL = ["INFO Loading weights took 4.1 GiB", "ERROR ... estimated maximum model length is 26624"]

# One or more payloads per kind, as the senders fill them.
SAMPLES: list[Payload] = [
    AcceptedPayload(host="desk-3060", worker_pid=4141, port=8101),
    ModelFactsPayload(facts=read_model_facts(str(DEMO_MODEL)).to_dict()),
    ModelFactsPayload(error="config.json is not valid JSON (Expecting value at line 1, column 1)."),
    AttemptStartedPayload(attempt=1, argv=ARGV, requested_len=40960),
    AttemptStartedPayload(attempt=2, argv=ARGV[:3], requested_len="auto"),
    AttemptFinishedPayload(
        attempt=1,
        outcome=Outcome.CONTEXT_TOO_LONG,
        parsed_len=26624,
        exit_code=1,
        stopped_by_launcher=True,
        message="KV cache too small",
        log_tail=TAIL,
        started_at=1764470000.25,
        ended_at=1764470031.5,
    ),
    AttemptFinishedPayload(attempt=1, outcome=Outcome.PORT_IN_USE, message="Port 8101 is in use"),
    LogPayload(attempt=1, lines=TAIL),
    LimitLearnedPayload(max_model_len=26624, learned_from="refusal", kv_capacity_tokens=26800),
    LimitLearnedPayload(max_model_len=40960, learned_from="fits", kv_capacity_tokens=None, max_num_seqs=64),
    ReadyPayload(url="http://127.0.0.1:8101", max_model_len=26624, kv_capacity_tokens=26800, pid=7, pgid=7),
    FailedPayload(reason="No free port between 8100 and 8199 on desk.", outcome=Outcome.REFUSED),
    CancelledPayload(reason="Stopped before the start began."),
    StoppedPayload(reason="YaRN test: the server came up.", test_passed=True, max_model_len=81920),
    StoppedPayload(
        reason="Stopped (the GPU worker restarted during the stop).", outcome=Outcome.WORKER_RESTARTED
    ),
    CrashedPayload(reason="Crash loop.", outcome=Outcome.CRASH_LOOP, exit_code=-9, log_tail=TAIL),
    RestartingPayload(
        restarts=1,
        next_try_in=2.5,
        reason="The server exited; restart 1 of 3.",
        restart_limit=3,
        log_tail=TAIL,
    ),
    UnhealthyPayload(reason="/health does not answer."),
    HealthyPayload(),
    AdoptedPayload(pid=7, pgid=7, url="http://127.0.0.1:8101"),
    WorkerRestartedPayload(host="desk-3060"),
]


def required(payload: type[Payload]) -> list[str]:
    if payload is ModelFactsPayload:
        return ["native_context"]  # its facts travel as the event's own keys
    return [
        item.name for item in fields(payload) if item.default is MISSING and item.default_factory is MISSING
    ]


def sample(kind: EventKind) -> dict[str, Any]:
    return next(item for item in SAMPLES if item.kind == kind).to_dict()


def typed_fields() -> list[tuple[EventKind, str]]:
    return [
        (kind, item.name)
        for kind, payload in PAYLOADS.items()
        if payload is not ModelFactsPayload
        for item in fields(payload)
    ]


def ranged_fields() -> list[tuple[EventKind, str, str, float]]:
    cases = []
    for kind, payload in PAYLOADS.items():
        for item in fields(payload):
            if item.metadata.get("minimum") is not None:
                cases.append((kind, item.name, "below", item.metadata["minimum"] - 1))
            if item.metadata.get("maximum") is not None:
                cases.append((kind, item.name, "above", item.metadata["maximum"] + 1))
    return cases


def test_every_event_kind_has_one_payload_class_and_a_sample() -> None:
    assert set(PAYLOADS) == set(EventKind)
    assert all(payload.kind == kind for kind, payload in PAYLOADS.items())
    assert {item.kind for item in SAMPLES} == set(EventKind)


@pytest.mark.parametrize("payload", SAMPLES, ids=lambda item: str(item.kind))
def test_a_payload_survives_a_trip_through_json_and_reads_back_as_sent(payload: Payload) -> None:
    sent = json.loads(json.dumps(payload.to_dict()))
    assert type(payload).from_dict(sent) == payload
    assert type(payload).from_dict(sent).to_dict() == sent
    event = parse_event(7, 3, str(payload.kind), sent, "2026-11-30T05:00:00+00:00")
    assert (event.kind, event.payload) == (payload.kind, payload)


@pytest.mark.parametrize(
    ("kind", "name"),
    [(kind, name) for kind, payload in PAYLOADS.items() for name in required(payload)],
)
def test_a_payload_without_a_field_its_kind_needs_is_refused_naming_it(kind: EventKind, name: str) -> None:
    data = sample(kind)
    del data[name]
    with pytest.raises(ContractError, match=rf"^data\.{name}: missing"):
        parse_payload(kind, data)


@pytest.mark.parametrize(("kind", "name"), typed_fields())
def test_a_field_of_the_wrong_type_is_refused_naming_it(kind: EventKind, name: str) -> None:
    with pytest.raises(ContractError, match=rf"^data\.{name}: "):
        parse_payload(kind, {**sample(kind), name: {"an": "object"}})


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        (EventKind.ATTEMPT_STARTED, "attempt", "1"),
        (EventKind.ATTEMPT_STARTED, "attempt", True),
        (EventKind.ATTEMPT_STARTED, "attempt", 1.0),
        (EventKind.ATTEMPT_STARTED, "argv", "vllm serve"),
        (EventKind.ATTEMPT_STARTED, "argv", ["vllm", 8000]),
        (EventKind.ATTEMPT_STARTED, "requested_len", "max"),
        (EventKind.ATTEMPT_FINISHED, "outcome", "exploded"),
        (EventKind.ATTEMPT_FINISHED, "stopped_by_launcher", 1),
        (EventKind.ATTEMPT_FINISHED, "started_at", "2026-11-30T05:00:00"),
        (EventKind.LIMIT_LEARNED, "learned_from", "guess"),
        (EventKind.READY, "url", None),
        (EventKind.FAILED, "reason", True),
        (EventKind.FAILED, "outcome", None),
        (EventKind.RESTARTING, "next_try_in", "soon"),
        (EventKind.MODEL_FACTS, "native_context", "40960"),
    ],
)
def test_a_value_close_to_right_is_still_refused_naming_its_field(
    kind: EventKind, name: str, value: Any
) -> None:
    with pytest.raises(ContractError, match=rf"^data\.{name}: "):
        parse_payload(kind, {**sample(kind), name: value})


@pytest.mark.parametrize(("kind", "name", "side", "value"), ranged_fields())
def test_a_number_out_of_its_range_is_refused_naming_it(
    kind: EventKind, name: str, side: str, value: float
) -> None:
    with pytest.raises(ContractError, match=rf"^data\.{name}: .* is {side} "):
        parse_payload(kind, {**sample(kind), name: value})


@pytest.mark.parametrize("kind", list(EventKind))
def test_a_key_no_payload_of_the_kind_has_is_refused_naming_it(kind: EventKind) -> None:
    # A model's facts are open (what the host read of config.json); its error stands alone.
    data = ModelFactsPayload(error="x").to_dict() if kind == EventKind.MODEL_FACTS else sample(kind)
    with pytest.raises(ContractError, match=r"^data\.surplus: "):
        parse_payload(kind, {**data, "surplus": 1})


@pytest.mark.parametrize("kind", ["exploded", "", None, 3, "READY"])
def test_an_unknown_kind_is_refused_naming_the_kind(kind: Any) -> None:
    with pytest.raises(ContractError, match=r"^kind: "):
        parse_event(7, 1, kind, {})


@pytest.mark.parametrize("data", [None, [], "url=http://h:8000", 7])
def test_a_payload_that_is_no_object_is_refused(data: Any) -> None:
    with pytest.raises(ContractError, match=r"^data: expected an object"):
        parse_event(7, 1, "ready", data)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("attempt_started", {"attempt": 1, "argv": "vllm serve"}, "data.argv"),
        ("limit_learned", {"max_model_len": 0, "learned_from": "refusal"}, "data.max_model_len"),
        ("attempt_finished", {"attempt": 1, "outcome": "exploded"}, "data.outcome"),
        ("ready", {"url": "http://h:8000", "served": 4096}, "data.served"),
        ("exploded", {}, "kind"),
    ],
)
def test_the_control_side_keeps_a_refused_event_with_its_reason_and_applies_the_next_ones(
    settings, admin_client, kind: str, data: dict, field: str
) -> None:
    from django.urls import reverse

    from launches.models import Launch
    from tests.factories import make_config, make_gpu, make_host

    host = make_host()
    make_gpu(host, 0)
    launch = Launch.objects.start(make_config(host=host), user=None)
    settings.RECONCILE_GRACE_SECONDS = 0
    assert launch.apply_event(1, kind, data) is False
    launch.apply_event(2, "accepted", {"host": host.name})
    launch.refresh_from_db()
    refused = launch.refused_events.get()
    assert refused.seq == 1 and refused.reason.startswith(f"{field}:")
    assert (launch.last_seq, launch.status) == (2, Launch.Status.STARTING)
    page = admin_client.get(reverse("admin:launches_refusedevent_changelist")).content.decode()
    assert field in page
