"""`python -m launches.vllm run` does one launch on this machine, as an operator would run it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from launches.vllm.process import kill_group, probe_health
from tests.vllm.conftest import DEMO_MODEL, STANDIN_SERVE, free_port, group_gone

ROOT = Path(__file__).resolve().parents[2]
SMALL_CARD = {
    "AIFRED_STANDIN_GPU_TOTAL_MIB": "12288",
    "AIFRED_STANDIN_WEIGHTS_MIB": "5837",
    "AIFRED_STANDIN_LOAD_SECONDS": "0.2",
    "AIFRED_STANDIN_VLLM_VERSION": "0.10.2",
}


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "launches.vllm", "run", "--model", str(DEMO_MODEL)]
    argv += ["--vllm-command", shlex.join(STANDIN_SERVE), "--log-dir", str(tmp_path), *args]
    return subprocess.run(
        argv, cwd=ROOT, env={**os.environ, **SMALL_CARD}, capture_output=True, text=True, timeout=120
    )


def test_the_command_prints_every_attempt_and_the_learned_limit_as_one_json_document(tmp_path):
    port = free_port()
    done = _run(
        "--port",
        str(port),
        "--json",
        "--detect-only",
        "--enforce-eager",
        "--dtype",
        "bfloat16",
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "ready"
    assert [a["requested_len"] for a in result["attempts"]] == [40960, result["learned_limit"]]
    assert result["max_model_len"] == result["learned_limit"] < 40960
    argv = result["attempts"][0]["argv"]
    assert "--enforce-eager" in argv and argv[argv.index("--dtype") + 1] == "bfloat16"
    assert group_gone(result["pgid"]), "--detect-only stops the server once it is ready"


def test_without_detect_only_the_server_is_left_running_for_the_operator(tmp_path):
    port = free_port()
    done = _run("--port", str(port), "--known-limit", "20000", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "attempt 1: ready" in done.stdout
    pgid = int(done.stdout.split("process group ")[1].split()[0])
    try:
        time.sleep(0.5)
        assert probe_health(f"http://127.0.0.1:{port}", timeout=2)
    finally:
        kill_group(pgid, grace=5)
    assert group_gone(pgid)


def test_a_launch_that_fails_exits_non_zero_and_says_why(tmp_path):
    done = _run("--port", str(free_port()), "--gpu-memory-utilization", "0.3", tmp_path=tmp_path)
    assert done.returncode == 1
    assert "\nattempt 1: weights_do_not_fit" in done.stdout
    assert "failed: The model's weights do not fit in GPU memory" in done.stdout


CONFIG_DIR = ROOT / "tests" / "data" / "model-configs"
# file -> (native_context, default_context) that vLLM 0.32.0 derives (see that folder's README).
SHARED_CONFIGS = {
    "gemma-3-12b-it.json": (131072, 131072),
    "llava-1.5-7b-hf.json": (4096, 4096),
    "Phi-3.5-mini-instruct.json": (131072, 4096),
}


def _facts(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "launches.vllm", "facts", str(folder), *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_facts_command_prints_vllm_0_32_numbers_for_each_shared_config(tmp_path):
    for name, (native, default) in SHARED_CONFIGS.items():
        folder = tmp_path / name.removesuffix(".json")
        folder.mkdir()
        (folder / "config.json").write_text((CONFIG_DIR / name).read_text())
        data = json.loads(_facts(folder, "--json").stdout)
        assert (data["native_context"], data["default_context"]) == (native, default), name
        assert {
            "num_layers",
            "num_kv_heads",
            "head_dim",
            "dtype",
            "attention_kind",
            "kv_bytes_per_token",
        } <= set(data)
        text = _facts(folder).stdout
        assert f"native_context (longest vLLM accepts): {native:,}" in text


def test_the_facts_command_applies_an_older_versions_rules(tmp_path):
    config = json.loads((DEMO_MODEL / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 40960}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert (
        json.loads(_facts(tmp_path, "--json", "--vllm-version", "0.11.0").stdout)["native_context"] == 81920
    )
    assert json.loads(_facts(tmp_path, "--json").stdout)["native_context"] == 40960


def test_the_run_command_refuses_each_bypass_spelling_before_starting_anything(tmp_path):
    marker = tmp_path / "started"
    fake = tmp_path / "fake-vllm"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    for spelling in (
        ["--gpu-memory", "0.6"],
        ["--max-model", "1024"],
        ["--por", "1"],
        ["--max_model_len=1024"],
        ["--hf-overrides.max_position_embeddings", "262144"],
    ):
        argv = [sys.executable, "-m", "launches.vllm", "run", "--model", str(DEMO_MODEL)]
        argv += ["--vllm-command", f"{fake} serve", "--", *spelling]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, spelling
        assert "managed by the launcher" in done.stderr
        assert not marker.exists(), spelling
