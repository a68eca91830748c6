"""What one GPU worker knows and does: its cards, its servers, their events.

One ``HostRuntime`` lives in the worker process and puts together its parts, which share one
``HostState`` (``launches.gpu.host``) and its lock:

- the event stream (``launches.gpu.outbox``): numbers every launch event, keeps it in the state
  file's outbox until the control side confirms it, and sends it from the sender thread;
- the launcher (``launches.gpu.launcher``): Celery's task threads call ``run_launch`` and
  ``stop_launch``;
- the watcher (``launches.gpu.watcher``): a thread that notices servers that exit or stop answering;
- the adopter (``launches.gpu.adopter``): on start, finds the previous worker's servers again.

A heartbeat thread reports the inventory and the servers (``report``).
"""

from __future__ import annotations

import logging
import shlex
import threading
from typing import Any

from gpus.nvml import Inventory, SimulatedGpus
from launches.contract import HOST_REPORT_TASK
from launches.gpu.adopter import adopt
from launches.gpu.config import WorkerConfig
from launches.gpu.host import HostState, now_iso
from launches.gpu.launcher import Launcher
from launches.gpu.outbox import EventStream, Sender
from launches.gpu.watcher import Watcher
from launches.vllm.versions import VllmVersionError, detect_vllm_version

log = logging.getLogger("aifred.gpu")

# A report not consumed within this many heartbeat intervals is dropped by the control worker unread.
REPORT_EXPIRES_HEARTBEATS = 6


