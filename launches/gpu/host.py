"""What the parts of one GPU worker share: the host's setup and cards, and the launches it holds.

The launcher, the watcher, the adopter and the event stream all work on one ``HostState`` and take
its one lock for every change; nothing sends over the network while holding it. Its durable part
(the server records, the outbox, the received spec ids) is written to the state file on each change.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from gpus.nvml import Inventory, SimulatedGpus, read_inventory_or_empty
from launches.gpu.config import WorkerConfig
from launches.gpu.state import ServerRecord, StateFile
from launches.vllm.process import LogFollower, VllmProcess

log = logging.getLogger("aifred.gpu")

# Put in the environment of every server this worker starts: a restarted worker finds the processes
# of a start that was under way (whose process group it never learned) by this mark. The mark names
# the host and the installation (a random id in the state folder), so two installations with a host
# of the same name on one machine never touch each other's servers: "<host>@<installation>:<launch>".
LAUNCH_MARK = "AIFRED_LAUNCH_MARK"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class HostState:
    """The host's setup and cards, and every launch this worker holds, under ``lock``.

    Durable (saved by ``save``): ``records`` (launch id → its server), ``outbox`` (events not yet
    confirmed, oldest first, as [launch_id, seq, kind, data, emitted_at, spec_id]) and ``received``
    (launch id → spec id of every spec received). In memory only: ``processes`` (servers this worker
    started), ``followers`` (output of adopted servers), ``cancels`` (one per start under way),
    ``cancelled_early`` (launch id → spec id of stops that came before their spec) and
    ``health_failures`` (failed /health probes in a row).
    """

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.simulated = SimulatedGpus(config.host, config.simulated_gpus) if config.simulated_gpus else None
        self.file = StateFile(config.state_dir)
        self.installation = self.file.installation_id()
        self.lock = threading.RLock()
        self.records: dict[int, ServerRecord] = {}
        self.outbox: list[list[Any]] = []
        self.received: dict[int, str] = {}
        self.processes: dict[int, VllmProcess] = {}
        self.followers: dict[int, LogFollower] = {}
        self.cancels: dict[int, threading.Event] = {}
        self.cancelled_early: dict[int, str | None] = {}
        self.health_failures: dict[int, int] = {}
        # Set when the worker shuts down: every loop and every waiting restart ends.
        self.stopping = threading.Event()
        self.vllm_version = ""
        self.vllm_error = ""
        self._nvml_warned = False

    def save(self) -> None:
        """Write the durable part to the state file (atomically; see ``StateFile.save``)."""
        with self.lock:
            self.file.save(self.records, self.outbox, self.received)

    def forget(self, launch_id: int) -> None:
        """Drop everything held for a launch that has ended (its events stay in the outbox)."""
        with self.lock:
            self.records.pop(launch_id, None)
            self.processes.pop(launch_id, None)
            follower = self.followers.pop(launch_id, None)
            self.cancels.pop(launch_id, None)
            self.health_failures.pop(launch_id, None)
            self.save()
        if follower is not None:
            follower.stop()

    def mark(self, launch_id: int) -> str:
        """The value of ``LAUNCH_MARK`` in the environment of launch ``launch_id``'s server."""
        return f"{self.config.host}@{self.installation}:{launch_id}"

    def inventory(self) -> Inventory:
        """The host's cards now; simulated cards show the memory of the servers on them as used."""
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
