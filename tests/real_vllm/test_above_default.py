"""Real vLLM 0.32.0: a model that accepts more than vLLM starts at, and a port someone else holds."""

from __future__ import annotations

import http.server
import subprocess
import threading
from pathlib import Path

import pytest

from launches.vllm.logs import Outcome, classify
from tests.real_vllm import support
from tests.real_vllm.recording import ARTIFACTS, recorded_launches

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(900)]

LONGROPE_CONTEXT = 40960
LONGROPE_DEFAULT = 4096


@pytest.fixture(scope="module")
def longrope_model(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("real-vllm-longrope") / "model"
    done = subprocess.run(
        [vllm_python, str(support.BUILD_MODEL), str(out_dir), "--longrope"],
        env=support.vllm_env(1),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out_dir


def test_a_longrope_model_is_served_at_the_largest_length_that_fits_not_at_vllms_default(
    request: pytest.FixtureRequest, vllm_python: str, longrope_model: Path
) -> None:
    with recorded_launches(request.node.name, vllm_python, longrope_model) as record:
        run = record.run(1, vllm_version="0.32.0", detect_only=True)

    assert run.result is not None, run.describe()
    assert run.result["outcome"] == "ready", run.describe()
    first, *rest = run.result["attempts"]
    # Auto-fit would start at vLLM's default (4,096) and stay there: the launcher asks for more.
    assert first["argv"][first["argv"].index("--max-model-len") + 1] == str(LONGROPE_CONTEXT)
    served = run.result["max_model_len"]
    assert LONGROPE_DEFAULT < served <= LONGROPE_CONTEXT
    if rest:
        assert first["outcome"] == "context_too_long"
        assert run.result["learned_from"] == "refusal"


class _Other(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_port_another_server_holds_ends_port_in_use_and_never_ready(
    request: pytest.FixtureRequest, vllm_python: str, model_dir: Path
) -> None:
    port = support.free_port()
    other = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        run = support.run_launcher(vllm_python, model_dir, port, 1, vllm_version="0.32.0", detect_only=True)
        # Real vLLM started on that port on its own says why it cannot serve there.
        log_path = ARTIFACTS / request.node.name / "bare-vllm.txt"
        bare = support.start_bare(vllm_python, model_dir, port, 2048, 1, log_path)
        try:
            code = support.wait_for_exit(bare, timeout=300)
        finally:
            bare.stop()
    finally:
        other.shutdown()
        other.server_close()

    assert run.result is not None, run.describe()
    assert run.result["outcome"] != "ready", run.describe()
    assert [attempt["outcome"] for attempt in run.result["attempts"]] == ["port_in_use"]
    assert code != 0
    lines = log_path.read_text(errors="replace").splitlines()
    verdict = classify(lines, exit_code=code)
    assert verdict.outcome == Outcome.PORT_IN_USE, "\n".join(lines[-30:])
