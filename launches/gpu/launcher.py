"""Starting and stopping launches on this host: a spec is parsed once, checked, given a port, and
run through the launch policy (``launches.vllm.policy``) with the host's cards and vLLM.

Celery's task threads call ``run_launch`` and ``stop_launch``; the watcher calls ``restart`` for a
server its config keeps up. From the parsed ``LaunchSpec`` on, nothing reads the spec as a dict;
what the worker adds itself (the port it picked, and that it picked it) lives on the ``ServerRecord``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import replace
from typing import Any

from launches.contract import LAUNCH_UNKNOWN_TASK, ContractError, EventKind, LaunchSpec, MemoryOptions
from launches.gpu.host import LAUNCH_MARK, HostState
from launches.gpu.outbox import EventStream
from launches.gpu.state import ServerRecord
from launches.vllm.argv import ServeOptions
from launches.vllm.policy import LaunchRequest
from launches.vllm.policy import run_launch as run_policy
from launches.vllm.process import kill_group

log = logging.getLogger("aifred.gpu")


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (a bind test, released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class Launcher:
    def __init__(self, state: HostState, events: EventStream) -> None:
        self.state = state
        self.events = events
        self.config = state.config

    def run_launch(self, data: dict[str, Any]) -> str:
        """Start the server of one launch from its spec as it arrived (``LaunchSpec.to_dict``'s shape).

        Returns once the server is ready or the launch has ended: "ready", "tested" (a YaRN test that
        came up), "failed", "cancelled", "refused" (a spec that does not parse, a busy port or card, a
        changed card, no free port), or "duplicate" (this spec was received before; nothing done).
        Every outcome but "duplicate" is also told to the control side as events.
        """
        try:
            spec = LaunchSpec.from_dict(data)
        except ContractError as exc:
            log.error("launch spec refused: %s", exc)
            launch_id = data.get("launch_id") if isinstance(data, dict) else None
            if isinstance(launch_id, int) and not isinstance(launch_id, bool) and launch_id > 0:
                self.events.emit(
                    launch_id, EventKind.FAILED, {"outcome": "refused", "reason": f"Bad launch spec: {exc}"}
                )
            return "refused"
        launch_id = spec.launch_id
        state = self.state
        with state.lock:
            if state.received.get(launch_id) == spec.spec_id:
                # A redelivered spec (same launch, whatever its state now) never starts a second server.
                log.info("launch %s: spec %s received before; ignored", launch_id, spec.spec_id)
                return "duplicate"
            if launch_id in state.records:
                # Another installation's launch with the same number still runs here.
                log.warning(
                    "launch %s: spec %s refused, a server of another spec runs", launch_id, spec.spec_id
                )
                return "refused"
            if launch_id in state.received:
                self.events.restart_stream(launch_id)
            state.received[launch_id] = spec.spec_id
            state.save()
            if state.cancelled_early.get(launch_id, "-") == spec.spec_id:
                del state.cancelled_early[launch_id]
                self.events.emit(
                    launch_id, EventKind.CANCELLED, {"reason": "Stopped before the start began."}
                )
                return "cancelled"
            refusal = self.refusal(spec)
            if refusal:
                self.events.emit(launch_id, EventKind.FAILED, {"outcome": "refused", "reason": refusal})
                return "refused"
            port = self.port_for(spec)
            if port is None:
                low, high = self.config.port_range
                reason = f"No free port between {low} and {high} on {self.config.host} (AIFRED_PORT_RANGE)."
                self.events.emit(launch_id, EventKind.FAILED, {"outcome": "refused", "reason": reason})
                return "refused"
            picked = spec.port is None
            spec = replace(spec, port=port)
            record = ServerRecord(
                launch_id=launch_id,
                kind=spec.kind,
                status="starting",
                gpu_indices=list(spec.gpu_indices),
                port=port,
                # A picked port stays the host's to replace, on this start and on a keep-up restart.
                port_picked=picked,
                log_dir=str(self.config.state_dir / "logs"),
                used_mib=self._used_mib(spec),
                spec=spec.to_dict() if spec.keep_up else {},
            )
            state.records[launch_id] = record
            cancel = state.cancels[launch_id] = threading.Event()
        self.events.emit(
            launch_id, EventKind.ACCEPTED, {"host": self.config.host, "worker_pid": os.getpid(), "port": port}
        )
        try:
            return self.start(spec, record, cancel)
        except Exception as exc:
            log.exception("launch %s failed unexpectedly", launch_id)
            self.events.emit(
                launch_id, EventKind.FAILED, {"outcome": "failed", "reason": f"The GPU worker failed: {exc}"}
            )
            state.forget(launch_id)
            return "failed"

    def port_for(self, spec: LaunchSpec) -> int | None:
        """The config's fixed port, or a free one of the port range (None when none is free).
        Called with the lock held."""
        return spec.port if spec.port is not None else self._free_port()

    def _free_port(self, after: int | None = None) -> int | None:
        """The first port of the port range that no server of this worker holds and that binds now,
        starting after ``after`` and wrapping round (``after`` itself left out); None when none
        is. Called with the lock held."""
        taken = {record.port for record in self.state.records.values()}
        low, high = self.config.port_range
        ports = list(range(low, high + 1))
        if after is not None and low <= after <= high:
            start = after - low + 1
            ports = ports[start:] + ports[: start - 1]
        for port in ports:
            if port not in taken and port_is_free(self.config.serve_host, port):
                return port
        return None

    def replace_port(self, record: ServerRecord, busy: int) -> int | None:
        """The next free port of the range for a launch whose host-picked port ``busy`` another
        process holds; the record takes it. None when none is free."""
        with self.state.lock:
            port = self._free_port(after=busy)
            if port is not None:
                log.warning("launch %s: port %s is busy; it starts on port %s", record.launch_id, busy, port)
                record.port = port
                self.state.save()
            return port

    def refusal(self, spec: LaunchSpec) -> str:
        """Why this host cannot start the launch now, or ''. Called with the lock held."""
        records = self.state.records.values()
        for record in records:
            if spec.port is not None and record.port == spec.port:
                return (
                    f"Port {spec.port} on {self.config.host} is in use by launch #{record.launch_id}; "
                    "choose another port in the config, or leave it empty."
                )
        for record in records:
            shared = sorted(set(record.gpu_indices) & set(spec.gpu_indices))
            if shared:
                return (
                    f"GPU {', '.join(map(str, shared))} on {self.config.host} is in use by launch "
                    f"#{record.launch_id}; one launch at a time per GPU. Stop it first."
                )
        inventory = self.state.inventory()
        if inventory.status:
            return f"This host cannot read its GPUs: {inventory.status}"
        expected = spec.gpu_uuids
        for position, index in enumerate(spec.gpu_indices):
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

    def _used_mib(self, spec: LaunchSpec) -> dict[str, int]:
        """Memory a simulated server holds, so that a simulated card shows it as used."""
        simulated = self.state.simulated
        if simulated is None:
            return {}
        share = MemoryOptions.from_dict(spec.options).gpu_memory_utilization
        inventory = simulated.inventory()
        return {
            str(index): int(card.memory_total_mib * share)
            for index in spec.gpu_indices
            if (card := inventory.by_index(index)) is not None
        }

    def _child_env(self, launch_id: int, indices: list[int]) -> dict[str, str]:
        env = {LAUNCH_MARK: self.state.mark(launch_id)}
        if self.state.simulated is not None:
            # The stand-in behaves like the simulated card: its memory, its name.
            card = self.state.simulated.inventory().by_index(indices[0])
            if card is not None:
                env["AIFRED_STANDIN_GPU_NAME"] = card.name
                env["AIFRED_STANDIN_GPU_TOTAL_MIB"] = str(card.memory_total_mib)
                env["AIFRED_STANDIN_GPU_FREE_MIB"] = str(card.memory_total_mib)
        if self.config.hf_token:
            env["HF_TOKEN"] = self.config.hf_token
        return env

    def start(self, spec: LaunchSpec, record: ServerRecord, cancel: threading.Event) -> str:
        """Run the launch policy for ``record``'s launch until its server is ready or the launch ends;
        returns the outcome as ``run_launch`` does. The model's lengths come with the spec (the site
        reads them for this host's vLLM version); a spec without them leaves the policy to read the
        model's config itself."""
        launch_id = record.launch_id
        state = self.state
        request = LaunchRequest(
            options=ServeOptions(
                model=spec.model,
                revision=spec.revision,
                served_model_name=spec.served_model_name,
                host=self.config.serve_host,
                port=record.port,
                **MemoryOptions.from_dict(spec.options).to_dict(),
                extra_args=tuple(spec.options.get("extra_args") or ()),
            ),
            launch_id=launch_id,
            base_command=list(self.config.vllm_command),
            vllm_version=state.vllm_version or None,
            native_context=spec.native_context,
            default_context=spec.default_context,
            rope_theta=spec.rope_theta,
            known_limit=spec.known_limit,
            max_num_seqs=spec.max_num_seqs,
            ceiling_hint=spec.ceiling_hint,
            yarn_factor=float(spec.yarn_factor),
            context_cap=spec.context_cap,
            gpu_uuids=[] if state.simulated else list(spec.gpu_uuids),
            ready_timeout=self.config.ready_timeout_seconds,
            detect_only=spec.detect_only,
            log_dir=record.log_dir,
            extra_env=self._child_env(launch_id, record.gpu_indices),
            next_port=(lambda busy: self.replace_port(record, busy)) if record.port_picked else None,
        )
        result = run_policy(
            request,
            on_event=lambda kind, data: self.events.emit(launch_id, kind, _numbered(record, data)),
            cancel=cancel,
            before_retry=lambda: self.wait_for_free_memory(record.gpu_indices, cancel),
        )
        if result.outcome != "ready":
            # The policy has reported it ("failed", with outcome "cancelled" after a stop).
            state.forget(launch_id)
            return result.outcome
        if spec.detect_only:
            self.events.emit(
                launch_id,
                EventKind.STOPPED,
                {
                    "reason": f"YaRN test: the server came up with a context of {result.max_model_len:,} "
                    "tokens and was stopped after the test.",
                    "test_passed": True,
                    "max_model_len": result.max_model_len,
                },
            )
            state.forget(launch_id)
            return "tested"
        with state.lock:
            record.status = "ready"
            record.pid, record.pgid = result.pid, result.pgid
            record.url = result.url or ""
            record.max_model_len = result.max_model_len
            record.log_path = (result.attempts[-1].log_path or "") if result.attempts else ""
            if result.process is not None:
                state.processes[launch_id] = result.process
            state.save()
            stop_wanted = cancel.is_set()
        if stop_wanted:
            # The stop came in between the ready line and now: honour it.
            self.stop_launch(launch_id)
        return "ready"

    def restart(self, record: ServerRecord, wait: float) -> None:
        """Start a kept-up server again after ``wait`` seconds, from the spec its record keeps, on the
        port it had and straight at the length it served (no need to find the limit again)."""
        state = self.state
        if state.stopping.wait(wait):
            return
        with state.lock:
            if state.records.get(record.launch_id) is not record or record.status != "restarting":
                return  # stopped meanwhile
            record.status = "starting"
            cancel = state.cancels[record.launch_id] = threading.Event()
        try:
            spec = LaunchSpec.from_dict(record.spec)
            spec = replace(spec, port=record.port, known_limit=record.max_model_len or spec.known_limit)
            self.start(spec, record, cancel)
        except Exception as exc:
            log.exception("restart of launch %s failed unexpectedly", record.launch_id)
            self.events.emit(
                record.launch_id,
                EventKind.FAILED,
                {"outcome": "failed", "reason": f"The restart failed: {exc}"},
            )
            state.forget(record.launch_id)

    def wait_for_free_memory(self, indices: list[int], cancel: threading.Event) -> None:
        """Before a second attempt: wait until the cards' memory is free again, within a time limit.

        vLLM's start-up profiling takes what it sees free; a half-released card would teach a limit
        that is too small. Simulated cards are free at once.
        """
        if self.state.simulated is not None:
            return
        deadline = time.monotonic() + self.config.retry_wait_seconds
        while time.monotonic() < deadline and not cancel.is_set():
            inventory = self.state.inventory()
            cards = [inventory.by_index(index) for index in indices]
            # "Free" = at most 5 % of the card in use (the driver and display keep a little).
            if all(card and card.memory_free_mib >= card.memory_total_mib * 0.95 for card in cards):
                return
            time.sleep(1.0)
        log.warning(
            "GPU memory of %s not free after %ss; trying anyway", indices, self.config.retry_wait_seconds
        )

    def stop_launch(self, launch_id: int, spec_id: str | None = None) -> str:
        """Stop launch ``launch_id``'s server; ``spec_id`` (from the site's stop message) must be the
        spec it runs, else the stop is for another launch of that number and this host runs none of it.
        ``None``: the worker's own decision about a launch it holds.

        Returns "stopped", "cancelling" (a start under way ends "cancelled"), "already stopping", or
        "unknown" (nothing runs for it here: the control side is told so, and a spec that comes later
        is cancelled).
        """
        state = self.state
        with state.lock:
            record = state.records.get(launch_id)
            if spec_id is not None and state.received.get(launch_id) != spec_id:
                record = None
            if record is None:
                state.cancelled_early[launch_id] = spec_id
            elif record.status == "starting":
                state.cancels[launch_id].set()
                return "cancelling"
            elif record.status == "stopping":
                return "already stopping"
            else:
                record.status = "stopping"
                state.save()
                process = state.processes.get(launch_id)
        if record is None:
            # Not sequenced: this worker has no event stream for a launch it does not know.
            host = self.config.host
            self.events.send(
                LAUNCH_UNKNOWN_TASK, [launch_id, host, f"{host} runs no server for this launch.", spec_id]
            )
            return "unknown"
        if process is not None:
            process.stop(grace=10.0)
        elif record.pgid:
            kill_group(record.pgid, grace=10.0)
        self.events.emit(launch_id, EventKind.STOPPED, {"reason": "Stopped on request."})
        state.forget(launch_id)
        return "stopped"


def _numbered(record: ServerRecord, data: dict[str, Any]) -> dict[str, Any]:
    """A restart's attempts are numbered after the earlier ones of the same launch."""
    if isinstance(data.get("attempt"), int):
        number = data["attempt"] + record.attempts_before
        record.attempts_seen = max(record.attempts_seen, number)
        return {**data, "attempt": number}
    return data
