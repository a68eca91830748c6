"""Shared helpers for the launcher tests: the demo model, free ports and process checks."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import launches.vllm
from launches.contract import parse_payload
from launches.vllm.process import group_alive
from tests.ports import free_port

PACKAGE_DIR = Path(launches.vllm.__file__).resolve().parent
DEMO_MODEL = PACKAGE_DIR / "demo_models" / "qwen3-8b-like"
CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "vllm-logs"
STANDIN_SERVE = [sys.executable, "-m", "launches.vllm.standin", "serve"]
STANDIN_API_SERVER = [sys.executable, "-m", "launches.vllm.standin"]


def recorder(events: list[tuple[str, dict]]) -> Callable[[str, dict], None]:
    """An ``on_event`` that keeps each event after its trip through JSON and the wire contract, as the
    GPU worker's ``emit`` checks it: an event the policy sends wrong fails the test that sent it."""

    def record(kind: str, data: dict) -> None:
        parse_payload(kind, json.loads(json.dumps(data)))
        events.append((kind, data))

    return record


def group_gone(pgid: int) -> bool:
    return not group_alive(pgid)


@pytest.fixture
def demo_model() -> str:
    return str(DEMO_MODEL)


@pytest.fixture
def port() -> int:
    return free_port()
