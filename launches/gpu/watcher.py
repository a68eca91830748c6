"""Watching the servers that are ready: one that exits is restarted (its config keeps it up) or
reported crashed with its last log lines; one whose /health stops answering is reported unhealthy."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from pathlib import Path

from launches.contract import ContractError, EventKind, LaunchSpec
from launches.gpu.host import HostState
from launches.gpu.launcher import Launcher
from launches.gpu.outbox import EventStream
from launches.gpu.state import ServerRecord
from launches.vllm.process import VllmProcess, group_alive, kill_group, probe_health

log = logging.getLogger("aifred.gpu")

CRASH_TAIL_LINES = 40
HEALTH_FAILURES_REPORTED = 3


class Watcher:
    def __init__(self, state: HostState, events: EventStream, launcher: Launcher) -> None:
        self.state = state
        self.events = events
        self.launcher = launcher

    def run(self) -> None:
        """The watcher thread: ``watch_once`` every second until the worker stops."""
        while not self.state.stopping.wait(1.0):
            try:
                self.watch_once()
            except Exception:
                log.exception("watching servers failed")

    def watch_once(self) -> None:
        """Report servers that exited; probe the health of the others."""
        state = self.state
        with state.lock:
            ready = [record for record in state.records.values() if record.status == "ready"]
        for record in ready:
            process = state.processes.get(record.launch_id)
            if process is not None:
                exited = process.poll() is not None
            else:
                exited = not (record.pgid and group_alive(record.pgid))
            with state.lock:
                if state.records.get(record.launch_id) is not record or record.status != "ready":
                    continue  # stopped meanwhile: not a crash
                if exited:
                    record.status = "crashed"
            if exited:
                self._crashed(record, process)
                continue
            if record.url and not probe_health(record.url, timeout=2.0):
                failures = state.health_failures.get(record.launch_id, 0) + 1
                state.health_failures[record.launch_id] = failures
                if failures == HEALTH_FAILURES_REPORTED:
                    self.events.emit(
                        record.launch_id, EventKind.UNHEALTHY, {"reason": "/health does not answer."}
                    )
            elif state.health_failures.pop(record.launch_id, 0) >= HEALTH_FAILURES_REPORTED:
                self.events.emit(record.launch_id, EventKind.HEALTHY, {})

    def _crashed(self, record: ServerRecord, process: VllmProcess | None) -> None:
        if process is not None:
            process.stop(grace=2.0)  # reap it and whatever it left in its group
        elif record.pgid:
            kill_group(record.pgid, grace=2.0)
        follower = self.state.followers.get(record.launch_id)
        if follower is not None:
            follower.join(timeout=2.0)  # its last lines, read before the report
        exit_code = process.returncode if process is not None else None
        tail = self.log_tail(record, process)
        if self.restart_or_end(record, exit_code, tail):
            return
        self.events.emit(
            record.launch_id,
            EventKind.CRASHED,
            {
                "reason": "The vLLM server exited"
                + (f" with code {exit_code}" if exit_code is not None else "")
                + ".",
                "exit_code": exit_code,
                "log_tail": tail,
            },
        )
        self.state.forget(record.launch_id)

    def restart_or_end(self, record: ServerRecord, exit_code: int | None, tail: list[str]) -> bool:
        """After a crash: restart a server its config keeps up, unless it crashed too often.

        Returns False when the crash stands (no auto-restart asked). Restarts at most
        ``restart_limit`` times within ``restart_window_s``, waiting base × 2^(n-1) seconds before the
        n-th; past the limit the launch ends "crash loop" with the last log lines.
        """
        if not record.spec:
            return False
        try:
            spec = LaunchSpec.from_dict(record.spec)
        except ContractError as exc:
            log.error("launch %s: the kept spec does not parse (%s); not restarted", record.launch_id, exc)
            return False
        if not spec.keep_up:
            return False
        limit, window = spec.restart_limit, spec.restart_window_s
        now = time.time()
        recent = [when for when in record.restarted_at if now - when < window]
        code = f" with code {exit_code}" if exit_code is not None else ""
        if len(recent) >= limit:
            self.events.emit(
                record.launch_id,
                EventKind.CRASHED,
                {
                    "reason": f"Crash loop: the server exited{code} after {len(recent)} restarts within "
                    f"{window // 60} min; it is not restarted again.",
                    "outcome": "crash_loop",
                    "exit_code": exit_code,
                    "log_tail": tail,
                },
            )
            self.state.forget(record.launch_id)
            return True
        wait = self.state.config.restart_backoff_seconds * 2 ** len(recent)
        with self.state.lock:
            record.status = "restarting"
            record.restarted_at = [*recent, now]
            record.attempts_before = record.attempts_seen
            record.pid = record.pgid = None
            self.state.processes.pop(record.launch_id, None)
            self.state.save()
        self.events.emit(
            record.launch_id,
            EventKind.RESTARTING,
            {
                "reason": f"The server exited{code}; restart {len(recent) + 1} of {limit} in {wait:g} s.",
                "restarts": len(recent) + 1,
                "restart_limit": limit,
                "next_try_in": wait,
                "exit_code": exit_code,
                "log_tail": tail,
            },
        )
        threading.Thread(target=self.launcher.restart, args=(record, wait), daemon=True).start()
        return True

    def log_tail(self, record: ServerRecord, process: VllmProcess | None) -> list[str]:
        """The server's last ``CRASH_TAIL_LINES`` lines of output ([] when none can be read)."""
        if process is not None:
            return process.recent_lines(CRASH_TAIL_LINES)
        follower = self.state.followers.get(record.launch_id)
        if follower is not None:
            return follower.recent_lines(CRASH_TAIL_LINES)
        # An adopted server nobody followed: the cleaned log of its last attempt, as far as it goes.
        path = Path(record.log_path) if record.log_path else None
        if path is None:
            # Only the cleaned view (launch-N-attempt-M.log), not the stream files beside it.
            pattern = re.compile(rf"launch-{record.launch_id}-attempt-(\d+)\.log")
            numbered = [
                (int(match.group(1)), candidate)
                for candidate in Path(record.log_dir).glob(f"launch-{record.launch_id}-attempt-*.log")
                if (match := pattern.fullmatch(candidate.name))
            ]
            path = max(numbered)[1] if numbered else None
        if path is None:
            return []
        with contextlib.suppress(OSError):
            return path.read_text(errors="replace").splitlines()[-CRASH_TAIL_LINES:]
        return []
