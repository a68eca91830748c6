"""Fault drills: a Redis this test owns (stopped and started at will), real workers, the stand-in.

Never the shared Redis: each drill starts a private ``redis-server`` on a free port without
persistence, so stopping it loses whatever it held, as a non-persistent broker restart does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import PrivateRedis, RedisServerMissing
from tests.workers.conftest import Fleet, Worker, database_url_for_subprocesses

# The bounds the drills hold the system to (short, so that a drill ends in seconds).
BOUNDS = {
    "AIFRED_LAUNCH_QUEUED_SECONDS": "40",
    "AIFRED_LAUNCH_STARTING_SECONDS": "90",
    "AIFRED_LAUNCH_STOPPING_SECONDS": "40",
    "AIFRED_RECONCILE_GRACE_SECONDS": "2",
    "AIFRED_VISIBILITY_TIMEOUT": "10",
}


def use_broker(url: str) -> None:
    """Point this process's Celery app at ``url``, dropping connections made to another broker."""
    from aifred_site.celery import app

    app.conf.broker_url = url
    app._pool = None
    app.__dict__.get("amqp") and setattr(app.amqp, "_producer_pool", None)


class ChaosFleet(Fleet):
    def __init__(self, directory: Path, database_url: str, broker: PrivateRedis) -> None:
        super().__init__(directory, database_url)
        self.broker = broker

    def _add(self, worker: Worker) -> Worker:
        worker.env = {**worker.env, "REDIS_URL": self.broker.url, **BOUNDS}
        return super()._add(worker)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    from aifred_site.celery import app

    previous = app.conf.broker_url
    private = PrivateRedis(tmp_path)
    try:
        private.start()
    except RedisServerMissing as exc:
        pytest.skip(f"the fault drills need a redis-server: {exc}")
    use_broker(private.url)
    try:
        yield private
    finally:
        use_broker(previous)
        private.stop()


@pytest.fixture
def chaos_fleet(
    tmp_path: Path, transactional_db: None, broker: PrivateRedis, settings
) -> Iterator[ChaosFleet]:
    for name, value in BOUNDS.items():
        setattr(settings, name.removeprefix("AIFRED_"), int(value))
    fleet = ChaosFleet(tmp_path, database_url_for_subprocesses(), broker)
    try:
        yield fleet
    finally:
        fleet.close()
