"""The GPU side runs without Django and without the database; its state file survives a crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launches.gpu.state import ServerRecord, StateFile, StateFileError

ROOT = Path(__file__).resolve().parents[2]

GUARDED_IMPORTS = """
import os
os.environ.pop("DJANGO_SETTINGS_MODULE", None)
from launches.gpu import forbid_django
forbid_django()
import gpus.nvml, gpus.fingerprint, launches.gpu.app, launches.gpu.runtime, launches.gpu.tasks
import launches.gpu.main, launches.vllm.policy
assert "django" not in sys.modules
try:
    import django
except ImportError as exc:
    print("blocked:", exc)
"""


def test_the_gpu_worker_modules_import_with_django_blocked() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n" + GUARDED_IMPORTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "blocked: django was imported in the GPU worker" in done.stdout


def test_the_state_file_keeps_the_servers_and_their_next_event_number(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state")
    record = ServerRecord(launch_id=7, kind="launch", status="ready", gpu_indices=[0], port=8101, next_seq=12)
    record.pgid = 4242
    state.save({7: record})
    assert state.load() == {7: record}


def test_a_damaged_state_file_is_set_aside_with_a_clear_error(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    state.path.write_text("{not json")
    with pytest.raises(StateFileError, match="could not be read"):
        state.load()
    assert state.load() == {} and state.path.with_suffix(".broken").exists()


def test_a_launch_without_a_port_gets_the_first_free_one_of_the_hosts_range(tmp_path) -> None:
    import socket

    from launches.gpu.runtime import HostRuntime, WorkerConfig

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        config = WorkerConfig(
            host="h",
            vllm_command=["vllm", "serve"],
            state_dir=tmp_path,
            serve_host="127.0.0.1",
            port_range=(taken, taken + 20),
        )
        runtime = HostRuntime(config, send=lambda *args: None)
        picked = runtime._port_for({"port": None})
    assert picked is not None and taken < picked <= taken + 20
    assert runtime._port_for({"port": 9001}) == 9001
