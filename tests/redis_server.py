"""A private ``redis-server`` on a free local port, for a test run, a fault drill or a benchmark (no
Django here: the benches use it too). Without persistence: it holds nothing worth keeping."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.ports import free_port


class RedisServerMissing(RuntimeError):
    """No ``redis-server`` on PATH (Debian: ``apt-get install redis-server``)."""


def redis_answers(url: str) -> bool:
    """Whether a Redis answers PING at ``url`` within a second."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class PrivateRedis:
    """``start()`` runs the server in its own session (a group signal to the tests does not reach it)
    and returns once it answers; ``stop()`` kills it. ``url`` is its address (database 0),
    ``url_for(db)`` that of database ``db``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10) -> None:
        """Raises ``RedisServerMissing`` without a redis-server, ``RuntimeError`` when it does not answer
        within ``timeout`` seconds."""
        server = shutil.which("redis-server")
        if server is None:
            raise RedisServerMissing("redis-server is not installed (apt-get install redis-server)")
        argv = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            argv, cwd=self.directory, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if redis_answers(self.url):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the private redis-server on port {self.port} did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
