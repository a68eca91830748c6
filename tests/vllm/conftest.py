"""Shared helpers for the launcher tests: the demo model, free ports and process checks."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

import launches.vllm

PACKAGE_DIR = Path(launches.vllm.__file__).resolve().parent
DEMO_MODEL = PACKAGE_DIR / "demo_models" / "qwen3-8b-like"
CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "vllm-logs"
STANDIN_SERVE = [sys.executable, "-m", "launches.vllm.standin", "serve"]
STANDIN_API_SERVER = [sys.executable, "-m", "launches.vllm.standin"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@pytest.fixture
def demo_model() -> str:
    return str(DEMO_MODEL)


@pytest.fixture
def port() -> int:
    return free_port()
