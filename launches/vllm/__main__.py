"""Command line: ``python -m launches.vllm run --model M ...`` starts vLLM with the launch policy."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from typing import Any

from launches.vllm.argv import ServeOptions
from launches.vllm.policy import LaunchRequest, run_launch


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m launches.vllm")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start vLLM with the largest context that fits")
    run.add_argument("--model", required=True)
    run.add_argument("--revision")
    run.add_argument("--known-limit", type=int)
    run.add_argument("--yarn-factor", type=float, default=1.0)
    run.add_argument("--context-cap", type=int)
    run.add_argument("--vllm-command", default="vllm serve")
    run.add_argument("--vllm-version")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    # The memory options the launcher manages: given here, not after "--" (they would be refused there).
    run.add_argument("--dtype", default="auto")
    run.add_argument("--quantization")
    run.add_argument("--kv-cache-dtype", default="auto")
    run.add_argument("--tensor-parallel-size", type=int, default=1)
    run.add_argument("--max-num-batched-tokens", type=int)
    run.add_argument("--enforce-eager", action="store_true")
    run.add_argument("--served-model-name")
    run.add_argument("--ceiling-hint", type=int, help="KV capacity seen before, where to start without auto")
    run.add_argument("--json", action="store_true")
    run.add_argument("--detect-only", action="store_true")
    run.add_argument("--timeout", type=float, default=900)
    run.add_argument(
        "--log-dir",
        help="where each attempt's output goes (default: a new temporary folder, unless --detect-only)",
    )
    run.add_argument("extra", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    extra = list(args.extra)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    log_dir = args.log_dir
    if log_dir is None and not args.detect_only:
        # The server is left running after this command exits: its output must go to files, not
        # to pipes that close with this process (its next log line would end it).
        log_dir = tempfile.mkdtemp(prefix="aifred-vllm-")
    if log_dir is not None and not args.json:
        print(f"logs: {log_dir}", flush=True)
    options = ServeOptions(
        model=args.model,
        revision=args.revision,
        host=args.host,
        port=args.port,
        gpu_memory_utilization=args.gpu_memory_utilization,
        dtype=args.dtype,
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
        tensor_parallel_size=args.tensor_parallel_size,
        max_num_batched_tokens=args.max_num_batched_tokens,
        enforce_eager=args.enforce_eager,
        served_model_name=args.served_model_name,
        extra_args=tuple(extra),
    )
    request = LaunchRequest(
        options=options,
        base_command=shlex.split(args.vllm_command),
        vllm_version=args.vllm_version,
        known_limit=args.known_limit,
        ceiling_hint=args.ceiling_hint,
        yarn_factor=args.yarn_factor,
        context_cap=args.context_cap,
        ready_timeout=args.timeout,
        detect_only=args.detect_only,
        log_dir=log_dir,
    )

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if args.json or kind != "attempt_finished":
            return
        parsed = f", fits {data['parsed_len']:,}" if data.get("parsed_len") else ""
        print(f"attempt {data['attempt']}: {data['outcome']}{parsed} - {data['message']}", flush=True)

    result = run_launch(request, on_event=on_event)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.outcome == "ready":
        print(
            f"ready: {result.url} max_model_len={result.max_model_len} "
            f"kv_capacity={result.kv_capacity_tokens}"
        )
        print(f"learned: {result.learned_limit} ({result.learned_from})")
        if not args.detect_only:
            print(f"server left running: pid {result.pid}, process group {result.pgid}")
    else:
        print(f"{result.outcome}: {result.reason}")
    return 0 if result.outcome == "ready" else 1


if __name__ == "__main__":
    sys.exit(main())
