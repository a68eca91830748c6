"""Workers that die or pause: nothing is left starting, no process is left behind, no event is lost."""

from __future__ import annotations

import os
import signal

import pytest

from launches.models import Launch
from tests.workers.conftest import H100, LAUNCH_LOST_SECONDS, host_name, wait_for
from tests.workers.helpers import config_for, demo_model, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_gpu_worker_killed_during_a_start_leaves_the_launch_lost_and_its_restart_stops_the_orphan(
    fleet,
) -> None:
    fleet.control_worker()
    worker = fleet.gpu_worker("crash", H100, "0.32.0", AIFRED_STANDIN_LOAD_SECONDS="60")
    host = host_name("crash")
    launch = Launch.objects.start(config_for("crash", demo_model()), user=None)
    wait_for(lambda: launch.attempts.exists(), 30, "the first attempt")
    orphans = wait_for(lambda: fleet.servers_of(host), 10, "the server process")

    worker.kill()
    launch = wait_status(launch, Launch.Status.LOST, timeout=LAUNCH_LOST_SECONDS + 20)
    assert "has not reported" in launch.reason and host in launch.reason
    # The server is in its own process group, so killing the worker does not kill it; it may still
    # die by itself when it next writes to the pipe its dead worker read (see the report on output
    # going to a file instead).
    assert set(fleet.servers_of(host)) <= set(orphans)

    restarted = fleet.gpu_worker("crash", H100, "0.32.0", AIFRED_STANDIN_LOAD_SECONDS="60")
    # Whatever is left of it, the restarted worker finds through its state file and stops.
    wait_for(lambda: not fleet.servers_of(host), 20, "the orphaned server to be stopped")
    wait_for(lambda: launch.events.filter(kind="failed").exists(), 20, "the restarted worker's report")
    launch.refresh_from_db()
    assert launch.status == Launch.Status.LOST
    restarted.stop()


def test_a_restarted_gpu_worker_adopts_its_running_server_and_can_stop_it(fleet) -> None:
    fleet.control_worker()
    worker = fleet.gpu_worker("adopt", H100, "0.32.0")
    host = host_name("adopt")
    launch = wait_status(Launch.objects.start(config_for("adopt", demo_model()), user=None), "ready")
    [pgid] = fleet.servers_of(host)[launch.pk]
    worker.kill()
    fleet.gpu_worker("adopt", H100, "0.32.0")
    wait_for(lambda: launch.events.filter(kind="adopted").exists(), 30, "the adoption")
    launch.refresh_from_db()
    assert launch.status == Launch.Status.READY
    assert launch.events.get(kind="adopted").data["pgid"] == pgid

    launch.request_stop()
    wait_status(launch, Launch.Status.STOPPED, timeout=30)
    assert fleet.servers_of(host) == {}


def test_an_adopted_server_that_crashes_is_reported_with_its_last_log_lines(fleet) -> None:
    fleet.control_worker()
    worker = fleet.gpu_worker("watch", H100, "0.32.0")
    host = host_name("watch")
    launch = wait_status(Launch.objects.start(config_for("watch", demo_model()), user=None), "ready")
    worker.kill()
    fleet.gpu_worker("watch", H100, "0.32.0")
    wait_for(lambda: launch.events.filter(kind="adopted").exists(), 30, "the adoption")

    [pgid] = fleet.servers_of(host)[launch.pk]

    os.killpg(pgid, signal.SIGKILL)
    launch = wait_status(launch, Launch.Status.CRASHED, timeout=30)
    assert "Last log lines" in launch.reason and "Application startup complete" in launch.reason


def test_stopping_the_control_worker_during_a_launch_loses_no_event(fleet) -> None:
    control = fleet.control_worker()
    fleet.gpu_worker("pause", H100, "0.11.0", AIFRED_STANDIN_LOAD_SECONDS="2")
    host = host_name("pause")
    launch = Launch.objects.start(config_for("pause", demo_model()), user=None)
    wait_for(lambda: launch.events.exists(), 30, "the first event")
    control.stop()

    # Meanwhile the GPU worker starts the server and reports; the events wait in Redis.
    wait_for(lambda: fleet.servers_of(host), 20, "the server")
    wait_for(lambda: '"ready"' in fleet.state_dir(host).joinpath("servers.json").read_text(), 30, "ready")
    launch.refresh_from_db()
    assert launch.status == Launch.Status.STARTING

    fleet.control_worker()
    launch = wait_status(launch, Launch.Status.READY, timeout=40)
    seqs = list(launch.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)) and launch.last_seq == seqs[-1]
    assert launch.attempts.get().outcome == "ready"
    launch.request_stop()
    wait_status(launch, Launch.Status.STOPPED, timeout=30)
