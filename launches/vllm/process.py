"""A vLLM server as a process group: start, watch its output, probe it, and stop all of it.

vLLM forks engine and worker processes that hold GPU memory; stopping only the front-end leaves
them behind. Each server therefore runs in its own session (process group = its pid), and every
stop signals the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO

import requests

from launches.vllm.logs import clean_line

LineCallback = Callable[[str, str], None]


class ProcessStartError(Exception):
    """The vLLM command could not be started at all (not found, not executable)."""


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists (zombies included until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    # A leader that is our own child stays a zombie (and keeps the group visible) until reaped.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def kill_group(pgid: int, grace: float = 10.0) -> bool:
    """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL it. True when it is gone."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pgid)
        if not group_alive(pgid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _reap(pgid)
        if not group_alive(pgid):
            return True
        time.sleep(0.05)
    _reap(pgid)
    return not group_alive(pgid)


class VllmProcess:
    """One running vLLM command with both output streams read by threads."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        on_line: LineCallback | None,
        max_lines: int,
        log_path: str | None,
    ) -> None:
        self._popen = popen
        self._on_line = on_line
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._lock = threading.Lock()
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self.log_path = log_path
        self.pgid = popen.pid
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True, name=f"vllm-{name}")
            for name, stream in (("stdout", popen.stdout), ("stderr", popen.stderr))
            if stream is not None
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def start(
        cls,
        argv: list[str],
        env: Mapping[str, str],
        *,
        on_line: LineCallback | None = None,
        max_lines: int = 2000,
        log_path: str | None = None,
    ) -> VllmProcess:
        try:
            popen = subprocess.Popen(
                argv,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProcessStartError(f"{argv[0]} could not be started: {exc.strerror or exc}") from exc
        return cls(popen, on_line=on_line, max_lines=max_lines, log_path=log_path)

    def _read(self, name: str, stream: IO[bytes]) -> None:
        buffer = b""
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                self._emit(name, raw)
        if buffer:
            self._emit(name, buffer)
        stream.close()

    def _emit(self, name: str, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        line = clean_line(text)
        with self._lock:
            self._lines.append(line)
            if self._log is not None:
                self._log.write(f"{line}\n")
                self._log.flush()
        if self._on_line is not None:
            # A failing observer must not stop the output from being drained (vLLM would block).
            with contextlib.suppress(Exception):
                self._on_line(name, line)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    @property
    def argv(self) -> list[str]:
        return list(self._popen.args)  # type: ignore[arg-type]

    def poll(self) -> int | None:
        return self._popen.poll()

    def recent_lines(self, n: int = 40) -> list[str]:
        with self._lock:
            return list(self._lines)[-n:] if n else []

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._join_readers(timeout=2.0)
        return code

    def _join_readers(self, timeout: float) -> None:
        for reader in self._readers:
            reader.join(timeout)
        if self._log is not None and not any(r.is_alive() for r in self._readers):
            with self._lock:
                self._log.close()
                self._log = None

    def stop(self, grace: float = 10.0) -> int | None:
        """Stop the whole process group and reap the leader; returns its exit code."""
        if self._popen.poll() is None or group_alive(self.pgid):
            self._terminate_group(grace)
        code = self._popen.wait()
        self._join_readers(timeout=2.0)
        return code

    def _terminate_group(self, grace: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self._popen.poll()
            if not group_alive(self.pgid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self._popen.wait()
        deadline = time.monotonic() + 5
        while group_alive(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


def probe_health(url: str, timeout: float = 2.0) -> bool:
    try:
        return requests.get(f"{url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def read_served_max_model_len(url: str, timeout: float = 5.0) -> int | None:
    try:
        response = requests.get(f"{url.rstrip('/')}/v1/models", timeout=timeout)
        data = response.json()["data"]
        value = data[0].get("max_model_len")
    except (requests.RequestException, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return int(value) if isinstance(value, int) else None
