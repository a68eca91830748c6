"""A config that keeps its server up: crashes are restarted with backoff, then a crash loop ends it."""

from __future__ import annotations

import os
import signal

import pytest
from django.urls import reverse

from launches.models import Launch
from tests.factories import demo_model
from tests.workers.conftest import H100, host_name, wait_for
from tests.workers.helpers import config_for, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def crash_the_server(fleet, host: str, launch: Launch) -> None:
    [pgid] = wait_for(lambda: fleet.servers_of(host).get(launch.pk), 20, "the server")
    os.killpg(pgid, signal.SIGKILL)


def test_a_server_kept_up_is_restarted_after_each_crash_until_the_crash_loop_limit(
    fleet, settings, client, admin_user
) -> None:
    settings.RESTART_LIMIT = 2
    fleet.control_worker()
    fleet.gpu_worker("keepup", H100, "0.32.0", AIFRED_RESTART_BACKOFF_SECONDS="0.5")
    host = host_name("keepup")
    config = config_for("keepup", demo_model(), keep_up=True)
    launch = wait_status(Launch.objects.start(config, user=None), Launch.Status.READY)
    served = launch.context_length

    for restart in (1, 2):
        crash_the_server(fleet, host, launch)
        # Stored is not yet applied: wait for the row to count the restart and be ready again.
        again = Launch.objects.filter(pk=launch.pk, restarts=restart, status=Launch.Status.READY)
        wait_for(again.exists, 30, f"restart {restart} to be applied and ready")
        launch.refresh_from_db()
        assert launch.events.filter(kind="restarting").count() == restart
        assert launch.context_length == served
        # The restart's attempt is numbered after the earlier ones; the earlier rows stay as they were.
        assert list(launch.attempts.values_list("number", "outcome")) == [
            (number, "ready") for number in range(1, restart + 2)
        ]
    client.force_login(admin_user)
    answer = client.get(reverse("launches:events", args=[launch.pk])).json()
    assert answer["restarts"] == "restarted 2 of 2 times"

    crash_the_server(fleet, host, launch)
    launch = wait_status(launch, Launch.Status.CRASHED, timeout=30)
    assert launch.outcome == "crash_loop"
    assert "Crash loop" in launch.reason and "Last log lines" in launch.reason
    wait_for(lambda: not fleet.servers_of(host), 10, "no server left")


def test_a_server_not_kept_up_that_crashes_stays_crashed(fleet) -> None:
    fleet.control_worker()
    fleet.gpu_worker("nokeep", H100, "0.32.0", AIFRED_RESTART_BACKOFF_SECONDS="0.5")
    host = host_name("nokeep")
    launch = wait_status(Launch.objects.start(config_for("nokeep", demo_model()), user=None), "ready")
    crash_the_server(fleet, host, launch)
    launch = wait_status(launch, Launch.Status.CRASHED, timeout=30)
    assert launch.restarts == 0 and not launch.events.filter(kind="restarting").exists()
