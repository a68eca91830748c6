"""The worker's state file: the servers it runs, so that a restarted worker can find them again.

Beside the servers it keeps the outbox (every event not yet confirmed by the control side, so that
none is lost while the broker is away) and the launches whose spec this worker has received (so that
a redelivered spec is refused instead of starting a second server).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ServerRecord:
    launch_id: int
    kind: str
    status: str  # "starting", "ready", "restarting" or "stopping"
    gpu_indices: list[int]
    port: int
    # The next event number of this launch; written before an event is sent (see EventStream.emit).
    next_seq: int = 1
    pid: int | None = None
    pgid: int | None = None
    url: str = ""
    max_model_len: int | None = None
    log_dir: str = ""
    # The cleaned log of the attempt that became ready; its stream files sit beside it (see
    # launches.vllm.process), so a restarted worker can follow the server it adopts.
    log_path: str = ""
    used_mib: dict[str, int] = field(default_factory=dict)
    # The worker picked ``port`` from its range (the config has none): it may replace a busy one.
    port_picked: bool = False
    # Auto-restart: the spec to start again from (``LaunchSpec.to_dict``), when (epoch seconds) the
    # server was restarted, and how many attempts earlier starts made (a restart's attempts are
    # numbered after them).
    spec: dict[str, Any] = field(default_factory=dict)
    restarted_at: list[float] = field(default_factory=list)
    attempts_before: int = 0
    attempts_seen: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerRecord:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        if "port_picked" not in data:
            # Written by a worker that kept this mark in the spec it stored.
            known["port_picked"] = bool((data.get("spec") or {}).get("port_picked"))
        return cls(**known)

    def summary(self) -> dict[str, Any]:
        """What the heartbeat says about this server."""
        return {
            "launch_id": self.launch_id,
            "kind": self.kind,
            "status": self.status,
            "gpu_indices": self.gpu_indices,
            "port": self.port,
            "pid": self.pid,
            "pgid": self.pgid,
            "url": self.url,
            "max_model_len": self.max_model_len,
        }


# How many received launch ids the state file remembers: far more than a host runs between restarts.
RECEIVED_KEPT = 2000


@dataclass
class WorkerState:
    """What the state file holds: servers, unconfirmed events, and received launch ids → spec ids."""

    servers: dict[int, ServerRecord] = field(default_factory=dict)
    # Events as sent: [launch_id, seq, kind, data, emitted_at], oldest first.
    outbox: list[list[Any]] = field(default_factory=list)
    received: dict[int, str] = field(default_factory=dict)


class StateFile:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "servers.json"

    def installation_id(self) -> str:
        """A random id made once per state folder: it tells this installation's servers from others'."""
        path = self.directory / "installation-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            value = secrets.token_hex(6)
            path.write_text(value + "\n")
            return value

    def load(self) -> dict[int, ServerRecord]:
        return self.load_state().servers

    def load_state(self) -> WorkerState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return WorkerState()
        except (OSError, ValueError) as exc:
            # A damaged file must not keep the worker from starting; the site will mark launches lost.
            broken = self.path.with_suffix(".broken")
            self.path.replace(broken)
            raise StateFileError(f"{self.path} could not be read ({exc}); moved to {broken.name}.") from exc
        return WorkerState(
            servers={
                int(item["launch_id"]): ServerRecord.from_dict(item) for item in data.get("servers", [])
            },
            outbox=[list(event) for event in data.get("outbox", [])],
            received={int(launch_id): str(spec_id) for launch_id, spec_id in data.get("received", [])},
        )

    def save(
        self,
        records: dict[int, ServerRecord],
        outbox: list[list[Any]] | None = None,
        received: dict[int, str] | None = None,
    ) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        kept = list((received or {}).items())[-RECEIVED_KEPT:]
        payload = json.dumps(
            {
                "servers": [record.to_dict() for record in records.values()],
                "outbox": outbox or [],
                "received": kept,
            },
            indent=1,
        )
        # Write then rename, so a worker killed mid-write leaves the previous file intact.
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".servers-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)


class StateFileError(Exception):
    """The state file exists but cannot be read."""
