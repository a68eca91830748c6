"""The GPU side runs without Django and without the database; its state file survives a crash."""

from __future__ import annotations

import os
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

    from launches.contract import LaunchSpec
    from launches.gpu.config import WorkerConfig
    from launches.gpu.runtime import HostRuntime

    def spec(port: int | None) -> LaunchSpec:
        return LaunchSpec(launch_id=1, spec_id="spec-1", model="org/model", port=port)

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
        picked = runtime.launcher.port_for(spec(None))
    assert picked is not None and taken < picked <= taken + 20
    assert runtime.launcher.port_for(spec(9001)) == 9001


def _standin_runtime(tmp_path, monkeypatch, port_range, vllm_version: str = "0.32.0"):
    from launches.gpu.config import WorkerConfig
    from launches.gpu.runtime import HostRuntime
    from tests.vllm.conftest import STANDIN_SERVE

    monkeypatch.setenv("AIFRED_STANDIN_LOAD_SECONDS", "0.2")
    monkeypatch.setenv("AIFRED_STANDIN_TEARDOWN_SECONDS", "1")
    monkeypatch.setenv("AIFRED_STANDIN_VLLM_VERSION", vllm_version)
    config = WorkerConfig(
        host="h",
        vllm_command=STANDIN_SERVE,
        state_dir=tmp_path,
        simulated_gpus="NVIDIA H100 80GB HBM3:81559",
        serve_host="127.0.0.1",
        ready_timeout_seconds=30,
        port_range=port_range,
    )
    return HostRuntime(config, send=lambda *args: None)


def _test_spec(port: int | None, **fields) -> dict:
    from launches.contract import LaunchSpec
    from tests.vllm.conftest import DEMO_MODEL

    return LaunchSpec(
        launch_id=1, spec_id="spec-1", model=str(DEMO_MODEL), port=port, detect_only=True, **fields
    ).to_dict()


def test_a_host_picked_port_another_process_takes_before_the_start_is_replaced_by_the_next_free_one(
    tmp_path, monkeypatch
) -> None:
    import socket

    from tests.vllm.conftest import free_port

    low = free_port()
    runtime = _standin_runtime(tmp_path, monkeypatch, (low, low + 20))
    holder = socket.socket()
    picked: list[int] = []
    pick = runtime.launcher.port_for

    def pick_then_lose_it(spec):
        # Another process listens on the port between the pick and vLLM's start.
        port = pick(spec)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        picked.append(port)
        return port

    monkeypatch.setattr(runtime.launcher, "port_for", pick_then_lose_it)
    with holder:
        outcome = runtime.run_launch(_test_spec(None))
    events = [(event[2], event[3]) for event in runtime.outbox]
    started = [data["argv"] for kind, data in events if kind == "attempt_started"]
    assert outcome == "tested", events
    assert next(data for kind, data in events if kind == "accepted")["port"] == picked[0]
    used = int(started[-1][started[-1].index("--port") + 1])
    assert used != picked[0] and low <= used <= low + 20
    assert "port_in_use" not in [data.get("outcome") for kind, data in events if kind == "attempt_finished"]


def test_a_fixed_port_from_the_config_that_is_busy_ends_port_in_use_without_telling_to_leave_it(
    tmp_path, monkeypatch
) -> None:
    import socket

    runtime = _standin_runtime(tmp_path, monkeypatch, (8100, 8199))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        fixed = holder.getsockname()[1]
        outcome = runtime.run_launch(_test_spec(fixed))
    events = [(event[2], event[3]) for event in runtime.outbox]
    finished = [data for kind, data in events if kind == "attempt_finished"]
    assert outcome == "failed"
    assert [data["outcome"] for data in finished] == ["port_in_use"]
    assert f"Port {fixed}" in finished[0]["message"] and "in the config" in finished[0]["message"]


