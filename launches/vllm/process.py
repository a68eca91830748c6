"""A vLLM server as a process group: start, watch its output, probe it, and stop all of it.

vLLM forks engine and worker processes that hold GPU memory; stopping only the front-end leaves
them behind. Each server therefore runs in its own session (process group = its pid), and every
stop signals the whole group.

A server outlives the worker that started it (a restarted worker adopts it: ``HostRuntime.adopt``). Its
output therefore goes to files, never to pipes: with a pipe, the server's next log line after the
worker's death (vLLM logs throughput every few seconds) would meet a closed pipe and end it. With a
``log_path``, the child's stdout and stderr go to ``<stem>.stdout.log`` and ``<stem>.stderr.log``
(``<stem>`` is ``log_path`` without ``.log``), opened by the parent, handed to the child and closed
in the parent at once. Two files rather than one shared file keep the stream of every line, which
``on_line`` receives; the cost is that the order between the two streams is only as good as the
followers' timing, as it was with pipes. Threads follow (tail) the files; ``log_path`` itself gets
the cleaned lines in the order the following worker read them, the view people and crash reports
read. Without a ``log_path`` the streams are pipes, for short-lived uses (tests, a detect-only run).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import struct
import subprocess
import termios
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


FOLLOW_INTERVAL = 0.05
# How much of the cleaned view an adopting worker reads back to seed its recent lines.
SEED_BYTES = 256 * 1024


def output_paths(log_path: str) -> dict[str, str]:
    """The files a server started with ``log_path`` writes its two streams to, by stream name."""
    stem = log_path[: -len(".log")] if log_path.endswith(".log") else log_path
    return {"stdout": f"{stem}.stdout.log", "stderr": f"{stem}.stderr.log"}


def follow_log(
    path: str,
    on_line: Callable[[str], None],
    stop_event: threading.Event,
    from_offset: int = 0,
    *,
    running: Callable[[], bool] | None = None,
    interval: float = FOLLOW_INTERVAL,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Follow the file at ``path`` from ``from_offset``, calling ``on_line`` with each cleaned line.

    At the end of the file it waits ``interval`` and reads again. It returns (with the offset it
    reached) once ``stop_event`` is set, or once ``running()`` says the writer is gone and what it
    wrote has been read. A file that does not exist yet is waited for; a file that shrank (replaced
    or truncated) is read again from its start. ``on_progress`` gets the offset up to which every
    complete line has been handed to ``on_line``.
    """
    offset = from_offset
    buffer = b""
    handle: IO[bytes] | None = None
    try:
        while not stop_event.is_set():
            # Asked before reading, so that the read after the writer's end drains all it wrote.
            finished = running is not None and not running()
            if handle is None:
                with contextlib.suppress(FileNotFoundError):
                    handle = open(path, "rb")  # noqa: SIM115  (kept open across the loop)
                    handle.seek(offset)
            chunk = b""
            if handle is not None:
                if os.fstat(handle.fileno()).st_size < offset:
                    offset, buffer = 0, b""
                    handle.seek(0)
                chunk = handle.read(65536)
            if chunk:
                offset += len(chunk)
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    on_line(clean_line(raw.decode("utf-8", errors="replace")))
                if on_progress is not None:
                    on_progress(offset - len(buffer))
                continue
            if finished:
                if buffer:
                    on_line(clean_line(buffer.decode("utf-8", errors="replace")))
                break
            stop_event.wait(interval)
    finally:
        if handle is not None:
            handle.close()
    return offset


