"""What one GPU worker knows and does: its cards, its servers, their events.

One ``HostRuntime`` lives in the worker process. Celery's task threads call ``run_launch`` and
``stop_launch``; a heartbeat thread reports the inventory and the servers; a watcher thread notices
servers that exit. Every launch event gets the next number of its launch and goes into the outbox
in the state file before a sender thread sends it, so a restarted worker never reuses a number and
no event is lost while the broker is away: it stays in the outbox until the control side confirms
it (see ``reconcile``), and the sender retries with backoff for as long as the broker is away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpus.nvml import Inventory, SimulatedGpus, read_inventory_or_empty
from launches.contract import (
    APPLY_EVENT_TASK,
    HOST_REPORT_TASK,
    LAUNCH_UNKNOWN_TASK,
    ContractError,
    EventKind,
    LaunchSpec,
    MemoryOptions,
)
from launches.gpu.state import ServerRecord, StateFile, StateFileError, WorkerState
from launches.vllm.argv import ServeOptions
from launches.vllm.flags import has_flag
from launches.vllm.modelinfo import ModelConfigError, read_model_facts
from launches.vllm.policy import LaunchRequest
from launches.vllm.policy import run_launch as run_policy
from launches.vllm.process import LogFollower, VllmProcess, group_alive, kill_group, probe_health
from launches.vllm.versions import VllmVersionError, detect_vllm_version

log = logging.getLogger("aifred.gpu")

Sender = Callable[[str, list[Any]], None]
# Put in the environment of every server this worker starts: a restarted worker finds the processes
# of a start that was under way (whose process group it never learned) by this mark. The mark names
# the host and the installation (a random id in the state folder), so two installations with a host
# of the same name on one machine never touch each other's servers: "<host>@<installation>:<launch>".
LAUNCH_MARK = "AIFRED_LAUNCH_MARK"
# The sender's waits between tries while the broker does not answer: doubling up to this many seconds.
SEND_BACKOFF_MAX_SECONDS = 10.0
CRASH_TAIL_LINES = 40
HEALTH_FAILURES_REPORTED = 3


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number.") from None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class WorkerConfig:
    host: str
    vllm_command: list[str]
    heartbeat_seconds: int = 5
    state_dir: Path = Path("var/gpu-worker")
    simulated_gpus: str = ""
    serve_host: str = "0.0.0.0"  # noqa: S104  (servers are for clients on other machines)
    retry_wait_seconds: int = 120
    ready_timeout_seconds: int = 900
    # Auto-restart waits base, 2 × base, 4 × base ... seconds before each restart of a crashed server.
    restart_backoff_seconds: float = 5.0
    hf_token: str | None = field(default=None, repr=False)
    # Where a config without a fixed port gets one (inclusive), as AIFRED_PORT_RANGE "8100-8199".
    port_range: tuple[int, int] = (8100, 8199)

    @classmethod
    def from_env(cls, host: str) -> WorkerConfig:
        command = os.environ.get("AIFRED_VLLM_COMMAND", "vllm serve")
        return cls(
            host=host,
            vllm_command=shlex.split(command),
            heartbeat_seconds=max(1, _env_int("AIFRED_HEARTBEAT_SECONDS", 5)),
            state_dir=default_state_dir(host),
            simulated_gpus=os.environ.get("AIFRED_SIMULATED_GPUS", "").strip(),
            serve_host=os.environ.get("AIFRED_SERVE_HOST", "0.0.0.0"),  # noqa: S104
            retry_wait_seconds=_env_int("AIFRED_RETRY_WAIT_SECONDS", 120),
            ready_timeout_seconds=_env_int("AIFRED_READY_TIMEOUT_SECONDS", 900),
            restart_backoff_seconds=float(os.environ.get("AIFRED_RESTART_BACKOFF_SECONDS") or 5.0),
            hf_token=os.environ.get("HF_TOKEN") or None,
            port_range=parse_port_range(os.environ.get("AIFRED_PORT_RANGE", "8100-8199")),
        )


def parse_port_range(text: str) -> tuple[int, int]:
    """ "8100-8199" -> (8100, 8199); ValueError with what to write when it is not such a range."""
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ValueError(f"AIFRED_PORT_RANGE must look like 8100-8199; got {text!r}.")
    first, last = int(low), int(high)
    if not 1024 <= first <= last <= 65535:
        raise ValueError(f"AIFRED_PORT_RANGE must lie within 1024-65535, low to high; got {text!r}.")
    return first, last


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (a bind test, released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def default_state_dir(host: str) -> Path:
    """``AIFRED_STATE_DIR``, else ``gpu-worker-<host>`` under ``AIFRED_VAR_DIR`` (default ``var``)."""
    if os.environ.get("AIFRED_STATE_DIR"):
        return Path(os.environ["AIFRED_STATE_DIR"])
    return Path(os.environ.get("AIFRED_VAR_DIR") or "var") / f"gpu-worker-{host}"


class HostRuntime:
    def __init__(self, config: WorkerConfig, send: Sender) -> None:
        self.config = config
        self._send = send
        self.simulated = SimulatedGpus(config.host, config.simulated_gpus) if config.simulated_gpus else None
        self.state = StateFile(config.state_dir)
        self.installation = self.state.installation_id()
        self.lock = threading.RLock()
        # Events not yet confirmed by the control side, oldest first, as [launch_id, seq, kind, data,
        # emitted_at]; ``unsent`` holds the (launch_id, seq) of those to send (for the first time, or
        # again because the control side asked or the worker restarted).
        self.outbox: list[list[Any]] = []
        self.unsent: set[tuple[int, int]] = set()
        self.outbox_ready = threading.Event()
        # Launch id → spec id of every spec this worker received: a spec seen before is refused.
        self.received: dict[int, str] = {}
        self.records: dict[int, ServerRecord] = {}
        self.processes: dict[int, VllmProcess] = {}
        # Output of adopted servers (started by a previous worker), followed from their log files.
        self.followers: dict[int, LogFollower] = {}
        self.cancels: dict[int, threading.Event] = {}
        self.seqs: dict[int, int] = {}
        # Launch id → spec id of stops that came before their spec (the spec is then cancelled).
        self.cancelled_early: dict[int, str | None] = {}
        self.health_failures: dict[int, int] = {}
        self.stopping = threading.Event()
        self.started_at = _now_iso()
        self.vllm_version = ""
        self.vllm_error = ""
        self._nvml_warned = False
        self._threads: list[threading.Thread] = []

    # --- inventory and reports ---------------------------------------------------------------

    def inventory(self) -> Inventory:
        if self.simulated is not None:
            used: dict[int, int] = {}
            with self.lock:
                for record in self.records.values():
                    for index, mib in record.used_mib.items():
                        used[int(index)] = used.get(int(index), 0) + mib
            return self.simulated.inventory(used)
        inventory = read_inventory_or_empty()
        if inventory.status and not self._nvml_warned:
            # Said once: a host without a driver would otherwise repeat it every heartbeat.
            log.warning("%s", inventory.status)
            self._nvml_warned = True
        return inventory

    def detect_version(self) -> None:
        try:
            self.vllm_version = detect_vllm_version(self.config.vllm_command)
            self.vllm_error = ""
        except VllmVersionError as exc:
            self.vllm_version = ""
            self.vllm_error = str(exc)
            log.warning("vLLM version unknown: %s", exc)

    def report(self) -> dict[str, Any]:
        inventory = self.inventory()
        with self.lock:
            servers = [record.summary() for record in self.records.values()]
        return {
            "host": self.config.host,
            "sent_at": _now_iso(),
            "worker_started_at": self.started_at,
            "vllm_command": shlex.join(self.config.vllm_command),
            "vllm_version": self.vllm_version,
            "vllm_error": self.vllm_error,
            "simulated": inventory.simulated,
            "nvml_status": inventory.status,
            "driver_version": inventory.driver_version,
            "gpus": [gpu.to_dict() for gpu in inventory.gpus],
            "running_servers": servers,
            "installation": self.installation,
            "launches": self.launch_view(),
            "received": sorted(self.received)[-500:],
        }

    def launch_view(self) -> list[dict[str, Any]]:
        """The worker's view of every launch it holds: its state and the last event number it wrote.

        A launch is held while it has a server record or unconfirmed events; ``status`` is the
        record's ("starting", "ready", "restarting", "stopping") or "ended" when only events are left;
        ``unconfirmed`` counts its events still in the outbox.
        """
        with self.lock:
            view: dict[int, dict[str, Any]] = {}
            for launch_id, record in self.records.items():
                view[launch_id] = {"launch_id": launch_id, "status": record.status, "pgid": record.pgid}
            unconfirmed: dict[int, int] = {}
            for launch_id, *_ in self.outbox:
                view.setdefault(launch_id, {"launch_id": launch_id, "status": "ended", "pgid": None})
                unconfirmed[launch_id] = unconfirmed.get(launch_id, 0) + 1
            for launch_id, item in view.items():
                item["last_seq"] = self.seqs.get(launch_id, 1) - 1
                item["unconfirmed"] = unconfirmed.get(launch_id, 0)
            return list(view.values())

    def send_report(self) -> None:
        self._send(HOST_REPORT_TASK, [self.report()])

    # --- events ------------------------------------------------------------------------------

    def emit(self, launch_id: int, kind: str, data: dict[str, Any]) -> int:
        """Number one event and put it in the outbox (saved first); the sender thread sends it.

        Raises ``ContractError`` naming the field when ``data`` is not what ``kind`` carries: a sender's
        mistake fails here, not as a refused event on the control side."""
        from launches.contract import parse_payload

        parse_payload(kind, data)
        with self.lock:
            seq = self.seqs.get(launch_id, 1)
            self.seqs[launch_id] = seq + 1
            record = self.records.get(launch_id)
            if record is not None:
                record.next_seq = seq + 1
            # The spec id travels with every event: the control side applies none of another launch.
            self.outbox.append([launch_id, seq, kind, data, _now_iso(), self.received.get(launch_id, "")])
            self.unsent.add((launch_id, seq))
            self._save()
        self.outbox_ready.set()
        return seq

    def _save(self) -> None:
        with self.lock:
            self.state.save(self.records, self.outbox, self.received)

    def send_outbox(self) -> int:
        """Send every unsent event in order; stop at the first failure. Returns how many were sent."""
        sent = 0
        with self.lock:
            pending = [list(event) for event in self.outbox if (event[0], event[1]) in self.unsent]
        for event in pending:
            self._send(APPLY_EVENT_TASK, event)
            with self.lock:
                self.unsent.discard((event[0], event[1]))
            sent += 1
        return sent

    def reconcile(self, directive: dict[str, Any]) -> None:
        """Carry out what the control side concluded from a heartbeat.

        ``confirmed``: {launch id: last seq applied} — those events leave the outbox. ``resend``:
        {launch id: first seq missing} — send them again. ``stop``: launch ids the site considers
        ended — stop their servers.
        """
        confirmed = {int(k): int(v) for k, v in (directive.get("confirmed") or {}).items()}
        resend = {int(k): int(v) for k, v in (directive.get("resend") or {}).items()}
        with self.lock:
            kept = []
            for event in self.outbox:
                launch_id, seq = int(event[0]), int(event[1])
                if seq <= confirmed.get(launch_id, 0):
                    self.unsent.discard((launch_id, seq))
                    continue
                if seq >= resend.get(launch_id, seq + 1):
                    self.unsent.add((launch_id, seq))
                kept.append(event)
            changed = len(kept) != len(self.outbox)
            self.outbox = kept
            if changed:
                self._save()
        if resend:
            self.outbox_ready.set()
        for launch_id in directive.get("stop") or []:
            launch_id = int(launch_id)
            with self.lock:
                record = self.records.get(launch_id)
            if record is not None:
                log.warning("launch %s has ended in the site; stopping what runs for it", launch_id)
                threading.Thread(target=self.stop_launch, args=(launch_id,), daemon=True).start()

    # --- launching ---------------------------------------------------------------------------

    def run_launch(self, spec: dict[str, Any]) -> str:
        try:
            parsed = LaunchSpec.from_dict(spec)
        except ContractError as exc:
            log.error("launch spec refused: %s", exc)
            launch_id = spec.get("launch_id") if isinstance(spec, dict) else None
            if isinstance(launch_id, int) and not isinstance(launch_id, bool) and launch_id > 0:
                self.emit(
                    launch_id, EventKind.FAILED, {"outcome": "refused", "reason": f"Bad launch spec: {exc}"}
                )
            return "refused"
        launch_id = parsed.launch_id
        indices = list(parsed.gpu_indices)
        with self.lock:
            if self.received.get(launch_id) == parsed.spec_id:
                # A redelivered spec (same launch, whatever its state now) never starts a second server.
                log.info("launch %s: spec %s received before; ignored", launch_id, parsed.spec_id)
                return "duplicate"
            if launch_id in self.records:
                # Another installation's launch with the same number still runs here.
                log.warning(
                    "launch %s: spec %s refused, a server of another spec runs", launch_id, parsed.spec_id
                )
                return "refused"
            if launch_id in self.received:
                # The same number from another database: a new event stream, none of the old one's events.
                self.outbox = [event for event in self.outbox if event[0] != launch_id]
                self.unsent = {key for key in self.unsent if key[0] != launch_id}
                self.seqs.pop(launch_id, None)
            self.received[launch_id] = parsed.spec_id
            self._save()
            if self.cancelled_early.get(launch_id, "-") == parsed.spec_id:
                del self.cancelled_early[launch_id]
                self.emit(launch_id, EventKind.CANCELLED, {"reason": "Stopped before the start began."})
                return "cancelled"
            refusal = self._refusal(spec, indices)
            if refusal:
                self.emit(launch_id, EventKind.FAILED, {"outcome": "refused", "reason": refusal})
                return "refused"
            port = self._port_for(spec)
            if port is None:
                low, high = self.config.port_range
                reason = f"No free port between {low} and {high} on {self.config.host} (AIFRED_PORT_RANGE)."
                self.emit(launch_id, EventKind.FAILED, {"outcome": "refused", "reason": reason})
                return "refused"
            # A picked port stays the host's to replace, on this start and on a keep-up restart.
            spec = {
                **spec,
                "port": port,
                "port_picked": bool(spec.get("port_picked") or not spec.get("port")),
            }
            options = self._used_mib(spec, indices)
            record = ServerRecord(
                launch_id=launch_id,
                kind=str(spec.get("kind") or "launch"),
                status="starting",
                gpu_indices=indices,
                port=port,
                log_dir=str(self.config.state_dir / "logs"),
                used_mib=options,
                spec=dict(spec) if parsed.keep_up else {},
            )
            self.records[launch_id] = record
            cancel = self.cancels[launch_id] = threading.Event()
        self.emit(
            launch_id, EventKind.ACCEPTED, {"host": self.config.host, "worker_pid": os.getpid(), "port": port}
        )
        try:
            return self._start(spec, record, cancel)
        except Exception as exc:
            log.exception("launch %s failed unexpectedly", launch_id)
            self.emit(
                launch_id, EventKind.FAILED, {"outcome": "failed", "reason": f"The GPU worker failed: {exc}"}
            )
            self._forget(launch_id)
            return "failed"

    def _port_for(self, spec: dict[str, Any]) -> int | None:
        """The config's fixed port, or a free one of the port range (None when none is free).
        Called with the lock held."""
        if spec.get("port"):
            return int(spec["port"])
        return self._free_port()

    def _free_port(self, after: int | None = None) -> int | None:
        """The first port of the port range that no server of this worker holds and that binds now,
        starting after ``after`` and wrapping round (``after`` itself left out); None when none
        is. Called with the lock held."""
        taken = {record.port for record in self.records.values()}
        low, high = self.config.port_range
        ports = list(range(low, high + 1))
        if after is not None and low <= after <= high:
            start = after - low + 1
            ports = ports[start:] + ports[: start - 1]
        for port in ports:
            if port not in taken and port_is_free(self.config.serve_host, port):
                return port
        return None

    def _replace_port(self, record: ServerRecord, busy: int) -> int | None:
        """The next free port of the range for a launch whose host-picked port ``busy`` another
        process holds; the record takes it. None when none is free."""
        with self.lock:
            port = self._free_port(after=busy)
            if port is not None:
                log.warning("launch %s: port %s is busy; it starts on port %s", record.launch_id, busy, port)
                record.port = port
                if record.spec:
                    record.spec["port"] = port
                self._save()
            return port

    def _refusal(self, spec: dict[str, Any], indices: list[int]) -> str:
        """Why this host cannot start the launch now, or ''. Called with the lock held."""
        port = spec.get("port")
        for record in self.records.values():
            if port and record.port == int(port):
                return (
                    f"Port {port} on {self.config.host} is in use by launch #{record.launch_id}; "
                    "choose another port in the config, or leave it empty."
                )
        for record in self.records.values():
            shared = sorted(set(record.gpu_indices) & set(indices))
            if shared:
                return (
                    f"GPU {', '.join(map(str, shared))} on {self.config.host} is in use by launch "
                    f"#{record.launch_id}; one launch at a time per GPU. Stop it first."
                )
        inventory = self.inventory()
        if inventory.status:
            return f"This host cannot read its GPUs: {inventory.status}"
        expected = list(spec.get("gpu_uuids") or [])
        for position, index in enumerate(indices):
            card = inventory.by_index(index)
            if card is None:
                return f"{self.config.host} has no GPU {index}."
            if position < len(expected) and expected[position] != card.uuid:
                return (
                    f"GPU {index} on {self.config.host} is now {card.uuid}, not the card "
                    f"{expected[position]} the site knew: a GPU change. The next heartbeat reports it; "
                    "launch again."
                )
        return ""

    def _used_mib(self, spec: dict[str, Any], indices: list[int]) -> dict[str, int]:
        """Memory a simulated server holds, so that a simulated card shows it as used."""
        if self.simulated is None:
            return {}
        share = float((spec.get("options") or {}).get("gpu_memory_utilization") or 0.9)
        inventory = self.simulated.inventory()
        return {
            str(index): int(card.memory_total_mib * share)
            for index in indices
            if (card := inventory.by_index(index)) is not None
        }

    def _child_env(self, launch_id: int, indices: list[int]) -> dict[str, str]:
        env = {LAUNCH_MARK: f"{self.config.host}@{self.installation}:{launch_id}"}
        if self.simulated is not None:
            # The stand-in behaves like the simulated card: its memory, its name.
            card = self.simulated.inventory().by_index(indices[0])
            if card is not None:
                env["AIFRED_STANDIN_GPU_NAME"] = card.name
                env["AIFRED_STANDIN_GPU_TOTAL_MIB"] = str(card.memory_total_mib)
                env["AIFRED_STANDIN_GPU_FREE_MIB"] = str(card.memory_total_mib)
        return env

    def _start(self, spec: dict[str, Any], record: ServerRecord, cancel: threading.Event) -> str:
        launch_id = record.launch_id
        native = spec.get("native_context")
        default = spec.get("default_context")
        rope_theta = None
        try:
            facts = read_model_facts(spec["model"], spec.get("revision"), token=self.config.hf_token)
        except ModelConfigError as exc:
            self.emit(launch_id, EventKind.MODEL_FACTS, {"error": str(exc)})
        else:
            self.emit(launch_id, EventKind.MODEL_FACTS, facts.to_dict())
            extra = (spec.get("options") or {}).get("extra_args") or ()
            native, default = facts.lengths_for_version(
                self.vllm_version or None, disable_sliding_window=has_flag(extra, "--disable-sliding-window")
            )
            rope_theta = facts.rope_theta
        options = dict(spec.get("options") or {})
        serve = ServeOptions(
            model=spec["model"],
            revision=spec.get("revision"),
            served_model_name=spec.get("served_model_name"),
            host=self.config.serve_host,
            port=int(spec["port"]),
            **MemoryOptions.from_dict(options).to_dict(),
            extra_args=tuple(options.get("extra_args") or ()),
        )
        extra_env = self._child_env(launch_id, record.gpu_indices)
        if self.config.hf_token:
            extra_env["HF_TOKEN"] = self.config.hf_token
        request = LaunchRequest(
            options=serve,
            launch_id=launch_id,
            base_command=list(self.config.vllm_command),
            vllm_version=self.vllm_version or None,
            native_context=native,
            default_context=default,
            known_limit=spec.get("known_limit"),
            max_num_seqs=spec.get("max_num_seqs"),
            ceiling_hint=spec.get("ceiling_hint"),
            yarn_factor=float(spec.get("yarn_factor") or 1.0),
            context_cap=spec.get("context_cap"),
            gpu_uuids=[] if self.simulated else list(spec.get("gpu_uuids") or []),
            ready_timeout=self.config.ready_timeout_seconds,
            detect_only=bool(spec.get("detect_only")),
            log_dir=record.log_dir,
            extra_env=extra_env,
            rope_theta=rope_theta,
            next_port=(lambda busy: self._replace_port(record, busy)) if spec.get("port_picked") else None,
        )
        result = run_policy(
            request,
            on_event=lambda kind, data: self.emit(launch_id, kind, self._numbered(record, data)),
            cancel=cancel,
            before_retry=lambda: self.wait_for_free_memory(record.gpu_indices, cancel),
        )
        if result.outcome != "ready":
            # The policy has reported it ("failed", with outcome "cancelled" after a stop).
            self._forget(launch_id)
            return result.outcome
        if request.detect_only:
            self.emit(
                launch_id,
                EventKind.STOPPED,
                {
                    "reason": f"YaRN test: the server came up with a context of {result.max_model_len:,} "
                    "tokens and was stopped after the test.",
                    "test_passed": True,
                    "max_model_len": result.max_model_len,
                },
            )
            self._forget(launch_id)
            return "tested"
        with self.lock:
            record.status = "ready"
            record.pid, record.pgid = result.pid, result.pgid
            record.url = result.url or ""
            record.max_model_len = result.max_model_len
            record.log_path = (result.attempts[-1].log_path or "") if result.attempts else ""
            if result.process is not None:
                self.processes[launch_id] = result.process
            self._save()
            stop_wanted = cancel.is_set()
        if stop_wanted:
            # The stop came in between the ready line and now: honour it.
            self.stop_launch(launch_id)
        return "ready"

    @staticmethod
    def _numbered(record: ServerRecord, data: dict[str, Any]) -> dict[str, Any]:
        """A restart's attempts are numbered after the earlier ones of the same launch."""
        if isinstance(data.get("attempt"), int):
            number = data["attempt"] + record.attempts_before
            record.attempts_seen = max(record.attempts_seen, number)
            return {**data, "attempt": number}
        return data

    def _restart_or_end(self, record: ServerRecord, exit_code: int | None, tail: list[str]) -> bool:
        """After a crash: restart a server its config keeps up, unless it crashed too often.

        Returns False when the crash stands (no auto-restart asked). Restarts at most
        ``restart_limit`` times within ``restart_window_s``, waiting base × 2^(n-1) seconds before the
        n-th; past the limit the launch ends "crash loop" with the last log lines.
        """
        spec = record.spec
        if not spec.get("keep_up"):
            return False
        limit, window = int(spec.get("restart_limit") or 0), int(spec.get("restart_window_s") or 600)
        now = time.time()
        recent = [when for when in record.restarted_at if now - when < window]
        code = f" with code {exit_code}" if exit_code is not None else ""
        if len(recent) >= limit:
            self.emit(
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
            self._forget(record.launch_id)
            return True
        wait = self.config.restart_backoff_seconds * 2 ** len(recent)
        with self.lock:
            record.status = "restarting"
            record.restarted_at = [*recent, now]
            record.attempts_before = record.attempts_seen
            record.pid = record.pgid = None
            self.processes.pop(record.launch_id, None)
            self._save()
        self.emit(
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
        threading.Thread(target=self._restart, args=(record, wait), daemon=True).start()
        return True

    def _restart(self, record: ServerRecord, wait: float) -> None:
        if self.stopping.wait(wait):
            return
        with self.lock:
            if self.records.get(record.launch_id) is not record or record.status != "restarting":
                return  # stopped meanwhile
            record.status = "starting"
            cancel = self.cancels[record.launch_id] = threading.Event()
        # Straight to the length it served: no need to find the limit again.
        spec = {**record.spec, "known_limit": record.max_model_len or record.spec.get("known_limit")}
        try:
            self._start(spec, record, cancel)
        except Exception as exc:
            log.exception("restart of launch %s failed unexpectedly", record.launch_id)
            self.emit(
                record.launch_id,
                EventKind.FAILED,
                {"outcome": "failed", "reason": f"The restart failed: {exc}"},
            )
            self._forget(record.launch_id)

    def wait_for_free_memory(self, indices: list[int], cancel: threading.Event) -> None:
        """Before a second attempt: wait until the cards' memory is free again, within a time limit.

        vLLM's start-up profiling takes what it sees free; a half-released card would teach a limit
        that is too small. Simulated cards are free at once.
        """
        if self.simulated is not None:
            return
        deadline = time.monotonic() + self.config.retry_wait_seconds
        while time.monotonic() < deadline and not cancel.is_set():
            inventory = self.inventory()
            cards = [inventory.by_index(index) for index in indices]
            # "Free" = at most 5 % of the card in use (the driver and display keep a little).
            if all(card and card.memory_free_mib >= card.memory_total_mib * 0.95 for card in cards):
                return
            time.sleep(1.0)
        log.warning(
            "GPU memory of %s not free after %ss; trying anyway", indices, self.config.retry_wait_seconds
        )

    def _forget(self, launch_id: int) -> None:
        with self.lock:
            self.records.pop(launch_id, None)
            self.processes.pop(launch_id, None)
            follower = self.followers.pop(launch_id, None)
            self.cancels.pop(launch_id, None)
            self.health_failures.pop(launch_id, None)
            self._save()
        if follower is not None:
            follower.stop()

    # --- stopping ----------------------------------------------------------------------------

    def stop_launch(self, launch_id: int, spec_id: str | None = None) -> str:
        """Stop launch ``launch_id``'s server; ``spec_id`` (from the site's stop message) must be the
        spec it runs, else the stop is for another launch of that number and this host runs none of it.
        ``None``: the worker's own decision about a launch it holds."""
        with self.lock:
            record = self.records.get(launch_id)
            if spec_id is not None and self.received.get(launch_id) != spec_id:
                record = None
            if record is None:
                self.cancelled_early[launch_id] = spec_id
                # Not sequenced: this worker has no event stream for a launch it does not know.
                self._send(
                    LAUNCH_UNKNOWN_TASK,
                    [
                        launch_id,
                        self.config.host,
                        f"{self.config.host} runs no server for this launch.",
                        spec_id,
                    ],
                )
                return "unknown"
            if record.status == "starting":
                self.cancels[launch_id].set()
                return "cancelling"
            if record.status == "stopping":
                return "already stopping"
            record.status = "stopping"
            self._save()
            process = self.processes.get(launch_id)
        if process is not None:
            process.stop(grace=10.0)
        elif record.pgid:
            kill_group(record.pgid, grace=10.0)
        self.emit(launch_id, EventKind.STOPPED, {"reason": "Stopped on request."})
        self._forget(launch_id)
        return "stopped"

    # --- watching ----------------------------------------------------------------------------

    def watch_once(self) -> None:
        """Report servers that exited; probe the health of the others."""
        with self.lock:
            ready = [record for record in self.records.values() if record.status == "ready"]
        for record in ready:
            process = self.processes.get(record.launch_id)
            if process is not None:
                exited = process.poll() is not None
            else:
                exited = not (record.pgid and group_alive(record.pgid))
            with self.lock:
                if self.records.get(record.launch_id) is not record or record.status != "ready":
                    continue  # stopped meanwhile: not a crash
                if exited:
                    record.status = "crashed"
            if exited:
                if process is not None:
                    process.stop(grace=2.0)  # reap it and whatever it left in its group
                elif record.pgid:
                    kill_group(record.pgid, grace=2.0)
                follower = self.followers.get(record.launch_id)
                if follower is not None:
                    follower.join(timeout=2.0)  # its last lines, read before the report
                exit_code = process.returncode if process is not None else None
                if self._restart_or_end(record, exit_code, self._log_tail(record, process)):
                    continue
                self.emit(
                    record.launch_id,
                    EventKind.CRASHED,
                    {
                        "reason": "The vLLM server exited"
                        + (f" with code {exit_code}" if exit_code is not None else "")
                        + ".",
                        "exit_code": exit_code,
                        "log_tail": self._log_tail(record, process),
                    },
                )
                self._forget(record.launch_id)
                continue
            if record.url and not probe_health(record.url, timeout=2.0):
                failures = self.health_failures.get(record.launch_id, 0) + 1
                self.health_failures[record.launch_id] = failures
                if failures == HEALTH_FAILURES_REPORTED:
                    self.emit(record.launch_id, EventKind.UNHEALTHY, {"reason": "/health does not answer."})
            elif self.health_failures.pop(record.launch_id, 0) >= HEALTH_FAILURES_REPORTED:
                self.emit(record.launch_id, EventKind.HEALTHY, {})

    def _log_tail(self, record: ServerRecord, process: VllmProcess | None) -> list[str]:
        if process is not None:
            return process.recent_lines(CRASH_TAIL_LINES)
        follower = self.followers.get(record.launch_id)
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

    # --- restart: adopting what the previous worker left -------------------------------------

    def adopt(self) -> None:
        """Find the servers of the previous worker of this host again, or report them gone."""
        try:
            saved = self.state.load_state()
        except StateFileError as exc:
            log.error("%s", exc)
            saved = WorkerState()
        previous = saved.servers
        self.received = saved.received
        self.outbox = saved.outbox
        # Whatever was sent before the restart may not have arrived: send it all again.
        self.unsent = {(int(event[0]), int(event[1])) for event in self.outbox}
        for event in self.outbox:
            self.seqs[int(event[0])] = max(self.seqs.get(int(event[0]), 1), int(event[1]) + 1)
        marked = find_marked_groups(self.config.host, self.installation)
        for launch_id, record in previous.items():
            # Numbers go on from the last one saved (the outbox keeps any event not yet confirmed).
            self.seqs[launch_id] = max(record.next_seq, self.seqs.get(launch_id, 1))
            if record.next_seq > 1:
                self.records[launch_id] = record
                self.emit(launch_id, EventKind.WORKER_RESTARTED, {"host": self.config.host})
            alive = bool(record.pgid and group_alive(record.pgid))
            if record.status == "ready" and alive:
                self.records[launch_id] = record
                if record.log_path and record.pgid:
                    self.followers[launch_id] = LogFollower.adopt(
                        record.pgid, record.log_path, max_lines=CRASH_TAIL_LINES * 5
                    )
                self.emit(
                    launch_id, EventKind.ADOPTED, {"pid": record.pid, "pgid": record.pgid, "url": record.url}
                )
                continue
            self.records.pop(launch_id, None)
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
            self.records[launch_id] = record  # so that the event's number is saved
            self.emit(launch_id, kind, {"outcome": "worker_restarted", "reason": reason})
            self.records.pop(launch_id, None)
        # Processes of launches the state file never listed (killed before the first save): stop them.
        for launch_id, groups in marked.items():
            if launch_id not in self.records:
                for pgid in groups:
                    kill_group(pgid, grace=5.0)
        self._save()

    # --- threads -----------------------------------------------------------------------------

    def start(self) -> None:
        self.detect_version()
        self.adopt()
        self.send_report()
        loops = (
            (self._heartbeat_loop, "heartbeat"),
            (self._watch_loop, "watcher"),
            (self._send_loop, "sender"),
        )
        for target, name in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self) -> None:
        self.stopping.set()

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.config.heartbeat_seconds):
            try:
                self.send_report()
            except Exception:
                log.exception("heartbeat failed")

    def _send_loop(self) -> None:
        """Send the outbox; while the broker does not answer, retry with doubling waits (forever)."""
        wait = 0.5
        while not self.stopping.is_set():
            self.outbox_ready.wait(1.0)
            self.outbox_ready.clear()
            try:
                self.send_outbox()
                wait = 0.5
            except Exception as exc:
                log.warning("sending events failed (%s); trying again in %.1f s", exc, wait)
                self.outbox_ready.set()
                self.stopping.wait(wait)
                wait = min(wait * 2, SEND_BACKOFF_MAX_SECONDS)

    def _watch_loop(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                self.watch_once()
            except Exception:
                log.exception("watching servers failed")


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


_runtime: HostRuntime | None = None


def set_runtime(runtime: HostRuntime) -> None:
    global _runtime
    _runtime = runtime


def current_runtime() -> HostRuntime:
    if _runtime is None:
        raise RuntimeError("The GPU worker's runtime is not set up; start it with python -m launches.gpu.")
    return _runtime