class HostRuntime:
    def __init__(self, config: WorkerConfig, send: Sender) -> None:
        self.config = config
        self._send = send
        self.state = HostState(config)
        self.events = EventStream(self.state, send)
        self.launcher = Launcher(self.state, self.events)
        self.watcher = Watcher(self.state, self.events, self.launcher)
        self.started_at = now_iso()
        self._threads: list[threading.Thread] = []

    @property
    def simulated(self) -> SimulatedGpus | None:
        return self.state.simulated

    @property
    def vllm_version(self) -> str:
        return self.state.vllm_version

    @property
    def outbox(self) -> list[list[Any]]:
        """Events not yet confirmed by the control side, oldest first (see ``HostState``)."""
        return self.state.outbox

    # --- inventory and reports ---------------------------------------------------------------

    def inventory(self) -> Inventory:
        return self.state.inventory()

    def detect_version(self) -> None:
        state = self.state
        try:
            state.vllm_version = detect_vllm_version(self.config.vllm_command)
            state.vllm_error = ""
        except VllmVersionError as exc:
            state.vllm_version = ""
            state.vllm_error = str(exc)
            log.warning("vLLM version unknown: %s", exc)

    def report(self) -> dict[str, Any]:
        state = self.state
        inventory = self.inventory()
        with state.lock:
            servers = [record.summary() for record in state.records.values()]
            received = sorted(state.received)[-500:]
        return {
            "host": self.config.host,
            "sent_at": now_iso(),
            "worker_started_at": self.started_at,
            "vllm_command": shlex.join(self.config.vllm_command),
            "vllm_version": state.vllm_version,
            "vllm_error": state.vllm_error,
            "simulated": inventory.simulated,
            "nvml_status": inventory.status,
            "driver_version": inventory.driver_version,
            "gpus": [gpu.to_dict() for gpu in inventory.gpus],
            "running_servers": servers,
            "installation": state.installation,
            "launches": self.launch_view(),
            "received": received,
        }

    def launch_view(self) -> list[dict[str, Any]]:
        """The worker's view of every launch it holds: its state and the last event number it wrote.

        A launch is held while it has a server record or unconfirmed events; ``status`` is the
        record's ("starting", "ready", "restarting", "stopping") or "ended" when only events are left;
        ``unconfirmed`` counts its events still in the outbox.
        """
        state = self.state
        with state.lock:
            view: dict[int, dict[str, Any]] = {}
            for launch_id, record in state.records.items():
                view[launch_id] = {"launch_id": launch_id, "status": record.status, "pgid": record.pgid}
            unconfirmed: dict[int, int] = {}
            for launch_id, *_ in state.outbox:
                view.setdefault(launch_id, {"launch_id": launch_id, "status": "ended", "pgid": None})
                unconfirmed[launch_id] = unconfirmed.get(launch_id, 0) + 1
            for launch_id, item in view.items():
                item["last_seq"] = self.events.last_seq(launch_id)
                item["unconfirmed"] = unconfirmed.get(launch_id, 0)
            return list(view.values())

    @property
    def report_expires_seconds(self) -> float:
        """Seconds a sent report may wait in the control queue before the consumer drops it unread: a
        few heartbeat intervals (a newer report follows each interval; an old one only misleads)."""
        return float(REPORT_EXPIRES_HEARTBEATS * self.config.heartbeat_seconds)

    def send_report(self) -> None:
        """Send ``report()`` to the control queue with ``report_expires_seconds`` as its expiry."""
        self._send(HOST_REPORT_TASK, [self.report()], expires=self.report_expires_seconds)

    # --- events ------------------------------------------------------------------------------

    def emit(self, launch_id: int, kind: str, data: dict[str, Any]) -> int:
        """Number one event and put it in the outbox (saved first); the sender thread sends it."""
        return self.events.emit(launch_id, kind, data)

    def send_outbox(self) -> int:
        """Send every unsent event in order; stop at the first failure. Returns how many were sent."""
        return self.events.send_outbox()

    def reconcile(self, directive: dict[str, Any]) -> None:
        """Carry out what the control side concluded from a heartbeat.

        ``confirmed``: {launch id: last seq applied} — those events leave the outbox. ``resend``:
        {launch id: first seq missing} — send them again. ``stop``: launch ids the site considers
        ended — stop their servers.
        """
        confirmed = {int(k): int(v) for k, v in (directive.get("confirmed") or {}).items()}
        resend = {int(k): int(v) for k, v in (directive.get("resend") or {}).items()}
        self.events.confirm(confirmed, resend)
        for launch_id in directive.get("stop") or []:
            launch_id = int(launch_id)
            with self.state.lock:
                record = self.state.records.get(launch_id)
            if record is not None:
                log.warning("launch %s has ended in the site; stopping what runs for it", launch_id)
                threading.Thread(target=self.stop_launch, args=(launch_id,), daemon=True).start()

    # --- launching, stopping, watching, adopting ---------------------------------------------

    def run_launch(self, spec: dict[str, Any]) -> str:
        """See ``Launcher.run_launch``."""
        return self.launcher.run_launch(spec)

    def stop_launch(self, launch_id: int, spec_id: str | None = None) -> str:
        """See ``Launcher.stop_launch``."""
        return self.launcher.stop_launch(launch_id, spec_id)

    def watch_once(self) -> None:
        """See ``Watcher.watch_once``."""
        self.watcher.watch_once()

    def adopt(self) -> None:
        """See ``launches.gpu.adopter.adopt``."""
        adopt(self.state, self.events)

    # --- threads -----------------------------------------------------------------------------

    def start(self) -> None:
        self.detect_version()
        self.adopt()
        self.send_report()
        loops = (
            (self._heartbeat_loop, "heartbeat"),
            (self.watcher.run, "watcher"),
            (self.events.run, "sender"),
        )
        for target, name in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self) -> None:
        self.state.stopping.set()

    def _heartbeat_loop(self) -> None:
        while not self.state.stopping.wait(self.config.heartbeat_seconds):
            try:
                self.send_report()
            except Exception:
                log.exception("heartbeat failed")


_runtime: HostRuntime | None = None


def set_runtime(runtime: HostRuntime) -> None:
    global _runtime
    _runtime = runtime


def current_runtime() -> HostRuntime:
    if _runtime is None:
        raise RuntimeError("The GPU worker's runtime is not set up; start it with python -m launches.gpu.")
    return _runtime
