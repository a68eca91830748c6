"""The policy on the kinds real models and real logs showed: LongRoPE, a busy port, a hybrid model."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
from pathlib import Path

from launches.vllm.argv import ServeOptions
from launches.vllm.policy import LaunchRequest, run_launch
from tests.vllm.conftest import DEMO_MODEL, STANDIN_SERVE, free_port, recorder

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "model-configs"
FAST = {"AIFRED_STANDIN_LOAD_SECONDS": "0.2", "AIFRED_STANDIN_TEARDOWN_SECONDS": "1"}


def _launch(model: str, port: int, env: dict[str, str], **kwargs):
    request = LaunchRequest(
        options=ServeOptions(model=model, port=port),
        base_command=STANDIN_SERVE,
        extra_env={**FAST, **env},
        ready_timeout=30,
        detect_only=True,
        **kwargs,
    )
    events: list[tuple[str, dict]] = []
    return run_launch(request, on_event=recorder(events)), events


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_launch_onto_a_port_another_server_answers_ends_port_in_use_and_is_never_ready() -> None:
    port = free_port()
    other = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        result, events = _launch(str(DEMO_MODEL), port, {"AIFRED_STANDIN_VLLM_VERSION": "0.32.0"})
    finally:
        other.shutdown()
        other.server_close()
    assert result.outcome != "ready"
    assert [a.outcome for a in result.attempts] == ["port_in_use"]
    assert "ready" not in [kind for kind, _ in events]
    said = (
        f"Port {port} on 127.0.0.1 is held by another process (not a launch of this site); choose another "
        "port in the config, or leave it empty so the host picks one."
    )
    assert result.reason == said and result.attempts[0].message == said
    [finished] = [data for kind, data in events if kind == "attempt_finished"]
    assert finished["message"] == said and finished["started_at"] == finished["ended_at"]


def test_a_longrope_model_wanting_more_than_vllms_default_is_served_above_it(tmp_path: Path) -> None:
    shutil.copy(CONFIGS / "Phi-3.5-mini-instruct.json", tmp_path / "config.json")
    env = {
        "AIFRED_STANDIN_VLLM_VERSION": "0.32.0",
        "AIFRED_STANDIN_GPU_TOTAL_MIB": "24576",
        "AIFRED_STANDIN_WEIGHTS_MIB": "7300",
    }
    result, _ = _launch(str(tmp_path), free_port(), env)
    assert result.outcome == "ready", result.reason
    # Auto-fit would start (and stay) at 4,096: the launcher asks for 131,072 and vLLM's refusal
    # names the largest length that fits.
    assert result.attempts[0].requested_len == 131072
    assert result.max_model_len > 4096
    assert result.learned_from == "refusal"


def test_a_hybrid_model_refused_for_max_num_seqs_restarts_with_the_number_vllm_names() -> None:
    env = {
        "AIFRED_STANDIN_VLLM_VERSION": "0.28.0",
        "AIFRED_STANDIN_GPU_TOTAL_MIB": "81920",
        "AIFRED_STANDIN_WEIGHTS_MIB": "5837",
        "AIFRED_STANDIN_MAMBA_BLOCKS": "969",
    }
    result, events = _launch(str(DEMO_MODEL), free_port(), env, known_limit=32768)
    assert result.outcome == "ready", result.reason
    assert [a.outcome for a in result.attempts] == ["max_num_seqs_too_high", "ready"]
    assert result.attempts[1].argv[-2:] == ["--max-num-seqs", "969"]
    assert result.attempts[0].requested_len == result.attempts[1].requested_len == 32768
    assert result.max_num_seqs == 969
    learned = [data for kind, data in events if kind == "limit_learned"]
    assert learned[-1]["max_num_seqs"] == 969
    assert learned[-1]["learned_from"] == "fits"


def test_a_learned_max_num_seqs_is_used_from_the_first_start() -> None:
    env = {
        "AIFRED_STANDIN_VLLM_VERSION": "0.28.0",
        "AIFRED_STANDIN_GPU_TOTAL_MIB": "81920",
        "AIFRED_STANDIN_WEIGHTS_MIB": "5837",
        "AIFRED_STANDIN_MAMBA_BLOCKS": "969",
    }
    result, _ = _launch(str(DEMO_MODEL), free_port(), env, known_limit=32768, max_num_seqs=969)
    assert [a.outcome for a in result.attempts] == ["ready"]


def test_a_host_picked_port_gives_up_after_a_bounded_number_of_busy_ports_without_naming_the_config() -> None:
    from launches.vllm.policy import PORT_TRIES

    servers = []
    for _ in range(PORT_TRIES + 1):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    busy = [server.server_address[1] for server in servers]
    asked: list[int] = []

    def next_port(port: int) -> int:
        asked.append(port)
        return busy[busy.index(port) + 1]

    try:
        result, events = _launch(
            str(DEMO_MODEL), busy[0], {"AIFRED_STANDIN_VLLM_VERSION": "0.32.0"}, next_port=next_port
        )
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert [a.outcome for a in result.attempts] == ["port_in_use"]
    assert asked == busy[:PORT_TRIES]
    assert "AIFRED_PORT_RANGE" in result.reason and "config" not in result.reason
    assert result.reason.endswith("(AIFRED_PORT_RANGE).")
    assert "ready" not in [kind for kind, _ in events]


def _held_without_answering(port: int) -> socket.socket:
    """A socket of this process bound to ``port`` that does not listen: another server that has taken
    the port but does not answer yet. The check before a start (a connection) cannot see it; vLLM's
    own bind fails on it."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", port))
    return holder


def test_a_host_picked_port_taken_at_vllms_bind_starts_again_on_the_next_free_port() -> None:
    picked, following = free_port(), free_port()
    asked: list[int] = []

    def next_port(port: int) -> int:
        asked.append(port)
        return following

    holder = _held_without_answering(picked)
    try:
        result, events = _launch(
            str(DEMO_MODEL), picked, {"AIFRED_STANDIN_VLLM_VERSION": "0.32.0"}, next_port=next_port
        )
    finally:
        holder.close()
    assert result.outcome == "ready", result.reason
    assert [a.outcome for a in result.attempts] == ["port_in_use", "ready"]
    assert asked == [picked]
    assert result.url == f"http://127.0.0.1:{following}"
    first, second = result.attempts
    assert first.requested_len == second.requested_len
    assert f"Port {picked} was taken" in first.message and "next free port is tried" in first.message
    assert "config" not in first.message
    assert second.argv[second.argv.index("--port") + 1] == str(following)
    finished = [data for kind, data in events if kind == "attempt_finished"]
    assert finished[0]["outcome"] == "port_in_use" and finished[0]["message"] == first.message


def test_a_port_from_the_config_taken_at_vllms_bind_fails_at_once() -> None:
    port = free_port()
    holder = _held_without_answering(port)
    try:
        result, events = _launch(str(DEMO_MODEL), port, {"AIFRED_STANDIN_VLLM_VERSION": "0.32.0"})
    finally:
        holder.close()
    assert result.outcome == "failed"
    assert [a.outcome for a in result.attempts] == ["port_in_use"]
    assert "choose another port" in result.reason
    assert "ready" not in [kind for kind, _ in events]