def test_the_host_starts_from_the_models_lengths_the_spec_carries_without_reading_its_config(
    tmp_path, monkeypatch
) -> None:
    from tests.vllm.conftest import free_port

    # The demo model's config says 40960 tokens; the spec says what the site read for this vLLM.
    runtime = _standin_runtime(tmp_path, monkeypatch, (8100, 8199))
    spec = _test_spec(
        free_port(), native_context=8192, default_context=8192, rope_theta=250000.0, yarn_factor=2.0
    )
    assert runtime.run_launch(spec) == "tested"
    events = [(event[2], event[3]) for event in runtime.outbox]
    [argv] = [data["argv"] for kind, data in events if kind == "attempt_started"]
    assert argv[argv.index("--max-model-len") + 1] == "16384"
    assert '"original_max_position_embeddings": 8192' in " ".join(argv) and "250000" in " ".join(argv)
    assert "model_facts" not in [kind for kind, _ in events]


def test_a_state_file_of_the_previous_format_is_adopted_and_its_kept_up_server_restarted(tmp_path) -> None:
    """A worker upgraded while a kept-up server runs on a port it picked finds that server again."""
    import json
    import signal

    from launches.contract import LaunchSpec
    from launches.gpu.config import WorkerConfig
    from launches.gpu.runtime import HostRuntime

    server = subprocess.Popen(["sleep", "60"], start_new_session=True)
    spec = LaunchSpec(
        launch_id=5, spec_id="spec-5", model="org/model", port=8123, keep_up=True, restart_limit=2
    ).to_dict()
    # As the previous worker wrote it: the picked-port mark inside the kept spec, not on the record.
    record = {
        "launch_id": 5,
        "kind": "launch",
        "status": "ready",
        "gpu_indices": [0],
        "port": 8123,
        "next_seq": 7,
        "pid": server.pid,
        "pgid": server.pid,
        "url": "http://127.0.0.1:8123",
        "max_model_len": 40960,
        "log_dir": str(tmp_path / "logs"),
        "log_path": "",
        "used_mib": {},
        "spec": {**spec, "port_picked": True},
        "restarted_at": [],
        "attempts_before": 0,
        "attempts_seen": 1,
    }
    ready = [5, 6, "ready", {"url": "http://127.0.0.1:8123"}, "2026-01-01T00:00:00+00:00", "spec-5"]
    state = {"servers": [record], "outbox": [ready], "received": [[5, "spec-5"]]}
    (tmp_path / "servers.json").write_text(json.dumps(state))
    config = WorkerConfig(
        host="h", vllm_command=["vllm", "serve"], state_dir=tmp_path, restart_backoff_seconds=3600
    )
    runtime = HostRuntime(config, send=lambda *args: None)
    try:
        runtime.adopt()
        assert [(event[1], event[2]) for event in runtime.outbox] == [
            (6, "ready"),
            (7, "worker_restarted"),
            (8, "adopted"),
        ]
        adopted = runtime.state.records[5]
        assert adopted.status == "ready" and adopted.port_picked and adopted.pgid == server.pid

        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        runtime.watch_once()
        kind, data = runtime.outbox[-1][2:4]
        assert (kind, data["restarts"], data["restart_limit"]) == ("restarting", 1, 2)
        assert runtime.state.records[5].status == "restarting"
    finally:
        runtime.shutdown()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def test_events_and_stop_answers_are_sent_while_other_threads_can_take_the_workers_lock(tmp_path) -> None:
    """A broker that hangs on a send must not block launches, stops or the watcher."""
    import threading

    from launches.gpu.config import WorkerConfig
    from launches.gpu.runtime import HostRuntime

    lock_free: list[tuple[str, bool]] = []

    def send(task: str, args: list) -> None:
        def probe() -> None:
            taken = runtime.state.lock.acquire(timeout=2)
            if taken:
                runtime.state.lock.release()
            lock_free.append((task, taken))

        other = threading.Thread(target=probe)
        other.start()
        other.join()

    runtime = HostRuntime(WorkerConfig(host="h", vllm_command=["vllm"], state_dir=tmp_path), send=send)
    assert runtime.stop_launch(4, "spec-b") == "unknown"
    runtime.emit(4, "failed", {"reason": "Bad launch spec."})
    assert runtime.send_outbox() == 1
    assert lock_free == [("launches.control.launch_unknown", True), ("launches.control.apply_event", True)]
