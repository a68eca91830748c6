"""The event stream of every launch this worker holds: numbered, kept in the outbox, sent in order.

Every launch event gets the next number of its launch and goes into the outbox in the state file
before the sender thread sends it, so a restarted worker never reuses a number and no event is lost
while the broker is away: it stays in the outbox until the control side confirms it (``confirm``),
and the sender retries with backoff for as long as the broker is away. Sends happen outside the
host's lock, so a broker that hangs never blocks a launch, a stop or the watcher.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from launches.contract import APPLY_EVENT_TASK, parse_payload
from launches.gpu.host import HostState, now_iso
from launches.gpu.state import ServerRecord

log = logging.getLogger("aifred.gpu")

# ``send(task_name, args, expires=None)``: one message to the control queue; raises while the broker is
# away. ``expires``: seconds after which the broker consumer drops the message unread (None: never).
Sender = Callable[..., None]
# The sender's waits between tries while the broker does not answer: doubling up to this many seconds.
SEND_BACKOFF_MAX_SECONDS = 10.0


class EventStream:
    """Numbers, keeps and sends the launch events of one worker (the outbox lives in ``state``).

    ``seqs``: launch id → the next event number; ``unsent``: the (launch_id, seq) of outbox events
    to send (for the first time, or again because the control side asked or the worker restarted).
    """

    def __init__(self, state: HostState, send: Sender) -> None:
        self.state = state
        self.lock = state.lock
        self.send = send
        self.seqs: dict[int, int] = {}
        self.unsent: set[tuple[int, int]] = set()
        self.ready = threading.Event()

    def emit(self, launch_id: int, kind: str, data: dict[str, Any]) -> int:
        """Number one event and put it in the outbox (saved first); the sender thread sends it.

        Raises ``ContractError`` naming the field when ``data`` is not what ``kind`` carries: a sender's
        mistake fails here, not as a refused event on the control side."""
        parse_payload(kind, data)
        state = self.state
        with self.lock:
            seq = self.seqs.get(launch_id, 1)
            self.seqs[launch_id] = seq + 1
            record = state.records.get(launch_id)
            if record is not None:
                record.next_seq = seq + 1
            # The spec id travels with every event: the control side applies none of another launch.
            state.outbox.append([launch_id, seq, kind, data, now_iso(), state.received.get(launch_id, "")])
            self.unsent.add((launch_id, seq))
            state.save()
        self.ready.set()
        return seq

    def send_outbox(self) -> int:
        """Send every unsent event in order; stop at the first failure. Returns how many were sent."""
        sent = 0
        with self.lock:
            pending = [list(event) for event in self.state.outbox if (event[0], event[1]) in self.unsent]
        for event in pending:
            self.send(APPLY_EVENT_TASK, event)
            with self.lock:
                self.unsent.discard((event[0], event[1]))
            sent += 1
        return sent

    def confirm(self, confirmed: dict[int, int], resend: dict[int, int]) -> None:
        """``confirmed``: {launch id: last seq applied} — those events leave the outbox. ``resend``:
        {launch id: first seq missing} — send them again."""
        state = self.state
        with self.lock:
            kept = []
            for event in state.outbox:
                launch_id, seq = int(event[0]), int(event[1])
                if seq <= confirmed.get(launch_id, 0):
                    self.unsent.discard((launch_id, seq))
                    continue
                if seq >= resend.get(launch_id, seq + 1):
                    self.unsent.add((launch_id, seq))
                kept.append(event)
            changed = len(kept) != len(state.outbox)
            state.outbox[:] = kept
            if changed:
                state.save()
        if resend:
            self.ready.set()

    def restart_stream(self, launch_id: int) -> None:
        """The same launch number from another database: a new stream, none of the old one's events.
        Called with the lock held."""
        self.state.outbox[:] = [event for event in self.state.outbox if event[0] != launch_id]
        self.unsent = {key for key in self.unsent if key[0] != launch_id}
        self.seqs.pop(launch_id, None)

    def resume(self, servers: dict[int, ServerRecord]) -> None:
        """After a worker restart, with the outbox and ``servers`` loaded from the state file: whatever
        was sent before may not have arrived, so send it all again, and number each launch's events
        on from the last one saved (the outbox keeps any event not yet confirmed)."""
        with self.lock:
            self.unsent = {(int(event[0]), int(event[1])) for event in self.state.outbox}
            for event in self.state.outbox:
                launch_id = int(event[0])
                self.seqs[launch_id] = max(self.seqs.get(launch_id, 1), int(event[1]) + 1)
            for launch_id, record in servers.items():
                self.seqs[launch_id] = max(record.next_seq, self.seqs.get(launch_id, 1))

    def last_seq(self, launch_id: int) -> int:
        """The number of the last event of the launch (0: none yet)."""
        return self.seqs.get(launch_id, 1) - 1

    def run(self) -> None:
        """The sender thread: send the outbox; while the broker does not answer, retry with doubling
        waits (for ever), until the worker stops."""
        stopping = self.state.stopping
        wait = 0.5
        while not stopping.is_set():
            self.ready.wait(1.0)
            self.ready.clear()
            try:
                self.send_outbox()
                wait = 0.5
            except Exception as exc:
                log.warning("sending events failed (%s); trying again in %.1f s", exc, wait)
                self.ready.set()
                stopping.wait(wait)
                wait = min(wait * 2, SEND_BACKOFF_MAX_SECONDS)
