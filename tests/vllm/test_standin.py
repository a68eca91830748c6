"""The stand-in prints what real vLLM of the same version prints, in the same shape."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from launches.vllm.logs import classify, clean_line
from tests.vllm.conftest import CORPUS_DIR, DEMO_MODEL, STANDIN_SERVE, free_port

# Real logs from vLLM users, with the version and scenario the stand-in must reproduce.
REAL = {
    "issue-6211-v0.5.1.txt": ("0.5.1", {}),
    "issue-10439-v0.6.4.post1.txt": ("0.6.4.post1", {"AIFRED_STANDIN_WEIGHTS_MIB": "10000"}),
    "issue-12865-v0.7.2.txt": ("0.7.2", {}),
    "issue-25350-v0.10.2.txt": ("0.10.2", {}),
    "recipes-pr-653-v0.2x.txt": ("0.22.0", {}),
}
_DOCKER = re.compile(r"^\S+\s+\|\s")
_PROC = re.compile(r"\(\w+ pid=\d+\) ")


def shape(text: str) -> str:
    """A line with numbers, dates and process/compose prefixes made uniform."""
    text = _PROC.sub("", _DOCKER.sub("", clean_line(text))).replace("`", "")
    return re.sub(r"\d+(?:\.\d+)?", "N", text).strip()


def standin(version: str, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the stand-in as vLLM ``version`` with ``args`` (after the program), its output captured."""
    env = {**os.environ, "AIFRED_STANDIN_VLLM_VERSION": version, **(extra_env or {})}
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=30, check=False)


def run_standin(version: str, extra_env: dict[str, str]) -> tuple[int, list[str]]:
    env = {
        "AIFRED_STANDIN_GPU_TOTAL_MIB": "12288",
        "AIFRED_STANDIN_WEIGHTS_MIB": "5837",
        "AIFRED_STANDIN_LOAD_SECONDS": "0.2",
        "AIFRED_STANDIN_TEARDOWN_SECONDS": "0.2",
        **extra_env,
    }
    serve = [*STANDIN_SERVE, str(DEMO_MODEL), "--port", str(free_port()), "--max-model-len", "40960"]
    done = standin(version, *serve, extra_env=env)
    return done.returncode, (done.stdout + done.stderr).splitlines()


@pytest.mark.parametrize("name", sorted(REAL))
def test_the_standin_fails_like_the_real_log_of_its_version(name: str) -> None:
    real = (CORPUS_DIR / name).read_text().splitlines()[1:]
    version, extra = REAL[name]
    code, lines = run_standin(version, extra)
    real_verdict, standin_verdict = classify(real), classify(lines, exit_code=code)
    assert standin_verdict.outcome == real_verdict.outcome
    decisive = shape(real_verdict.decisive_line)
    assert decisive in {shape(line) for line in lines}, (decisive, [shape(x) for x in lines])


@pytest.mark.parametrize(("version", "code"), [("0.6.1", 0), ("0.8.2", -9), ("0.10.2", 1), ("0.32.0", 1)])
def test_a_refused_start_exits_with_the_code_of_its_era(version: str, code: int) -> None:
    exit_code, _ = run_standin(version, {})
    assert exit_code == code


def test_rope_scaling_is_an_unknown_flag_after_0_11_0() -> None:
    done = standin("0.11.1", *STANDIN_SERVE, str(DEMO_MODEL), "--rope-scaling", "{}")
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr


def test_auto_is_refused_by_the_argument_parser_before_0_14() -> None:
    done = standin("0.13.0", *STANDIN_SERVE, str(DEMO_MODEL), "--max-model-len", "auto")
    assert done.returncode == 2


def test_the_version_flag_prints_the_simulated_version() -> None:
    done = standin("0.9.2", sys.executable, "-m", "launches.vllm.standin", "--version")
    assert done.returncode == 0
    assert done.stdout.strip() == "0.9.2"


def test_the_standin_reads_models_on_its_own_and_agrees_with_the_launcher_on_real_configs() -> None:
    import json
    from pathlib import Path

    from packaging.version import Version

    from launches.vllm import standin
    from launches.vllm.modelinfo import facts_from_config

    assert not hasattr(standin, "facts_from_config") and not hasattr(standin, "read_model_facts")
    folder = Path(__file__).resolve().parents[1] / "data" / "model-configs"
    for path in sorted(folder.glob("*.json")):
        config = json.loads(path.read_text())
        for version in ("0.11.0", "0.29.0", "0.32.0"):
            theirs = standin.StandinModel(config, Version(version))
            ours = facts_from_config(config, model=path.name, vllm_version=version)
            assert (ours.native_context, ours.default_context) == (theirs.derived, theirs.default), (
                path.name,
                version,
            )
            if not ours.is_hybrid:
                # The stand-in simulates attention and MLA cache memory; hybrid caches it does not play.
                assert ours.kv_bytes_per_token() == theirs.kv_bytes_per_token("auto"), path.name
