"""Messages between the site and the hosts carry the launch's spec id: another launch's are never applied.

Two installations (or an old and a new database) sharing a broker number their launches alike; only
the spec id (unique per launch) tells launch #1 of one from launch #1 of the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from launches import tasks
from launches.contract import LaunchSpec
from launches.gpu.config import WorkerConfig
from launches.gpu.runtime import HostRuntime
from launches.models import Launch, RefusedEvent
from tests.factories import make_config, make_launch

LAUNCH_UNKNOWN = "launches.control.launch_unknown"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def __call__(self, task: str, args: list[Any]) -> None:
        self.sent.append((task, list(args)))


def runtime(tmp_path: Path) -> tuple[HostRuntime, Recorder]:
    sent = Recorder()
    config = WorkerConfig(host="desk", vllm_command=["vllm", "serve"], state_dir=tmp_path)
    return HostRuntime(config, send=sent), sent


def spec(spec_id: str, launch_id: int = 1) -> dict[str, Any]:
    return LaunchSpec(launch_id=launch_id, spec_id=spec_id, model="org/model", port=None).to_dict()


def test_an_old_stop_for_the_same_launch_number_does_not_cancel_a_new_launch(tmp_path) -> None:
    worker, _ = runtime(tmp_path)
    assert worker.stop_launch(1, "spec-of-the-old-database") == "unknown"
    assert worker.run_launch(spec("spec-of-the-new-database")) != "cancelled"
    assert [event[2] for event in worker.outbox] != ["cancelled"]


def test_a_stop_that_came_before_its_own_spec_cancels_it(tmp_path) -> None:
    worker, _ = runtime(tmp_path)
    worker.stop_launch(1, "spec-a")
    assert worker.run_launch(spec("spec-a")) == "cancelled"
    assert worker.outbox[-1][2] == "cancelled" and worker.outbox[-1][5] == "spec-a"


def test_a_launch_number_an_old_database_used_is_not_refused_as_a_duplicate(tmp_path) -> None:
    worker, _ = runtime(tmp_path)
    worker.run_launch(spec("spec-of-the-old-database"))
    assert worker.run_launch(spec("spec-of-the-old-database")) == "duplicate"
    assert worker.run_launch(spec("spec-of-the-new-database")) != "duplicate"
    last = worker.outbox[-1]
    # The new launch's events are numbered from 1 again and carry its own spec id.
    assert (last[1], last[5]) == (1, "spec-of-the-new-database")


def test_a_stop_answer_names_the_spec_it_was_asked_for(tmp_path) -> None:
    worker, sent = runtime(tmp_path)
    worker.stop_launch(4, "spec-b")
    assert sent.sent == [(LAUNCH_UNKNOWN, [4, "desk", "desk runs no server for this launch.", "spec-b"])]


@pytest.fixture
def launch(db) -> Launch:
    config = make_config()
    return make_launch(config, status=Launch.Status.STOPPING, task_id="spec-of-this-launch")


def test_an_event_of_another_launch_with_the_same_number_is_kept_refused_and_not_applied(launch) -> None:
    tasks.apply_event(launch.pk, 1, "stopped", {"reason": "Stopped on request."}, spec_id="another-spec")
    tasks.apply_event(launch.pk, 2, "stopped", {"reason": "Stopped on request."})
    launch.refresh_from_db()
    assert (launch.status, launch.last_seq) == ("stopping", 0)
    refused = RefusedEvent.objects.filter(launch=launch)
    assert refused.count() == 2 and all("another launch" in item.reason for item in refused)
    assert not refused.exclude(seq=None).exists(), "a foreign event must not take the launch's number"

    tasks.apply_event(launch.pk, 1, "stopped", {"reason": "Stopped on request."}, spec_id=launch.task_id)
    launch.refresh_from_db()
    assert launch.status == "stopped"


def test_a_stop_answer_of_another_launch_does_not_end_this_one(launch) -> None:
    host = launch.host.name
    tasks.launch_unknown(launch.pk, host, "runs no server", "another-spec")
    tasks.launch_unknown(launch.pk, host, "runs no server")
    launch.refresh_from_db()
    assert launch.status == "stopping"
    tasks.launch_unknown(launch.pk, host, "runs no server", launch.task_id)
    launch.refresh_from_db()
    assert launch.status == "stopped"


def test_the_stop_message_carries_the_launch_spec_id(
    launch, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    sent: list[tuple[str, list[Any]]] = []
    monkeypatch.setattr(
        "launches.models.send_to_host", lambda task, queue, args, **kw: sent.append((task, args))
    )
    launch.status = Launch.Status.STARTING
    Launch.objects.filter(pk=launch.pk).update(status=Launch.Status.STARTING)
    with django_capture_on_commit_callbacks(execute=True):
        launch.request_stop()
    assert sent == [("launches.gpu.stop_launch", [launch.pk, "spec-of-this-launch"])]


def test_a_heartbeat_report_expires_after_a_few_heartbeats_and_says_when_it_was_sent(tmp_path: Path) -> None:
    sent: list[tuple[str, list[Any], float | None]] = []
    config = WorkerConfig(
        host="desk", vllm_command=["vllm", "serve"], state_dir=tmp_path, heartbeat_seconds=5
    )
    runtime = HostRuntime(config, send=lambda task, args, expires=None: sent.append((task, args, expires)))
    runtime.send_report()
    [(task, [report], expires)] = sent
    assert task == "launches.control.host_report" and report["sent_at"]
    assert expires == 30.0
