"""The GPU worker's tasks: thin adapters from broker messages to the host runtime."""

from __future__ import annotations

from typing import Any

from launches.contract import RECONCILE_TASK, RUN_LAUNCH_TASK, STOP_LAUNCH_TASK
from launches.gpu.app import app
from launches.gpu.runtime import current_runtime


@app.task(name=RUN_LAUNCH_TASK)
def run_launch(spec: dict[str, Any]) -> str:
    """Start the server of one launch; return once it is ready or has failed for good."""
    return current_runtime().run_launch(spec)


@app.task(name=STOP_LAUNCH_TASK)
def stop_launch(launch_id: int, spec_id: str = "") -> str:
    """Stop a running server, or cancel a start in progress, of the launch whose spec is ``spec_id``."""
    return current_runtime().stop_launch(int(launch_id), str(spec_id))


@app.task(name=RECONCILE_TASK)
def reconcile(directive: dict[str, Any]) -> None:
    """What the control side concluded from a heartbeat: events confirmed, to resend, servers to stop."""
    current_runtime().reconcile(directive)