def _pipe_drained(stream: IO[bytes], idle: threading.Event) -> bool:
    """Nothing left in the pipe and its reader waiting for more (so all it read was handed on)."""
    if stream.closed:
        return True
    try:
        pending = struct.unpack("i", fcntl.ioctl(stream.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return True
    return pending == 0 and idle.is_set()


class LogFollower:
    """The lines of one server, from pipes or followed files: the recent ones, a view file, a callback."""

    def __init__(
        self,
        *,
        on_line: LineCallback | None = None,
        max_lines: int = 2000,
        view_path: str | None = None,
        seed: list[str] | None = None,
    ) -> None:
        self._on_line = on_line
        self._lines: deque[str] = deque(seed or (), maxlen=max_lines)
        self._lock = threading.Lock()
        self._view = open(view_path, "a", encoding="utf-8") if view_path else None  # noqa: SIM115
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        # How far each followed file has been delivered, and whether each pipe reader is between
        # chunks: what catch_up() compares with what the server has written.
        self._delivered: dict[str, int] = {}
        self._files: dict[str, str] = {}
        self._pipes: dict[str, tuple[IO[bytes], threading.Event]] = {}

    @classmethod
    def adopt(
        cls,
        pgid: int,
        log_path: str,
        *,
        on_line: LineCallback | None = None,
        max_lines: int = 2000,
    ) -> LogFollower:
        """Follow a server another worker started with ``log_path``, until its group is gone.

        The recent lines start with the end of the cleaned view the previous worker wrote; the
        files are followed from their current end. What the server wrote while no worker followed
        it is in its stream files only.
        """
        seed: list[str] = []
        with contextlib.suppress(OSError), open(log_path, "rb") as view:
            size = view.seek(0, os.SEEK_END)
            view.seek(max(0, size - SEED_BYTES))
            lines = view.read().decode("utf-8", errors="replace").splitlines()
            seed = lines[1:] if size > SEED_BYTES else lines  # the first may be cut
        follower = cls(on_line=on_line, max_lines=max_lines, view_path=log_path, seed=seed)
        for name, path in output_paths(log_path).items():
            try:
                offset = os.path.getsize(path)
            except OSError:
                offset = 0
            follower.follow_file(name, path, offset, running=lambda: group_alive(pgid))
        return follower

    def follow_file(self, name: str, path: str, offset: int, *, running: Callable[[], bool]) -> None:
        self._files[name] = path
        self._delivered[name] = offset

        def target() -> None:
            follow_log(
                path,
                lambda line: self._emit(name, line),
                self._stop,
                offset,
                running=running,
                on_progress=lambda reached: self._delivered.__setitem__(name, reached),
            )

        self._spawn(name, target)

    def follow_pipe(self, name: str, stream: IO[bytes]) -> None:
        idle = threading.Event()
        self._pipes[name] = (stream, idle)

        def target() -> None:
            buffer = b""
            while True:
                idle.set()
                chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
                idle.clear()
                if not chunk:
                    break
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    self._emit(name, clean_line(raw.decode("utf-8", errors="replace")))
            if buffer:
                self._emit(name, clean_line(buffer.decode("utf-8", errors="replace")))
            stream.close()

        self._spawn(name, target)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name=f"vllm-{name}")
        self._threads.append(thread)
        thread.start()

    def _emit(self, name: str, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            if self._view is not None:
                self._view.write(f"{line}\n")
                self._view.flush()
        if self._on_line is not None:
            # A failing observer must not stop the output from being drained (vLLM would block).
            with contextlib.suppress(Exception):
                self._on_line(name, line)

    def recent_lines(self, n: int = 40) -> list[str]:
        with self._lock:
            return list(self._lines)[-n:] if n else []

    def catch_up(self, timeout: float = 2.0) -> bool:
        """Wait until every line the server has written so far has been handed on; True if it was.

        The two streams are read by separate threads, so a line on one (uvicorn's ready line on
        stderr) can be handed on before an earlier line on the other (vLLM's auto-fit line on stdout).
        """
        targets = {}
        for name, path in self._files.items():
            with contextlib.suppress(OSError):
                targets[name] = os.path.getsize(path)
        deadline = time.monotonic() + timeout
        quiet_checks = 0
        while time.monotonic() < deadline:
            files_done = all(self._delivered.get(name, 0) >= size for name, size in targets.items())
            pipes_done = all(_pipe_drained(stream, idle) for stream, idle in self._pipes.values())
            # Files are exact (delivered offset against size). A pipe reader that has just taken a
            # chunk may not have flagged itself busy yet, so a pipe must look drained twice in a row.
            quiet_checks = quiet_checks + 1 if pipes_done else 0
            if files_done and (quiet_checks >= 2 or not self._pipes):
                return True
            time.sleep(0.02)
        return False

    def join(self, timeout: float) -> bool:
        """Wait for the followers to finish; True (and the view closed) when all have."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            return False
        with self._lock:
            if self._view is not None:
                self._view.close()
                self._view = None
        return True

    def stop(self, timeout: float = 2.0) -> None:
        """Stop following now (pipes are read until they close)."""
        self._stop.set()
        self.join(timeout)


class VllmProcess:
    """One running vLLM command, its output followed by threads (from files or pipes)."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        on_line: LineCallback | None,
        max_lines: int,
        log_path: str | None,
        offsets: Mapping[str, int] | None = None,
    ) -> None:
        self._popen = popen
        self.log_path = log_path
        self.pgid = popen.pid
        self._follower = LogFollower(on_line=on_line, max_lines=max_lines, view_path=log_path)
        if log_path:
            for name, path in output_paths(log_path).items():
                start = (offsets or {}).get(name, 0)
                self._follower.follow_file(name, path, start, running=self._running)
        for name, stream in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            if stream is not None:
                self._follower.follow_pipe(name, stream)

    def _running(self) -> bool:
        # Forked engine processes may write after the front-end is gone: follow until all are.
        return self._popen.poll() is None or group_alive(self.pgid)

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
        files: dict[str, IO[bytes]] = {}
        offsets: dict[str, int] = {}
        try:
            if log_path:
                os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
                for name, path in output_paths(log_path).items():
                    # Appended to, so a reused path keeps what was there; following starts after it.
                    files[name] = open(path, "ab")  # noqa: SIM115  (closed below, once handed over)
                    offsets[name] = files[name].seek(0, os.SEEK_END)
            popen = subprocess.Popen(
                argv,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=files.get("stdout", subprocess.PIPE),
                stderr=files.get("stderr", subprocess.PIPE),
                start_new_session=True,
            )
        except OSError as exc:
            raise ProcessStartError(f"{argv[0]} could not be started: {exc.strerror or exc}") from exc
        finally:
            # The child has its own copies: nothing of the server stays tied to this process.
            for handle in files.values():
                handle.close()
        return cls(popen, on_line=on_line, max_lines=max_lines, log_path=log_path, offsets=offsets)

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
        return self._follower.recent_lines(n)

    def catch_up(self, timeout: float = 2.0) -> bool:
        """Wait until every line written so far, on either stream, has reached ``on_line``."""
        return self._follower.catch_up(timeout)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._follower.join(timeout=2.0)
        return code

    def stop(self, grace: float = 10.0) -> int | None:
        """Stop the whole process group and reap the leader; returns its exit code."""
        if self._popen.poll() is None or group_alive(self.pgid):
            self._terminate_group(grace)
        code = self._popen.wait()
        self._follower.join(timeout=2.0)
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


def port_in_use(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something already accepts connections on ``host:port`` (``0.0.0.0`` is asked
    on the loopback address)."""
    address = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 - a wildcard bind is asked locally
    try:
        with socket.create_connection((address, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_owned_by_group(port: int, pgid: int) -> bool | None:
    """Whether the socket listening on ``port`` belongs to a process of group ``pgid``.

    None when this cannot be told (no ``/proc``, or the listener's owner is not visible to us):
    the caller then relies on the port having been free before the start.
    """
    inodes = _listening_inodes(int(port))
    if not inodes:
        return None if not os.path.isdir("/proc/net") else False
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pgid:
                continue
            fd_dir = f"/proc/{entry}/fd"
            for fd in os.listdir(fd_dir):
                if os.readlink(os.path.join(fd_dir, fd)) in targets:
                    return True
        except OSError:
            continue
    return False
