"""Fixtures for the tests that run the real vLLM CPU build (`make test-vllm`).

Each vLLM start takes about a minute on two cores, so the model is built once per session and the
two-stage launch, whose learned limit several tests compare against, runs once per session too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.real_vllm import support
from tests.real_vllm.recording import Launches, recorded_launches


@pytest.fixture(scope="session")
def vllm_python() -> str:
    python = support.vllm_python_from_env()
    if not python:
        pytest.skip(
            "AIFRED_VLLM_PYTHON is not set: run `make test-vllm`, which builds the vLLM CPU virtualenv "
            "with scripts/vllm-cpu-env and sets it"
        )
    if not Path(python).is_file():
        pytest.fail(f"AIFRED_VLLM_PYTHON names {python!r}, which does not exist; rerun scripts/vllm-cpu-env")
    return python


@pytest.fixture(scope="session")
def model_dir(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return support.build_model(vllm_python, tmp_path_factory.mktemp("real-vllm") / "model")


@pytest.fixture
def launches(request: pytest.FixtureRequest, vllm_python: str, model_dir: Path):
    """Launches made by one test; after it, every server is stopped and none may be left running."""
    with recorded_launches(request.node.name, vllm_python, model_dir) as record:
        yield record


@dataclass
class TwoStage:
    run: support.LauncherRun
    served_max_model_len: int
    launches: Launches


@pytest.fixture(scope="session")
def two_stage(vllm_python: str, model_dir: Path) -> TwoStage:
    """The old-style launch at the native length with 1 GiB of KV cache, run once per session.

    The launcher is told the host runs vLLM 0.13.0, the last version without `--max-model-len auto`,
    so it takes the refusal path: start at the native 40,960, read the length vLLM prints, restart.
    vLLM 0.32.0 still prints that refusal with the number, so the real message is what gets parsed.
    """
    with recorded_launches("two-stage-session", vllm_python, model_dir) as record:
        run = record.run(1, vllm_version="0.13.0")
        assert run.result is not None, run.describe()
        assert run.result["outcome"] == "ready", run.describe()
        served = support.served_max_model_len(run.result["url"])
    return TwoStage(run=run, served_max_model_len=served, launches=record)
