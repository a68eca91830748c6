"""After a worker restart: find the servers of the previous worker of this host again, or report
them gone, and stop whatever half-started server it left behind (found by ``LAUNCH_MARK``)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from launches.contract import EventKind
from launches.gpu.host import LAUNCH_MARK, HostState
from launches.gpu.outbox import EventStream
from launches.gpu.state import StateFileError, WorkerState
from launches.gpu.watcher import CRASH_TAIL_LINES
from launches.vllm.process import LogFollower, group_alive, kill_group

log = logging.getLogger("aifred.gpu")


def adopt(state: HostState, events: EventStream) -> None:
    """Load the state file into ``state`` and settle every launch the previous worker held.

    A ready server whose process group lives on is adopted (its output followed from its log files,
    an "adopted" event); any other is stopped, with its marked processes, and its launch ends
    (crashed, stopped or failed, outcome "worker_restarted"). Marked processes of launches the state
    file never listed are stopped too. Unconfirmed events are sent again.
    """
    try:
        saved = state.file.load_state()
    except StateFileError as exc:
        log.error("%s", exc)
        saved = WorkerState()
    previous = saved.servers
    with state.lock:
        state.received.update(saved.received)
        state.outbox[:] = saved.outbox
    events.resume(previous)
    host = state.config.host
    marked = find_marked_groups(host, state.installation)
    for launch_id, record in previous.items():
        if record.next_seq > 1:
            state.records[launch_id] = record
            events.emit(launch_id, EventKind.WORKER_RESTARTED, {"host": host})
        alive = bool(record.pgid and group_alive(record.pgid))
        if record.status == "ready" and alive:
            state.records[launch_id] = record
            if record.log_path and record.pgid:
                state.followers[launch_id] = LogFollower.adopt(
                    record.pgid, record.log_path, max_lines=CRASH_TAIL_LINES * 5
                )
            events.emit(
                launch_id, EventKind.ADOPTED, {"pid": record.pid, "pgid": record.pgid, "url": record.url}
            )
            continue
        state.records.pop(launch_id, None)
        groups = set(marked.pop(launch_id, set()))
        if record.pgid:
            groups.add(record.pgid)
        for pgid in groups:
            kill_group(pgid, grace=5.0)
        if record.status == "ready":
            kind, reason = EventKind.CRASHED, "The server exited while no GPU worker watched it."
        elif record.status == "stopping":
            kind, reason = EventKind.STOPPED, "Stopped (the GPU worker restarted during the stop)."
        else:
            kind, reason = (
                EventKind.FAILED,
                "The GPU worker restarted during the start; the half-started server was stopped.",
            )
        state.records[launch_id] = record  # so that the event's number is saved
        events.emit(launch_id, kind, {"outcome": "worker_restarted", "reason": reason})
        state.records.pop(launch_id, None)
    # Processes of launches the state file never listed (killed before the first save): stop them.
    for launch_id, groups in marked.items():
        if launch_id not in state.records:
            for pgid in groups:
                kill_group(pgid, grace=5.0)
    state.save()


def find_marked_groups(host: str, installation: str = "") -> dict[int, set[int]]:
    """Process groups of one installation's servers of ``host``, found by their mark (Linux /proc).

    Without ``installation``, those of every installation with a host of that name (tests, clean-up).
    """
    prefix = (f"{LAUNCH_MARK}={host}@{installation}:" if installation else f"{LAUNCH_MARK}={host}@").encode()
    found: dict[int, set[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            pgid = os.getpgid(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                with contextlib.suppress(ValueError):
                    found.setdefault(int(item.rsplit(b":", 1)[1]), set()).add(pgid)
    return found


def kill_marked_groups(host: str, grace: float) -> None:
    """Stop every marked server of ``host`` (any installation): SIGTERM, then SIGKILL after ``grace``
    seconds. For clean-up after the GPU workers are gone (``scripts/run.py``, benches, tests)."""
    for groups in find_marked_groups(host).values():
        for pgid in groups:
            kill_group(pgid, grace=grace)
