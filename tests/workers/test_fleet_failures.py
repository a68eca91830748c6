"""Workers that die or pause: nothing is left starting, no process is left behind, no event is lost."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from launches.models import Launch
from launches.vllm.process import probe_health
from tests.factories import demo_model
from tests.workers.conftest import H100, LAUNCH_LOST_SECONDS, host_name, wait_for
from tests.workers.helpers import config_for, start_slow_launch, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Ready servers log a line this often, as vLLM logs its throughput: one that still wrote to its
# dead worker's pipe would die of it.
STATS = {"AIFRED_STANDIN_STATS_SECONDS": "0.3"}


def attempt_log(fleet, host: str, launch: Launch, stream: str = "") -> Path:
    suffix = f".{stream}.log" if stream else ".log"
    return fleet.state_dir(host) / "logs" / f"launch-{launch.pk}-attempt-1{suffix}"


def grows(path: Path, within: float = 3.0) -> bool:
    size = path.stat().st_size
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if path.stat().st_size > size:
            return True
    return False


def test_a_gpu_worker_killed_during_a_start_leaves_the_launch_lost_and_its_restart_stops_the_orphan(
    fleet,
) -> None:
    fleet.control_worker()
    worker, host, launch, orphans = start_slow_launch(fleet, "crash")

    worker.kill()
    launch = wait_status(launch, Launch.Status.LOST, timeout=LAUNCH_LOST_SECONDS + 20)
    assert "has not reported" in launch.reason and host in launch.reason
    # The server is in its own process group and writes to files, so the worker's death leaves it be.
    assert fleet.servers_of(host) == orphans

    restarted = fleet.gpu_worker("crash", H100, "0.32.0", AIFRED_STANDIN_LOAD_SECONDS="60")
    # Whatever is left of it, the restarted worker finds through its state file and stops.
    wait_for(lambda: not fleet.servers_of(host), 20, "the orphaned server to be stopped")
    wait_for(lambda: launch.events.filter(kind="failed").exists(), 20, "the restarted worker's report")
    launch.refresh_from_db()
    assert launch.status == Launch.Status.LOST
    restarted.stop()


def test_a_restarted_gpu_worker_adopts_its_running_server_and_can_stop_it(fleet) -> None:
    fleet.control_worker()
    worker = fleet.gpu_worker("adopt", H100, "0.32.0", **STATS)
    host = host_name("adopt")
    launch = wait_status(Launch.objects.start(config_for("adopt", demo_model()), user=None), "ready")
    [pgid] = fleet.servers_of(host)[launch.pk]
    worker.kill()
    # Nobody reads its output now, and it keeps logging.
    assert grows(attempt_log(fleet, host, launch, "stdout"))
    assert fleet.servers_of(host) == {launch.pk: {pgid}}

    fleet.gpu_worker("adopt", H100, "0.32.0", **STATS)
    wait_for(lambda: launch.events.filter(kind="adopted").exists(), 30, "the adoption")
    launch.refresh_from_db()
    assert launch.status == Launch.Status.READY
    adopted = launch.events.get(kind="adopted").data
    assert adopted["pgid"] == pgid
    assert probe_health(adopted["url"])
    # The new worker follows its output: the cleaned log grows again.
    assert grows(attempt_log(fleet, host, launch))

    launch.request_stop()
    wait_status(launch, Launch.Status.STOPPED, timeout=30)
    assert fleet.servers_of(host) == {}


def test_an_adopted_server_that_crashes_is_reported_with_its_last_log_lines(fleet) -> None:
    fleet.control_worker()
    worker = fleet.gpu_worker("watch", H100, "0.32.0", **STATS)
    host = host_name("watch")
    launch = wait_status(Launch.objects.start(config_for("watch", demo_model()), user=None), "ready")
    worker.kill()
    fleet.gpu_worker("watch", H100, "0.32.0", **STATS)
    wait_for(lambda: launch.events.filter(kind="adopted").exists(), 30, "the adoption")
    assert grows(attempt_log(fleet, host, launch))

    [pgid] = fleet.servers_of(host)[launch.pk]

    os.killpg(pgid, signal.SIGKILL)
    launch = wait_status(launch, Launch.Status.CRASHED, timeout=30)
    assert "Last log lines" in launch.reason and "Avg prompt throughput" in launch.reason
    # The report ends with the very last line the server wrote, read after the adoption.
    last = attempt_log(fleet, host, launch, "stdout").read_text().splitlines()[-1]
    assert launch.events.get(kind="crashed").data["log_tail"][-1] == last


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
