"""How one GPU worker is set up: its host name, vLLM command, state folder, port range and timings,
read from the environment (``AIFRED_*``)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number.") from None


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


def default_state_dir(host: str) -> Path:
    """``AIFRED_STATE_DIR``, else ``gpu-worker-<host>`` under ``AIFRED_VAR_DIR`` (default ``var``)."""
    if os.environ.get("AIFRED_STATE_DIR"):
        return Path(os.environ["AIFRED_STATE_DIR"])
    return Path(os.environ.get("AIFRED_VAR_DIR") or "var") / f"gpu-worker-{host}"
