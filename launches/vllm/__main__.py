"""Command line for the launcher without the site.

``python -m launches.vllm run --model M ...`` starts vLLM with the launch policy;
``python -m launches.vllm facts MODEL [--revision R] [--vllm-version V] [--json]`` prints what vLLM
derives from the model's config.json (lengths, layers, KV heads, head size, dtype, attention kind,
KV bytes per token).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from typing import Any

from launches.contract import MEMORY_OPTION_FIELDS
from launches.vllm.argv import ServeOptions
from launches.vllm.flags import ExtraArgsError, parse_extra_args
from launches.vllm.modelinfo import NEWEST_RULES, ModelConfigError, read_model_facts
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
    facts = sub.add_parser("facts", help="print what vLLM derives from a model's config.json")
    facts.add_argument("model", help="Hugging Face repo id or a local model folder")
    facts.add_argument("--revision")
    facts.add_argument(
        "--vllm-version", default=NEWEST_RULES, help=f"whose rules to apply (default {NEWEST_RULES})"
    )
    facts.add_argument("--json", action="store_true")
    return parser


FACT_LABELS = (
    ("native_context", "native_context (longest vLLM accepts)"),
    ("default_context", "default_context (vLLM's start without a length)"),
    ("max_len_key", "length key"),
    ("num_layers", "layers"),
    ("num_kv_heads", "KV heads"),
    ("head_dim", "head dim"),
    ("dtype", "dtype"),
    ("attention_kind", "attention kind"),
    ("kv_bytes_per_token", "KV bytes per token"),
)


def facts_command(args: argparse.Namespace) -> int:
    try:
        facts = read_model_facts(args.model, args.revision, vllm_version=args.vllm_version)
    except ModelConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = facts.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{args.model} (vLLM {args.vllm_version} rules, read with {summary['read_with']})")
    for key, label in FACT_LABELS:
        value = summary[key]
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        print(f"  {label}: {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "facts":
        return facts_command(args)
    extra = list(args.extra)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    try:
        # Refused before anything starts (not even the version query).
        parse_extra_args(shlex.join(extra))
    except ExtraArgsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
        **{name: getattr(args, name) for name in MEMORY_OPTION_FIELDS},
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
