"""A spec delivered twice, a malformed event, twenty requests for one card at once."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from launches.models import RUN_LAUNCH_TASK, GpuLease, Launch, LaunchRefused, RefusedEvent, send_to_host
from launches.tasks import apply_event
from tests.chaos.drills import assert_settled
from tests.factories import demo_model, make_config, make_gpu, make_host, make_model
from tests.workers.conftest import H100, host_name
from tests.workers.helpers import config_for, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_spec_delivered_twice_never_starts_a_second_server_nor_one_for_an_ended_launch(chaos_fleet) -> None:
    chaos_fleet.control_worker()
    chaos_fleet.gpu_worker("twice", H100, "0.32.0")
    host = host_name("twice")
    launch = wait_status(Launch.objects.start(config_for("twice", demo_model()), user=None), "ready")
    servers = chaos_fleet.servers_of(host)

    send_to_host(RUN_LAUNCH_TASK, launch.host.queue, [launch.spec])
    time.sleep(3)
    assert chaos_fleet.servers_of(host) == servers
    launch.request_stop()
    wait_status(launch, Launch.Status.STOPPED, timeout=30)

    send_to_host(RUN_LAUNCH_TASK, launch.host.queue, [launch.spec])
    time.sleep(4)
    assert chaos_fleet.servers_of(host) == {}
    assert_settled(chaos_fleet, host, launch, Launch.Status.STOPPED)


def test_a_malformed_event_is_refused_with_its_reason_and_the_launch_goes_on(chaos_fleet) -> None:
    control = chaos_fleet.control_worker()
    chaos_fleet.gpu_worker("malformed", H100, "0.32.0")
    host = host_name("malformed")
    config = config_for("malformed", demo_model())
    control.stop()
    launch = Launch.objects.start(config, user=None)
    # Before the worker's own first event is applied, one that does not parse takes its number.
    apply_event(launch.pk, 1, "attempt_started", {"argv": "not a list"}, spec_id=launch.task_id)
    refused = RefusedEvent.objects.get(launch=launch)
    assert refused.seq == 1 and "data.attempt" in refused.reason

    chaos_fleet.control_worker()
    launch = wait_status(launch, Launch.Status.READY, timeout=40)
    assert launch.events.get(seq=1).kind == "accepted"
    launch.request_stop()
    wait_status(launch, Launch.Status.STOPPED, timeout=30)
    assert_settled(chaos_fleet, host, launch, Launch.Status.STOPPED)


def test_twenty_concurrent_launch_requests_for_one_gpu_start_exactly_one_launch(
    broker, transactional_db
) -> None:
    host = make_host()
    make_gpu(host, 0)
    config = make_config(host=host, model=make_model())
    start = threading.Barrier(20)
    started: list[Launch] = []
    refused: list[str] = []

    def request() -> None:
        try:
            start.wait()
            started.append(Launch.objects.start(config, user=None))
        except LaunchRefused as exc:
            refused.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(started) == 1, f"{len(started)} launches hold GPU 0"
    assert len(refused) == 19 and all("GPU" in reason for reason in refused)
    assert Launch.objects.active().count() == 1
    assert GpuLease.objects.get().launch == started[0]
