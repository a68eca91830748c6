"""The control side applies GPU workers' reports and events: once, in order, into the right rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from gpus.models import DetectedLimit, Gpu, Host
from launches import tasks
from launches.models import Launch
from tests.factories import demo_model, make_config, make_launch
from tests.workers.conftest import RTX_3060, TEST_REDIS_URL

pytestmark = pytest.mark.django_db


def report(host: str = "desk", uuid: str = "GPU-aaa", driver: str = "550.54.15", **extra) -> dict:
    name, mib = RTX_3060.rsplit(":", 1)
    return {
        "host": host,
        "worker_started_at": timezone.now().isoformat(),
        "vllm_command": "vllm serve",
        "vllm_version": "0.11.0",
        "simulated": False,
        "nvml_status": "",
        "driver_version": driver,
        "gpus": [
            {
                "index": 0,
                "name": name,
                "uuid": uuid,
                "memory_total_mib": int(mib),
                "memory_free_mib": 12000,
                "compute_capability": "8.6",
            }
        ],
        "running_servers": [],
        **extra,
    }


@pytest.fixture
def launch(settings) -> Launch:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    tasks.host_report(report())
    config = make_config("c", model=demo_model(), host=Host.objects.get(), quantization="awq")
    return make_launch(config, fingerprint="f" * 32, task_id="spec-of-this-launch")


def test_a_host_report_creates_the_host_its_profile_and_its_card() -> None:
    tasks.host_report(report(simulated=True))
    host = Host.objects.get(name="desk")
    assert host.is_online and host.simulated and host.vllm_version == "0.11.0"
    card = Gpu.objects.current().get(host=host)
    assert (card.uuid, card.profile.name, card.profile.memory_total_mib) == (
        "GPU-aaa",
        "NVIDIA GeForce RTX 3060",
        12288,
    )


@pytest.mark.parametrize(
    ("changed", "words"), [({"uuid": "GPU-bbb"}, "UUID GPU-aaa -> GPU-bbb"), ({"driver": "560.1"}, "driver")]
)
def test_a_card_whose_uuid_or_driver_changed_is_a_gpu_change(changed: dict, words: str) -> None:
    tasks.host_report(report())
    tasks.host_report(report(**changed))
    old, new = Gpu.objects.order_by("pk")
    assert old.retired_at is not None and words in old.retired_reason
    assert new.retired_at is None and new.profile_id == old.profile_id


def test_a_host_without_nvml_keeps_its_cards_and_says_why() -> None:
    tasks.host_report(report())
    tasks.host_report(report(gpus=[], nvml_status="No NVIDIA driver found"))
    assert Gpu.objects.current().count() == 1
    assert Host.objects.get().nvml_status == "No NVIDIA driver found"


def test_events_are_applied_in_order_even_when_one_arrives_ahead_of_a_gap(launch: Launch) -> None:
    ready = {
        "url": "http://127.0.0.1:8000",
        "max_model_len": 27168,
        "kv_capacity_tokens": 27200,
        "pid": 1,
        "pgid": 1,
    }
    tasks.apply_event(launch.pk, 3, "ready", ready, spec_id=launch.task_id)
    launch.refresh_from_db()
    assert (launch.status, launch.last_seq) == ("queued", 0)

    tasks.apply_event(launch.pk, 1, "accepted", {"host": "desk"}, spec_id=launch.task_id)
    launch.refresh_from_db()
    assert (launch.status, launch.last_seq) == ("starting", 1)

    tasks.apply_event(
        launch.pk,
        2,
        "attempt_started",
        {"attempt": 1, "requested_len": 27168, "argv": ["vllm"]},
        spec_id=launch.task_id,
    )
    launch.refresh_from_db()
    assert (launch.status, launch.last_seq, launch.context_length) == ("ready", 3, 27168)
    assert launch.server_url == "http://desk:8000"


def test_a_duplicated_event_changes_nothing(launch: Launch) -> None:
    learned = {"max_model_len": 27168, "learned_from": "refusal", "kv_capacity_tokens": None}
    tasks.apply_event(launch.pk, 1, "limit_learned", learned, spec_id=launch.task_id)
    limit = DetectedLimit.objects.get()
    assert (limit.max_model_len, limit.launch_id) == (27168, launch.pk)

    again = {"max_model_len": 1, "learned_from": "refusal", "kv_capacity_tokens": None}
    assert launch.apply_event(1, "limit_learned", again) is False
    assert DetectedLimit.objects.get().max_model_len == 27168
    assert launch.events.count() == 1


def test_a_launch_whose_worker_went_silent_is_marked_lost_with_the_reason(launch: Launch, settings) -> None:
    launch.transition(Launch.Status.STARTING)
    assert Launch.objects.mark_lost() == 0
    Host.objects.update(last_heartbeat=timezone.now() - timedelta(seconds=settings.LAUNCH_LOST_SECONDS + 1))
    assert Launch.objects.mark_lost() == 1
    launch.refresh_from_db()
    assert launch.status == "lost" and "has not reported" in launch.reason and launch.ended_at


def test_model_facts_are_read_with_the_token_that_never_shows(settings, launch: Launch) -> None:
    settings.HF_TOKEN = "hf_never_shown"
    model = launch.model
    model.native_context = None
    model.save()
    assert tasks.read_model_facts(model.pk) is True
    model.refresh_from_db()
    assert (model.native_context, model.num_layers, model.num_kv_heads) == (40960, 36, 8)

    model.source = "no-such-org/no-such-model"
    model.save()
    settings.HF_HUB_ALLOW_DOWNLOAD = False
    assert model.refresh_facts() is False
    assert model.facts_error and "hf_never_shown" not in model.facts_error


def test_a_real_gpu_profile_never_receives_a_limit_learned_on_a_simulated_card() -> None:
    from gpus.fingerprint import memory_fingerprint

    tasks.host_report(report(host="sim-3060", uuid="GPU-sim", simulated=True))
    tasks.host_report(report(host="real-3060", uuid="GPU-real"))
    simulated_card = Gpu.objects.get(host__name="sim-3060")
    real_card = Gpu.objects.get(host__name="real-3060")
    assert simulated_card.profile_id != real_card.profile_id
    assert str(simulated_card.profile) == "NVIDIA GeForce RTX 3060 (12 GiB) · simulated"
    assert str(real_card.profile) == "NVIDIA GeForce RTX 3060 (12 GiB)"

    model = demo_model()
    configs = {
        name: make_config(name, model=model, host=Host.objects.get(name=name), quantization="awq", port=9000)
        for name in ("sim-3060", "real-3060")
    }
    config = configs["sim-3060"]
    fingerprint, _ = memory_fingerprint({**config.memory_options(), "vllm_version": "0.11.0"})
    launch = make_launch(config, fingerprint=fingerprint, task_id="spec-of-this-launch")
    learned = {"max_model_len": 27168, "learned_from": "refusal", "kv_capacity_tokens": None}
    tasks.apply_event(launch.pk, 1, "limit_learned", learned, spec_id=launch.task_id)

    limit = DetectedLimit.objects.get()
    assert limit.profile == simulated_card.profile
    assert configs["sim-3060"].detected_limit() == limit
    assert configs["real-3060"].detected_limit() is None
    assert not DetectedLimit.objects.filter(profile=real_card.profile).exists()


# An ended launch is history: events its worker delivers afterwards (a start's last events from the
# outbox after the whole stack was stopped, a host thought gone reporting again) are kept, not
# applied; a limit the card really showed is still learned for the GPU.

SERVED = 65536
ROW_FIELDS = (
    "status",
    "outcome",
    "reason",
    "context_length",
    "server_url",
    "pid",
    "ready_at",
    "ended_at",
    "learned_limit",
    "kv_capacity_tokens",
)
ATTEMPT_FIELDS = ("number", "outcome", "parsed_len", "exit_code", "message", "log_tail", "ended_at")


def send(launch: Launch, seq: int, kind: str, data: dict) -> None:
    tasks.apply_event(launch.pk, seq, kind, data, spec_id=launch.task_id)


def started(launch: Launch) -> int:
    """Accepted and attempt 1 started, as the worker reports them; returns the last seq sent."""
    send(launch, 1, "accepted", {"host": "desk"})
    send(launch, 2, "attempt_started", {"attempt": 1, "requested_len": SERVED, "argv": ["vllm", "serve"]})
    return 2


def cancelled_by_the_run_script(launch: Launch, settings) -> int:
    seq = started(launch)
    assert Launch.objects.record_stack_stopped(["desk"], "Stopped with the whole local stack.") == 1
    return seq


def stopped_by_the_run_script(launch: Launch, settings) -> int:
    """Ready on attempt 1 at 27,168 tokens, then the whole stack stopped."""
    seq = started(launch)
    send(launch, seq + 1, "attempt_finished", {"attempt": 1, "outcome": "ready", "parsed_len": 27168})
    ready = {"url": "http://127.0.0.1:8000", "max_model_len": 27168, "kv_capacity_tokens": 27200, "pid": 7}
    send(launch, seq + 2, "ready", {**ready, "pgid": 7})
    assert Launch.objects.record_stack_stopped(["desk"], "Stopped with the whole local stack.") == 1
    return seq + 2


def lost_when_its_worker_went_silent(launch: Launch, settings) -> int:
    seq = started(launch)
    silent = timezone.now() - timedelta(seconds=settings.LAUNCH_LOST_SECONDS + 1)
    Host.objects.update(last_heartbeat=silent)
    assert Launch.objects.mark_lost() == 1
    return seq


def failed_past_its_starting_bound(launch: Launch, settings) -> int:
    seq = started(launch)
    Launch.objects.filter(pk=launch.pk).update(
        started_at=timezone.now() - timedelta(seconds=settings.LAUNCH_STARTING_SECONDS + 1)
    )
    assert Launch.objects.end_overdue() == 1
    return seq


ENDINGS: dict[str, tuple[str, Callable[[Launch, object], int]]] = {
    "cancelled by the run script": ("cancelled", cancelled_by_the_run_script),
    "stopped by the run script": ("stopped", stopped_by_the_run_script),
    "lost": ("lost", lost_when_its_worker_went_silent),
    "failed by the control side's bound": ("failed", failed_past_its_starting_bound),
}


def ended(launch: Launch, ending: str, settings) -> int:
    status, end = ENDINGS[ending]
    seq = end(launch, settings)
    launch.refresh_from_db()
    assert launch.status == status
    return seq


def snapshot(launch: Launch) -> tuple[dict, list[dict]]:
    launch.refresh_from_db()
    row = {name: getattr(launch, name) for name in ROW_FIELDS}
    attempts = list(launch.attempts.order_by("number").values(*ATTEMPT_FIELDS))
    return row, attempts


LATE_READY = [
    (
        "attempt_finished",
        {"attempt": 1, "outcome": "ready", "parsed_len": SERVED, "message": "Application startup complete."},
    ),
    ("ready", {"url": "http://127.0.0.1:8100", "max_model_len": SERVED, "pid": 99, "pgid": 99}),
]
LATE_FAILED = [
    ("attempt_finished", {"attempt": 1, "outcome": "port_in_use", "message": "Address already in use"}),
    ("failed", {"reason": "The start failed late.", "outcome": "failed"}),
]
LATE_NEXT_ATTEMPT = [
    ("attempt_started", {"attempt": 2, "requested_len": 32768, "argv": ["vllm", "serve"]}),
    ("crashed", {"reason": "The server exited.", "outcome": "crashed", "log_tail": ["boom"]}),
    ("restarting", {"restarts": 1, "restart_limit": 3, "next_try_in": 5}),
    ("stopped", {"reason": "Stopped late."}),
    ("accepted", {"host": "desk"}),
]


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize(
    "late", [LATE_READY, LATE_FAILED, LATE_NEXT_ATTEMPT], ids=["ready", "failed", "other kinds"]
)
def test_late_events_change_nothing_on_an_ended_launch_and_stay_in_its_history(
    launch: Launch,
    settings,
    ending: str,
    late: list[tuple[str, dict]],
) -> None:
    seq = ended(launch, ending, settings)
    before = snapshot(launch)

    for offset, (kind, data) in enumerate(late, start=1):
        send(launch, seq + offset, kind, data)

    assert snapshot(launch) == before
    launch.refresh_from_db()
    assert launch.last_seq == seq + len(late)
    history = list(launch.events.filter(seq__gt=seq).order_by("seq").values_list("kind", "data"))
    assert history == late
    assert not launch.refused_events.exists()


def test_a_late_limit_is_still_learned_for_the_gpu_but_not_written_onto_the_ended_launch(
    launch: Launch,
    settings,
) -> None:
    seq = ended(launch, "cancelled by the run script", settings)
    before = snapshot(launch)

    learned = {"max_model_len": 27168, "learned_from": "refusal", "kv_capacity_tokens": 27200}
    send(launch, seq + 1, "limit_learned", learned)

    limit = DetectedLimit.objects.get()
    assert (limit.max_model_len, limit.learned_from, limit.launch_id) == (27168, "refusal", launch.pk)
    assert snapshot(launch) == before


def test_a_report_that_waited_in_the_queue_leaves_an_offline_host_offline(settings) -> None:
    tasks.host_report(report(host="desk-3060"))
    silent = timezone.now() - timedelta(seconds=settings.HOST_ONLINE_SECONDS + 60)
    Host.objects.update(last_heartbeat=silent - timedelta(seconds=10))
    # Sent just before its worker stopped, taken from the queue only now.
    tasks.host_report(report(host="desk-3060", sent_at=silent.isoformat()))
    host = Host.objects.get()
    assert host.last_heartbeat == silent
    assert not host.is_online and not Host.objects.online().exists()


def test_a_report_sent_before_the_last_one_applied_changes_nothing(settings) -> None:
    tasks.host_report(report(sent_at=timezone.now().isoformat()))
    fresh = Host.objects.get().last_heartbeat
    tasks.host_report(report(sent_at=(fresh - timedelta(seconds=20)).isoformat(), vllm_version="0.1.0"))
    host = Host.objects.get()
    assert host.last_heartbeat == fresh and host.vllm_version == "0.11.0" and host.is_online


def test_a_report_stamped_in_the_future_counts_from_when_it_arrived() -> None:
    before = timezone.now()
    tasks.host_report(report(sent_at=(before + timedelta(hours=1)).isoformat()))
    assert before <= Host.objects.get().last_heartbeat <= timezone.now()


def test_the_directive_a_report_brings_expires_within_the_online_window(settings) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    name = f"desk-{uuid.uuid4().hex[:8]}"
    broker = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        # A launch the site does not know: the directive tells the host to stop it.
        held = [{"launch_id": 999999, "status": "ready", "last_seq": 2, "unconfirmed": 0}]
        tasks.host_report(report(host=name, sent_at=timezone.now().isoformat(), launches=held, received=[]))
        [message] = [json.loads(raw) for raw in broker.lrange(f"gpu.{name}", 0, -1)]
    finally:
        broker.delete(f"gpu.{name}")
    assert message["headers"]["task"] == "launches.gpu.reconcile"
    expires = parse_datetime(message["headers"]["expires"])
    assert timezone.now() < expires <= timezone.now() + timedelta(seconds=settings.HOST_ONLINE_SECONDS)
