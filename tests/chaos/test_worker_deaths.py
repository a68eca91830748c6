"""Workers killed at the worst moment: the launch ends right within its bound, nothing is left."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from launches.models import Launch
from tests.chaos.drills import assert_settled
from tests.factories import demo_model
from tests.workers.conftest import H100, host_name, wait_for
from tests.workers.helpers import config_for, start_slow_launch, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def hold_database(launch: Launch, release: threading.Event, held: threading.Event) -> None:
    """Keep a write on the launch row open, so the control worker blocks while applying to it."""
    try:
        with transaction.atomic():
            Launch.objects.filter(pk=launch.pk).update(reason="")
            held.set()
            release.wait(30)
    finally:
        connection.close()


def test_a_control_worker_killed_while_applying_delays_the_launch_by_seconds_not_an_hour(chaos_fleet) -> None:
    control = chaos_fleet.control_worker()
    chaos_fleet.gpu_worker("applying", H100, "0.32.0", AIFRED_STANDIN_LOAD_SECONDS="2")
    host = host_name("applying")
    launch = Launch.objects.start(config_for("applying", demo_model()), user=None)
    wait_for(lambda: launch.attempts.exists(), 30, "the first attempt")

    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_database, args=(launch, release, held))
    holder.start()
    held.wait(10)
    # The attempt's log lines and its ready event arrive while the control worker is blocked on them.
    wait_for(
        lambda: '"ready"' in chaos_fleet.state_dir(host).joinpath("servers.json").read_text(), 30, "ready"
    )
    control.kill()
    release.set()
    holder.join()

    chaos_fleet.control_worker()
    launch = wait_status(launch, Launch.Status.READY, timeout=40)
    launch.request_stop()
    wait_status(launch, Launch.Status.STOPPED, timeout=40)
    assert_settled(chaos_fleet, host, launch, Launch.Status.STOPPED)


def test_a_gpu_worker_killed_during_a_start_and_restarted_fails_the_launch_and_closes_its_attempt(
    chaos_fleet,
) -> None:
    chaos_fleet.control_worker()
    worker, host, launch, _ = start_slow_launch(chaos_fleet, "killed")

    worker.kill()
    chaos_fleet.gpu_worker("killed", H100, "0.32.0", AIFRED_STANDIN_LOAD_SECONDS="60")
    launch = wait_status(launch, Launch.Status.FAILED, timeout=40)
    assert launch.outcome == "worker_restarted"
    assert_settled(chaos_fleet, host, launch, Launch.Status.FAILED)
    assert launch.attempts.get().outcome == "interrupted"
