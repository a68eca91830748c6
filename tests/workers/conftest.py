"""Real parts for the worker tests: Redis, worker processes, a database file shared with them.

Every run gets its own queue names and host names, so runs of colleagues on the same Redis do not
collide. Every process started here is stopped by a finalizer (its whole process group), and so is
every server a GPU worker left behind (found by the mark in its environment).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpus.nvml import simulated_uuid
from launches.gpu.adopter import find_marked_groups, kill_marked_groups
from launches.vllm.process import group_alive, kill_group

ROOT = Path(__file__).resolve().parents[2]
TEST_REDIS_URL = os.environ.get("AIFRED_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
RUN = uuid.uuid4().hex[:8]
CONTROL_QUEUE = f"control-test-{RUN}"
DEMO_MODEL = ROOT / "launches" / "vllm" / "demo_models" / "qwen3-8b-like"
RTX_3060 = "NVIDIA GeForce RTX 3060:12288"
H100 = "NVIDIA H100 80GB HBM3:81559"
HEARTBEAT_SECONDS = 1
# Longer than a fault drill's 5 s broker outage plus the workers' reconnection: a heartbeat counts from
# when it was sent, so the silence the control side sees spans the whole outage.
LAUNCH_LOST_SECONDS = 15


def host_name(label: str) -> str:
    return f"{label}-{RUN}"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Worker:
    """One worker process in its own process group, its output in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "ab")  # noqa: SIM115  (kept open by the child)
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL for whatever is left of the group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            # Waiting reaps the leader; group_alive would count it while it is a zombie.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        kill_group(self.pid, grace=1)
        self.process.wait(10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def base_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIFRED_", "DJANGO_", "CELERY_")) and name not in {"DATABASE_URL", "HF_TOKEN"}
    }
    env.update(
        {
            "REDIS_URL": TEST_REDIS_URL,
            "AIFRED_CONTROL_QUEUE": CONTROL_QUEUE,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def gpu_worker_env(host: str, cards: str, vllm_version: str, state_dir: Path, **extra: str) -> dict[str, str]:
    env = base_env()
    env.update(
        {
            "AIFRED_SIMULATED_GPUS": cards,
            "AIFRED_VLLM_COMMAND": f"{sys.executable} -m launches.vllm.standin serve",
            "AIFRED_STANDIN_VLLM_VERSION": vllm_version,
            "AIFRED_STANDIN_LOAD_SECONDS": "0.3",
            "AIFRED_STANDIN_TEARDOWN_SECONDS": "3",
            # What Qwen3-8B-AWQ's weights take; the stand-in's own estimate is for full precision.
            "AIFRED_STANDIN_WEIGHTS_MIB": "5837",
            "AIFRED_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "AIFRED_STATE_DIR": str(state_dir),
            "AIFRED_SERVE_HOST": "127.0.0.1",
            "AIFRED_READY_TIMEOUT_SECONDS": "60",
            # A GPU host never has the database: any attempt to use Django fails (see forbid_django).
            "DJANGO_SETTINGS_MODULE": "",
        }
    )
    env.pop("DJANGO_SETTINGS_MODULE")
    env.update(extra)
    return env


class Fleet:
    """Starts workers and guarantees that they, and the servers they started, are stopped."""

    def __init__(self, directory: Path, database_url: str) -> None:
        self.directory = directory
        self.database_url = database_url
        self.workers: list[Worker] = []
        self.hosts: set[str] = set()

    def control_worker(self) -> Worker:
        env = base_env()
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "DJANGO_SETTINGS_MODULE": "aifred_site.settings",
                "AIFRED_LAUNCH_LOST_SECONDS": str(LAUNCH_LOST_SECONDS),
                "AIFRED_LOST_CHECK_SECONDS": "2",
                "AIFRED_VAR_DIR": str(self.directory / "control-var"),
            }
        )
        argv = [
            sys.executable,
            "manage.py",
            "control_worker",
            "--concurrency=1",
            f"--schedule={self.directory / 'beat-schedule'}",
        ]
        return self._add(Worker("control", argv, env, self.directory / "control.log"))

    def gpu_worker(
        self, label: str, cards: str, vllm_version: str, *, via_manage: bool = True, **extra: str
    ) -> Worker:
        host = host_name(label)
        self.hosts.add(host)
        env = gpu_worker_env(host, cards, vllm_version, self.state_dir(host), **extra)
        if via_manage:
            # manage.py needs settings to start; it drops the database URL before handing over.
            env["DJANGO_SETTINGS_MODULE"] = "aifred_site.settings"
            env["DATABASE_URL"] = "sqlite:///nonexistent/never-used.sqlite3"
            argv = [sys.executable, "manage.py", "gpu_worker", "--host", host]
        else:
            argv = [sys.executable, "-m", "launches.gpu", "--host", host]
        return self._add(Worker(host, argv, env, self.directory / f"{host}.log"))

    def state_dir(self, host: str) -> Path:
        return self.directory / f"state-{host}"

    def _add(self, worker: Worker) -> Worker:
        self.workers.append(worker)
        return worker.start()

    def servers_of(self, host: str) -> dict[int, set[int]]:
        return {
            launch_id: {pgid for pgid in groups if group_alive(pgid)}
            for launch_id, groups in find_marked_groups(host).items()
            if any(group_alive(pgid) for pgid in groups)
        }

    def close(self) -> None:
        for worker in reversed(self.workers):
            worker.stop()
        for host in self.hosts:
            kill_marked_groups(host, grace=2)


def database_url_for_subprocesses() -> str:
    """The test database as a URL the control worker can open: the same file, or the same server."""
    from django.db import connection

    settings_dict = connection.settings_dict
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        name = str(settings_dict["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            pytest.skip("the integration tests need a database file: set TEST_DATABASE_NAME")
        return f"sqlite:///{name}"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{auth}{settings_dict.get('HOST') or '127.0.0.1'}{port}/{settings_dict['NAME']}"


@contextlib.contextmanager
def running_fleet(directory: Path) -> Iterator[Fleet]:
    """A fleet with its control worker started, while the site's Celery app (this test process's)
    sends through the test Redis; every worker and server stopped and the app's broker restored after.
    For tests outside this package (the browser and API tests), whose conftest does not switch it."""
    from aifred_site.celery import app

    previous = app.conf.broker_url, app.conf.task_default_queue
    app.conf.broker_url, app.conf.task_default_queue = TEST_REDIS_URL, CONTROL_QUEUE
    fleet = Fleet(directory, database_url_for_subprocesses())
    try:
        fleet.control_worker()
        yield fleet
    finally:
        fleet.close()
        app.conf.broker_url, app.conf.task_default_queue = previous


@pytest.fixture(scope="session", autouse=True)
def test_broker() -> None:
    """The test process sends launch specs through the test Redis database."""
    from aifred_site.celery import app

    app.conf.broker_url = TEST_REDIS_URL
    app.conf.task_default_queue = CONTROL_QUEUE


@pytest.fixture
def fleet(tmp_path: Path, transactional_db: None) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path, database_url_for_subprocesses())
    try:
        yield fleet
    finally:
        fleet.close()


def simulated_card_uuid(label: str, index: int = 0) -> str:
    return simulated_uuid(host_name(label), index)
