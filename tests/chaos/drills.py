"""What every drill checks at its end: the promise the README makes for each fault."""

from __future__ import annotations

import json

from launches.models import GpuLease, Launch
from tests.workers.conftest import wait_for


def assert_settled(fleet, host: str, launch: Launch, status: str) -> None:
    """``launch`` ended as ``status``; attempts closed, card free, no server left, no event lost."""
    launch.refresh_from_db()
    assert launch.status == status, f"launch ended {launch.status}: {launch.reason}"
    assert not launch.attempts.filter(ended_at__isnull=True).exists(), "an attempt row is still open"
    assert not GpuLease.objects.filter(launch=launch).exists(), "the card is still leased"
    wait_for(lambda: not fleet.servers_of(host), 20, "no stand-in left running")
    # Every event the worker wrote reached the site: its outbox empties once the site confirms them.
    state = fleet.state_dir(host) / "servers.json"
    wait_for(lambda: not json.loads(state.read_text()).get("outbox"), 20, "the worker's outbox to empty")
    launch.refresh_from_db()
    seqs = list(launch.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)), f"events missing or out of order: {seqs}"
    assert launch.last_seq == len(seqs)
