"""A vLLM process group is watched through both streams and stopped whole, children included."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from launches.vllm.process import (
    LogFollower,
    VllmProcess,
    group_alive,
    kill_group,
    output_paths,
    probe_health,
    read_served_max_model_len,
)
from tests.vllm.conftest import DEMO_MODEL, STANDIN_SERVE, free_port, group_gone

# A parent that forks a child which ignores nothing and sleeps: stopping only the parent would leave it.
FORKING = (
    "import os, sys, time\n"
    "print('\\x1b[1;36mparent\\x1b[0m up\\r', flush=True)\n"
    "print('to stderr', file=sys.stderr, flush=True)\n"
    "if os.fork() == 0:\n"
    "    time.sleep(60)\n"
    "    os._exit(0)\n"
    "time.sleep(60)\n"
)


def test_stop_ends_the_whole_group_including_forked_children(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    log = tmp_path / "attempt.log"
    proc = VllmProcess.start(
        [sys.executable, "-c", FORKING],
        dict(os.environ),
        on_line=lambda s, line: seen.append((s, line)),
        log_path=str(log),
    )
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.pgid == proc.pid
    assert ("stdout", "parent up") in seen and ("stderr", "to stderr") in seen
    proc.stop(grace=2)
    assert proc.returncode is not None
    assert group_gone(proc.pgid)
    assert "parent up" in log.read_text()
    assert proc.recent_lines(5)[-2:] in (["parent up", "to stderr"], ["to stderr", "parent up"])


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('x', flush=True)\ntime.sleep(60)"
    )
    proc = VllmProcess.start([sys.executable, "-c", code], dict(os.environ))
    time.sleep(0.5)
    started = time.monotonic()
    proc.stop(grace=0.5)
    assert time.monotonic() - started < 5
    assert group_gone(proc.pgid)


def test_an_adopted_group_can_be_checked_and_killed_by_its_id() -> None:
    proc = VllmProcess.start([sys.executable, "-c", FORKING], dict(os.environ))
    time.sleep(0.5)
    assert group_alive(proc.pgid)
    assert kill_group(proc.pgid, grace=2)
    proc.wait(5)
    assert group_gone(proc.pgid)


def test_a_failed_standin_start_leaves_no_process_behind() -> None:
    env = {
        **os.environ,
        "AIFRED_STANDIN_VLLM_VERSION": "0.32.0",
        "AIFRED_STANDIN_GPU_TOTAL_MIB": "12288",
        "AIFRED_STANDIN_WEIGHTS_MIB": "20000",
        "AIFRED_STANDIN_LOAD_SECONDS": "0.2",
        "AIFRED_STANDIN_TEARDOWN_SECONDS": "0.2",
    }
    proc = VllmProcess.start([*STANDIN_SERVE, str(DEMO_MODEL), "--port", str(free_port())], env)
    assert proc.wait(20) == 1
    assert group_gone(proc.pgid)
    assert any("OutOfMemoryError" in line for line in proc.recent_lines(100))


def test_a_ready_standin_answers_health_and_models_until_stopped() -> None:
    port = free_port()
    env = {**os.environ, "AIFRED_STANDIN_VLLM_VERSION": "0.32.0", "AIFRED_STANDIN_LOAD_SECONDS": "0.2"}
    proc = VllmProcess.start(
        [
            *STANDIN_SERVE,
            str(DEMO_MODEL),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-model-len",
            "8192",
        ],
        env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not probe_health(url, 0.5) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert probe_health(url)
        assert read_served_max_model_len(url) == 8192
    finally:
        proc.stop(5)
    assert group_gone(proc.pgid)
    assert not probe_health(url, 0.5)
    assert read_served_max_model_len(url) is None


# Started through VllmProcess by a helper process that then dies: the server must not notice.
TICKING = "import time\nfor i in range(300):\n    print('tick', i, flush=True)\n    time.sleep(0.1)\n"
STARTER = (
    "import os, sys\n"
    "from launches.vllm.process import VllmProcess\n"
    "argv = [sys.executable, '-c', sys.argv[2]]\n"
    "proc = VllmProcess.start(argv, dict(os.environ), log_path=sys.argv[1])\n"
    "print(proc.pgid, flush=True)\n"
    "import time\n"
    "time.sleep(60)\n"
)


def test_a_server_outlives_the_process_that_started_it_and_keeps_logging(tmp_path: Path) -> None:
    log = tmp_path / "launch-1-attempt-1.log"
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(log), TICKING],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert starter.stdout is not None
    pgid = int(starter.stdout.readline())
    try:
        stdout_file = Path(output_paths(str(log))["stdout"])
        deadline = time.monotonic() + 10
        while "tick 3" not in stdout_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        starter.kill()
        starter.wait(5)
        size = stdout_file.stat().st_size
        time.sleep(0.5)
        assert group_alive(pgid)
        assert stdout_file.stat().st_size > size

        # A new worker follows it from here on, with what the first one saw as its recent lines.
        seen: list[tuple[str, str]] = []
        follower = LogFollower.adopt(pgid, str(log), on_line=lambda s, line: seen.append((s, line)))
        assert "tick 0" in follower.recent_lines(1000)
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen[0][0] == "stdout" and seen[-1][1].startswith("tick ")
    finally:
        assert kill_group(pgid, grace=2)
    assert follower.join(2)
    assert group_gone(pgid)
    assert follower.recent_lines(1)[0] in log.read_text()


def test_a_ready_standin_logs_its_throughput_now_and_then(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIFRED_STANDIN_LOAD_SECONDS": "0.2",
        "AIFRED_STANDIN_STATS_SECONDS": "0.1",
    }
    log = tmp_path / "attempt.log"
    proc = VllmProcess.start(
        [
            *STANDIN_SERVE,
            str(DEMO_MODEL),
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--max-model-len",
            "8192",
        ],
        env,
        log_path=str(log),
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = [line for line in proc.recent_lines(200) if "Avg prompt throughput" in line]
            if len(stats) >= 3:
                break
            time.sleep(0.1)
        assert len(stats) >= 3 and "Engine 000:" in stats[0]
    finally:
        proc.stop(5)
    assert "Application startup complete" in Path(output_paths(str(log))["stderr"]).read_text()


def test_the_command_line_leaves_a_server_that_logs_to_files_after_it_exits() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "launches.vllm",
            "run",
            "--model",
            str(DEMO_MODEL),
            "--vllm-command",
            shlex.join(STANDIN_SERVE),
            "--vllm-version",
            "0.32.0",
            "--known-limit",
            "8192",
            "--port",
            str(free_port()),
            "--json",
        ],
        env={**os.environ, "AIFRED_STANDIN_LOAD_SECONDS": "0.2", "AIFRED_STANDIN_STATS_SECONDS": "0.1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    log_path = result["attempts"][-1]["log_path"]
    try:
        stdout_file = Path(output_paths(log_path)["stdout"])
        size = stdout_file.stat().st_size
        time.sleep(0.5)
        assert group_alive(result["pgid"])
        assert stdout_file.stat().st_size > size
    finally:
        kill_group(result["pgid"], grace=2)
        if Path(log_path).parent.name.startswith("aifred-vllm-"):  # the folder the command made
            shutil.rmtree(Path(log_path).parent, ignore_errors=True)
    assert group_gone(result["pgid"])


# Each pair: a line on stdout, then one on stderr, as vLLM's auto-fit line (stdout) precedes uvicorn's
# ready line (stderr). The two streams are read by separate threads.
INTERLEAVED = (
    "import sys, time\n"
    "for i in range(30):\n"
    "    print(f'out {i}', flush=True)\n"
    "    print(f'err {i}', file=sys.stderr, flush=True)\n"
    "    time.sleep(0.03)\n"
    "time.sleep(30)\n"
)


@pytest.mark.parametrize("to_files", [True, False], ids=["files", "pipes"])
def test_catching_up_hands_on_every_line_written_before_the_one_just_seen(tmp_path: Path, to_files) -> None:
    seen: set[str] = set()
    arrived = threading.Event()

    def on_line(stream: str, line: str) -> None:
        seen.add(line)
        arrived.set()

    proc = VllmProcess.start(
        [sys.executable, "-c", INTERLEAVED],
        dict(os.environ),
        on_line=on_line,
        log_path=str(tmp_path / "attempt.log") if to_files else None,
    )
    try:
        for i in range(0, 30, 3):
            deadline = time.monotonic() + 10
            while f"err {i}" not in seen and time.monotonic() < deadline:
                arrived.wait(0.01)
                arrived.clear()
            assert f"err {i}" in seen
            assert proc.catch_up(timeout=2)
            assert f"out {i}" in seen, f"stdout's line {i} was written before stderr's, yet not handed on"
    finally:
        proc.stop(grace=1)


def test_the_listening_socket_is_told_apart_as_ours_or_someone_elses() -> None:
    from launches.vllm.process import port_in_use, port_owned_by_group

    port = free_port()
    assert not port_in_use("127.0.0.1", port)
    listener = (
        "import socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('up', flush=True); time.sleep(30)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", listener], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert child.stdout.readline().strip() == "up"
        assert port_in_use("0.0.0.0", port)  # noqa: S104 - a wildcard bind is asked on loopback
        assert port_owned_by_group(port, child.pid) is True
        assert port_owned_by_group(port, os.getpgid(0)) is False
    finally:
        child.kill()
        child.wait()
