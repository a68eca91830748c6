"""Time each launch path against the stand-in: how fast a refusal turns into the next start.

Run: python bench/launch_policy.py [--load 2] [--teardown 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from launches.vllm.argv import ServeOptions
from launches.vllm.policy import LaunchRequest, LaunchResult, run_launch
from launches.vllm.process import group_alive
from tests.ports import free_port

MODEL = Path(__file__).resolve().parent.parent / "launches" / "vllm" / "demo_models" / "qwen3-8b-like"
SMALL = {"AIFRED_STANDIN_GPU_TOTAL_MIB": "12288", "AIFRED_STANDIN_WEIGHTS_MIB": "5837"}
BIG = {"AIFRED_STANDIN_GPU_TOTAL_MIB": "81920", "AIFRED_STANDIN_WEIGHTS_MIB": "5837"}


def run(version: str, card: dict[str, str], timing: dict[str, str], known: int | None) -> LaunchResult:
    env = {**card, **timing, "AIFRED_STANDIN_VLLM_VERSION": version}
    request = LaunchRequest(
        options=ServeOptions(model=str(MODEL), port=free_port()),
        base_command=[sys.executable, "-m", "launches.vllm.standin", "serve"],
        known_limit=known,
        extra_env=env,
        ready_timeout=120,
        detect_only=True,
    )
    return run_launch(request)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load", type=float, default=2.0)
    parser.add_argument("--teardown", type=float, default=3.0)
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parent.parent)
    timing = {
        "AIFRED_STANDIN_LOAD_SECONDS": str(args.load),
        "AIFRED_STANDIN_TEARDOWN_SECONDS": str(args.teardown),
    }
    paths = [
        ("native fits (0.10.2, 80 GB)", "0.10.2", BIG, None),
        ("two stages (0.10.2, 12 GB)", "0.10.2", SMALL, None),
        ("saved limit (0.10.2, 12 GB)", "0.10.2", SMALL, 27168),
        ("auto (0.32.0, 12 GB)", "0.32.0", SMALL, None),
    ]
    print(f"stand-in load {args.load:g} s, teardown {args.teardown:g} s")
    print(f"{'path':32} {'starts':>6} {'context':>8} {'refusal->restart':>17} {'total':>8}")
    worst_gap = 0.0
    for label, version, card, known in paths:
        result = run(version, card, timing, known)
        attempts = result.attempts
        gap = "-"
        if len(attempts) > 1 and attempts[0].decided_at:
            seconds = attempts[1].started_at - attempts[0].decided_at
            worst_gap = max(worst_gap, seconds)
            gap = f"{seconds:.3f} s"
        total = attempts[-1].ended_at - attempts[0].started_at if attempts else 0.0
        print(f"{label:32} {len(attempts):>6} {result.max_model_len or '-':>8} {gap:>17} {total:>6.2f} s")
        if result.pgid and group_alive(result.pgid):
            print(f"  process group {result.pgid} still alive", file=sys.stderr)
            return 1
    print(f"worst refusal-to-restart gap: {worst_gap:.3f} s ({'OK' if worst_gap < 0.5 else 'TOO SLOW'})")
    return 0 if worst_gap < 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
