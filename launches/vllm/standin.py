"""A stand-in for vLLM, for tests and the demo only: same command line, same output, same endpoints.

It reads the model's config.json, simulates a GPU from the environment, and prints what the chosen
vLLM version prints when a context fits or does not (wording, log prefixes, streams and exit codes
as described in the vLLM reference). It then serves ``/health`` and ``/v1/models`` over HTTP. Like
vLLM it forks an engine process, so stopping only the front-end would leave something behind.

Environment: AIFRED_STANDIN_VLLM_VERSION (default 0.32.0), AIFRED_STANDIN_GPU_TOTAL_MIB (24576),
AIFRED_STANDIN_GPU_FREE_MIB (= total), AIFRED_STANDIN_GPU_NAME, AIFRED_STANDIN_WEIGHTS_MIB
(default: estimated from the config), AIFRED_STANDIN_LOAD_SECONDS (1.0),
AIFRED_STANDIN_TEARDOWN_SECONDS (3), AIFRED_STANDIN_CRASH, AIFRED_STANDIN_HANG,
AIFRED_STANDIN_STATS_SECONDS (10; 0 = never): how often a ready server logs its throughput line, as
vLLM's stat logger does, so that a server whose output nobody reads any more is noticed;
AIFRED_STANDIN_MAMBA_BLOCKS: play a hybrid model with that many Mamba cache blocks (a larger
``--max-num-seqs``, default 1024, is refused with vLLM's words).

The model is read on its own here (Transformers' ``AutoConfig`` and vLLM's rules written down
in ``StandinModel``), never through the launcher's reader, so that tests comparing the two can fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

from packaging.version import Version

MIB = 1024 * 1024
GIB = 1024 * MIB
BLOCK = 16
# Activations, CUDA graphs and the CUDA context: what profiling takes besides weights and KV.
OVERHEAD_MIB = 1400

_QUANT_BYTES = {
    "awq": 0.5,
    "gptq": 0.5,
    "awq_marlin": 0.5,
    "gptq_marlin": 0.5,
    "fp8": 1.0,
    "bitsandbytes": 0.5,
}
_EF_LINES = {  # "EngineCore failed to start." core.py line by version
    "0.8.5": 396,
    "0.9.0": 500,
    "0.9.1": 515,
    "0.9.2": 586,
    "0.10.0": 632,
    "0.10.1": 700,
    "0.10.2": 718,
    "0.11.0": 708,
    "0.11.1": 842,
    "0.12.0": 843,
    "0.13.0": 866,
    "0.14.0": 936,
    "0.15.0": 946,
    "0.16.0": 1006,
    "0.17.0": 1100,
    "0.18.0": 1099,
    "0.19.0": 1108,
    "0.20.0": 1136,
    "0.21.0": 1140,
    "0.22.0": 1165,
    "0.23.0": 1195,
    "0.24.0": 1231,
    "0.26.0": 1330,
    "0.27.0": 1349,
    "0.28.0": 1346,
    "0.29.0": 1374,
    "0.30.0": 1366,
    "0.31.0": 1433,
    "0.32.0": 1510,
    "0.33.0": 1584,
}


_LENGTH_KEYS = (  # vLLM 0.32.0 transformers_utils/model_arch_config_convertor.py, in its order
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
_DTYPE_SIZE = {"float32": 4, "float": 4, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}


class StandinModel:
    """The numbers the simulated vLLM needs of a model, read the way vLLM reads them.

    Transformers' ``AutoConfig`` builds the config (class defaults and attribute maps), the text part
    of a multimodal config is used, and vLLM's length rules are applied as vLLM 0.32.0's
    ``vllm/config/model.py`` (``_get_and_verify_max_len``) and 0.29's (YaRN multiplied) state them.
    """

    def __init__(self, config: dict[str, Any], version: Version) -> None:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from transformers import AutoConfig

            text = AutoConfig.for_model(**config).get_text_config()
        except Exception:  # an architecture Transformers does not know: the raw file
            part = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
            text = SimpleNamespace(**part)
        self.text = text
        values = [(getattr(text, key, None), key) for key in _LENGTH_KEYS]
        present = [(value, key) for value, key in values if value is not None]
        length, self.key = (
            min(present, key=lambda pair: pair[0]) if present else (2048, "max_position_embeddings")
        )
        if getattr(text, "model_max_length", None):
            length, self.key = text.model_max_length, "model_max_length"
        rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}
        layers_rope = list(rope.values()) if all(isinstance(x, dict) for x in rope.values()) else [rope]
        layers_rope = [entry for entry in layers_rope if entry]
        kinds = [entry.get("rope_type") or entry.get("type") for entry in layers_rope]
        before_0_30 = version < Version("0.30.0")
        keep = {"su", "longrope", "llama3"} if before_0_30 else {"su", "longrope", "llama3", "yarn"}
        if "gemma3" not in str(getattr(text, "model_type", "")):
            scale = 1.0
            for kind, entry in zip(kinds, layers_rope, strict=True):
                if kind in keep or entry.get("factor") is None:
                    continue
                scale = entry["factor"]
                if kind == "yarn" and before_0_30:
                    length = entry.get("original_max_position_embeddings", length)
            length = length * scale
        self.derived = int(length)
        original = getattr(text, "original_max_position_embeddings", None)
        longrope = any(kind in ("longrope", "su") for kind in kinds)
        self.default = int(original) if longrope and original else self.derived
        heads = getattr(text, "num_attention_heads", None) or 1
        self.hidden = getattr(text, "hidden_size", None) or 0
        self.layers = next(
            (
                n
                for n in (getattr(text, k, None) for k in ("num_hidden_layers", "num_layers", "n_layer"))
                if n
            ),
            0,
        )
        # vLLM's list of names for KV heads (Falcon, Llama-2 GQA, ChatGLM), first one present wins.
        kv_names = ("n_head_kv", "num_kv_heads", "num_key_value_heads", "multi_query_group_num")
        self.kv_heads = next((n for n in (getattr(text, k, None) for k in kv_names) if n), heads)
        self.head_size = getattr(text, "head_dim", None) or self.hidden // heads
        # DeepSeek-style latent attention caches one vector of kv_lora_rank + qk_rope_head_dim per layer
        # and token. Told here by the config's latent rank alone (every model type vLLM 0.32.0's
        # is_deepseek_mla names has one), not by vLLM's list of model types the product keeps.
        self.mla_width = 0
        if getattr(text, "kv_lora_rank", None):
            self.mla_width = text.kv_lora_rank + (getattr(text, "qk_rope_head_dim", None) or 0)
        self.heads = heads
        self.dtype = str(getattr(text, "dtype", None) or config.get("torch_dtype") or "bfloat16")

    def kv_bytes_per_token(self, kv_cache_dtype: str) -> int:
        name = self.dtype if kv_cache_dtype in (None, "auto") else kv_cache_dtype
        size = _DTYPE_SIZE.get(name.removeprefix("torch."), 2)
        if self.mla_width:
            return self.layers * self.mla_width * size
        return self.layers * 2 * self.kv_heads * self.head_size * size

    def estimated_parameters(self) -> int:
        inner = getattr(self.text, "intermediate_size", None) or 4 * self.hidden
        vocab = getattr(self.text, "vocab_size", None) or 32000
        attention = 2 * self.hidden * self.head_size * (self.heads + self.kv_heads)
        return self.layers * (attention + 3 * self.hidden * inner) + 2 * vocab * self.hidden


def _line_for(table: dict[str, int], version: Version) -> int:
    best = next(iter(table.values()))
    for key, value in table.items():
        if Version(key) <= version:
            best = value
    return best


def _gib2(value_bytes: float, version: Version) -> str:
    # Before 0.14 vLLM prints two decimals; later round(x, 2) ("24.0").
    if version >= Version("0.14.0"):
        return f"{round(value_bytes / GIB, 2)}"
    return f"{value_bytes / GIB:.2f}"


class Printer:
    """Writes lines with the log prefix and process prefix of one vLLM version."""

    def __init__(self, version: Version, process: str) -> None:
        self.version = version
        self.process = process

    def proc_prefix(self) -> str:
        if self.version >= Version("0.10.1"):
            return f"({self.process} pid={os.getpid()}) "
        return ""

    def log(self, level: str, where: str, text: str, *, stream: Any = None) -> None:
        stamp = time.strftime("%m-%d %H:%M:%S")
        location = f"[{where}]" if self.version >= Version("0.8.0") else f"{where}]"
        out = stream or sys.stdout
        for part in text.split("\n"):
            out.write(f"{self.proc_prefix()}{level} {stamp} {location} {part}\n")
        out.flush()

    def raw(self, text: str, *, stream: Any = None, prefix: str = "") -> None:
        out = stream or sys.stderr
        for part in text.split("\n"):
            out.write(f"{self.proc_prefix()}{prefix}{part}\n")
        out.flush()


def _engine_name(version: Version) -> str:
    if version >= Version("0.25.0"):
        return "EngineCore"
    if version >= Version("0.11.0"):
        return "EngineCore_DP0"
    return "EngineCore_0"


def build_parser(version: Version, serve_form: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm serve" if serve_form else "api_server")
    if serve_form:
        parser.add_argument("model_tag")
    parser.add_argument("--model", default=None)
    auto_ok = version >= Version("0.14.0")

    def max_len(value: str) -> int:
        if auto_ok and value.strip().lower() in ("auto", "-1"):
            return -1
        return int(value)

    parser.add_argument("--max-model-len", "--max_model_len", type=max_len, default=None)
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--quantization", "-q", default=None)
    parser.add_argument("--kv-cache-dtype", default="auto")
    parser.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    parser.add_argument("--max-num-batched-tokens", type=int, default=None)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--revision", default=None)
    parser.add_argument("--block-size", type=int, default=BLOCK)
    parser.add_argument("--max-num-seqs", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    if Version("0.4.3") <= version < Version("0.11.1"):
        parser.add_argument("--rope-scaling", type=json.loads, default=None)
    if version >= Version("0.6.4"):
        parser.add_argument("--hf-overrides", type=json.loads, default=None)
    return parser


def _load_config(model: str, revision: str | None) -> dict[str, Any]:
    facts_source = os.path.join(model, "config.json") if os.path.isdir(model) else None
    if facts_source:
        with open(facts_source, encoding="utf-8") as handle:
            return json.load(handle)
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(model, "config.json", revision=revision, local_files_only=True)
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class Standin:
    def __init__(self, args: argparse.Namespace, version: Version) -> None:
        self.args = args
        self.version = version
        self.model = args.model or getattr(args, "model_tag", None)
        self.served = args.served_model_name or self.model
        self.front = Printer(version, "APIServer")
        self.engine = Printer(version, _engine_name(version))
        env = os.environ
        self.total_mib = float(env.get("AIFRED_STANDIN_GPU_TOTAL_MIB", "24576"))
        self.free_mib = float(env.get("AIFRED_STANDIN_GPU_FREE_MIB", str(self.total_mib)))
        self.gpu_name = env.get("AIFRED_STANDIN_GPU_NAME", "NVIDIA Simulated GPU")
        self.load_seconds = float(env.get("AIFRED_STANDIN_LOAD_SECONDS", "1.0"))
        self.teardown = float(env.get("AIFRED_STANDIN_TEARDOWN_SECONDS", "3"))
        self.weights_env = env.get("AIFRED_STANDIN_WEIGHTS_MIB")
        self.crash = bool(env.get("AIFRED_STANDIN_CRASH"))
        self.hang = bool(env.get("AIFRED_STANDIN_HANG"))
        self.stats_seconds = float(env.get("AIFRED_STANDIN_STATS_SECONDS", "10"))
        self.child: int | None = None

    # ---- front-end -------------------------------------------------------------------------

    def run(self) -> int:
        v = self.version
        banner = (
            f"vLLM server version {v}, serving model {self.model}"
            if v >= Version("0.15.0")
            else f"vLLM API server version {v}"
        )
        self.front.log("INFO", "api_server.py:1839", banner)
        try:
            config = _load_config(self.model, self.args.revision)
        except (OSError, ValueError):
            self.front.raw(
                "Traceback (most recent call last):\n"
                '  File "vllm/transformers_utils/config.py", line 290, in get_config\n'
                f"OSError: {self.model} is not a local folder and is not a valid model identifier listed "
                "on 'https://huggingface.co/models'\nIf this is a private repository, make sure to pass a "
                "token having permission to this repo with `use_auth_token` or log in with "
                "`huggingface-cli login` and pass `use_auth_token=True`."
            )
            return 1
        overrides = dict(self.args.hf_overrides or {}) if hasattr(self.args, "hf_overrides") else {}
        if getattr(self.args, "rope_scaling", None):
            overrides["rope_scaling"] = self.args.rope_scaling
        config.update(overrides)
        if v >= Version("0.12.0") and "rope_parameters" in config and "rope_scaling" in config:
            config.pop("rope_scaling")
        facts = StandinModel(config, v)
        derived = facts.derived
        requested = self.args.max_model_len
        if requested is not None and requested != -1 and requested > derived:
            self._length_above_model(requested, facts.key, derived, config)
            return 1
        # Without a length (and where auto-fit starts) vLLM uses its default: for LongRoPE that is
        # original_max_position_embeddings, below the length it accepts.
        length = facts.default if requested in (None, -1) else requested
        if v >= Version("0.9.2"):
            self.front.log("INFO", "model.py:1750", f"Using max model len {length}")
        sock = None
        if v >= Version("0.7.3"):
            sock = self._bind()
            if sock is None:
                return 1
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            code = 1
            try:
                code = self._engine(facts, length, requested == -1, write_fd)
            finally:
                os._exit(code)
        self.child = pid
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            report = pipe.read()
        if not report:
            return self._engine_failed()
        result = json.loads(report)
        if sock is None:
            sock = self._bind()
            if sock is None:
                return 1
        return self._serve(sock, result["max_model_len"])

    def _bind(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.args.host, self.args.port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            if self.version >= Version("0.7.3"):
                self.front.raw(
                    "Traceback (most recent call last):\n"
                    '  File "vllm/entrypoints/openai/api_server.py", line 1350, in create_server_socket\n'
                    "    sock.bind(addr)\n"
                    f"OSError: [Errno {exc.errno}] Address already in use"
                )
            else:
                self.front.raw(
                    f"ERROR:    [Errno {exc.errno}] error while attempting to bind on address "
                    f"('{self.args.host}', {self.args.port}): address already in use"
                )
            return None
        return sock

    def _length_above_model(self, requested: int, key: str, derived: int, config: dict[str, Any]) -> None:
        v = self.version
        tok_max = config.get("model_max_length")
        msg = (
            f"User-specified max_model_len ({requested}) is greater than the derived max_model_len "
            f"({key}={derived} or model_max_length={tok_max} in model's config.json)."
        )
        if v < Version("0.5.4"):
            msg = (
                msg[:-1] + " This may lead to incorrect model outputs or CUDA errors. Make sure the value "
                "is correct and within the model context size."
            )
        elif v < Version("0.10.2"):
            msg = (
                msg[:-1] + " This may lead to incorrect model outputs or CUDA errors. To allow overriding "
                "this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"
            )
        else:
            msg += (
                " To allow overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. "
                "VLLM_ALLOW_LONG_MAX_MODEL_LEN must be used with extreme caution. If the model uses "
                "relative position encoding (RoPE), positions exceeding derived_max_model_len lead to nan."
            )
        if v >= Version("0.9.1"):
            self.front.raw(
                "Traceback (most recent call last):\n"
                "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
                f"  Value error, {msg} [type=value_error, input_value=ArgsKwargs(()), input_type=ArgsKwargs]"
            )
        else:
            self.front.raw(f"Traceback (most recent call last):\nValueError: {msg}")

    def _engine_failed(self) -> int:
        """The engine died before it was ready: the front-end's reaction of this version."""
        v = self.version
        if self.child:
            os.waitpid(self.child, 0)
            self.child = None
        time.sleep(self.teardown)
        if Version("0.5.5") <= v < Version("0.6.2"):
            self.front.log(
                "ERROR", "api_server.py:188", "RPCServer process died before responding to readiness probe"
            )
            return 0
        if Version("0.8.0") <= v < Version("0.8.5"):
            self.front.log(
                "CRITICAL",
                "core_client.py:269",
                "Got fatal signal from worker processes, shutting down. See stack trace above for root "
                "cause issue.",
            )
            os.kill(os.getpid(), signal.SIGKILL)
        if v >= Version("0.8.5"):
            suffix = " Failed core proc(s): {}" if v >= Version("0.9.0") else ""
            self.front.raw(
                "Traceback (most recent call last):\n"
                '  File "vllm/v1/engine/utils.py", line 785, in wait_for_engine_startup\n'
                f"RuntimeError: Engine core initialization failed. See root cause above.{suffix}"
            )
        elif v >= Version("0.6.2"):
            self.front.raw(
                "Traceback (most recent call last):\n"
                "RuntimeError: Engine process failed to start. See stack trace for the root cause."
            )
        return 1

    def _serve(self, sock: socket.socket, max_model_len: int) -> int:
        v = self.version
        url = f"http://{self.args.host}:{self.args.port}"
        served, created = self.served, int(time.time())

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    body = b""
                elif self.path == "/v1/models":
                    card = {
                        "id": served,
                        "object": "model",
                        "created": created,
                        "owned_by": "vllm",
                        "root": served,
                        "parent": None,
                        "max_model_len": max_model_len,
                    }
                    body = json.dumps({"object": "list", "data": [card]}).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((self.args.host, self.args.port), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        if v >= Version("0.18.0"):
            self.front.log("INFO", "api_server.py:2045", f"Starting vLLM server on {url}")
        elif v >= Version("0.9.1"):
            self.front.log("INFO", "api_server.py:1912", f"Starting vLLM API server 0 on {url}")
        elif v >= Version("0.7.3"):
            self.front.log("INFO", "api_server.py:1081", f"Starting vLLM API server on {url}")
        self.front.raw(f"INFO:     Started server process [{os.getpid()}]")
        self.front.raw("INFO:     Waiting for application startup.")
        self.front.raw("INFO:     Application startup complete.")
        if v < Version("0.7.3"):
            self.front.raw(f"INFO:     Uvicorn running on {url} (Press CTRL+C to quit)")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        # Logged from the main thread: an error writing it (a closed pipe) ends the server, as it
        # does vLLM's.
        while True:
            if self.stats_seconds <= 0:
                time.sleep(3600)
                continue
            time.sleep(self.stats_seconds)
            where = "loggers.py:236" if self.version >= Version("0.8.0") else "metrics.py:351"
            self.front.log("INFO", where, self._stats_text())

    def _stats_text(self) -> str:
        if self.version >= Version("0.8.0"):
            return (
                "Engine 000: Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.0 tokens/s, "
                "Running: 0 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.0%, Prefix cache hit rate: 0.0%"
            )
        return (
            "Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.0 tokens/s, "
            "Running: 0 reqs, Swapped: 0 reqs, Pending: 0 reqs, GPU KV cache usage: 0.0%, "
            "CPU KV cache usage: 0.0%."
        )

    # ---- engine (forked child) -------------------------------------------------------------

    def _weights_mib(self, facts: Any) -> float:
        if self.weights_env:
            return float(self.weights_env)
        per_param = _QUANT_BYTES.get((self.args.quantization or "").lower(), 2.0)
        return facts.estimated_parameters() * per_param / MIB

    def _engine(self, facts: Any, length: int, auto: bool, write_fd: int) -> int:
        v = self.version
        eng = self.engine
        v1 = v >= Version("0.8.0")
        time.sleep(self.load_seconds / 2)
        budget_mib = self.total_mib * self.args.gpu_memory_utilization
        if self.crash:
            self._engine_error(
                "RuntimeError: CUDA error: an illegal memory access was encountered", "RuntimeError"
            )
            return 1
        if v >= Version("0.9.1") and self.free_mib < budget_mib:
            device = " cuda:0" if v >= Version("0.14.0") else ""
            self._engine_error(
                f"ValueError: Free memory on device{device} ({_gib2(self.free_mib * MIB, v)}/"
                f"{_gib2(self.total_mib * MIB, v)} GiB) on startup is less than desired GPU memory "
                f"utilization ({self.args.gpu_memory_utilization}, {_gib2(budget_mib * MIB, v)} GiB). "
                "Decrease GPU memory utilization or reduce GPU memory used by other processes.",
                "ValueError",
            )
            return 1
        budget_mib = min(budget_mib, self.free_mib)
        weights = self._weights_mib(facts)
        if weights > budget_mib:
            self._engine_error(
                f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 224.00 MiB. GPU 0 has a "
                f"total capacity of {self.total_mib / 1024:.2f} GiB of which 187.75 MiB is free.",
                "OutOfMemoryError",
                pre=(
                    "Failed to load model - not enough GPU memory. Try lowering --gpu-memory-utilization "
                    "to free memory for weights, increasing --tensor-parallel-size, or using --quantization."
                    if v >= Version("0.13.0")
                    else None
                ),
            )
            return 1
        time.sleep(self.load_seconds / 2)
        mamba_blocks = os.environ.get("AIFRED_STANDIN_MAMBA_BLOCKS")
        if mamba_blocks and self.args.max_num_seqs > int(mamba_blocks):
            # vLLM's words (issue 49064, 0.28.0) for a hybrid model's Mamba cache.
            self._engine_error(
                f"ValueError: max_num_seqs ({self.args.max_num_seqs}) exceeds available Mamba cache blocks "
                f"({int(mamba_blocks)}).",
                "ValueError",
            )
            return 1
        kv_bytes = (budget_mib - weights - OVERHEAD_MIB) * MIB
        per_token = facts.kv_bytes_per_token(self.args.kv_cache_dtype)
        block_bytes = per_token * self.args.block_size
        blocks = int(kv_bytes // block_bytes) if kv_bytes > 0 else 0
        capacity = blocks * self.args.block_size
        if v >= Version("0.9.1"):
            eng.log("INFO", "gpu_worker.py:298", f"Available KV cache memory: {_gib2(kv_bytes, v)} GiB")
        if blocks <= 0:
            text = (
                "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` "
                "when initializing the engine."
            )
            if auto:
                text = (
                    "Cannot auto-fit max_model_len: not enough GPU memory available to serve even a "
                    "single token. Try increasing `gpu_memory_utilization`."
                )
            self._engine_error(f"ValueError: {text}", "ValueError")
            return 1
        if auto:
            if capacity < length:
                where = (
                    f"available KV cache memory ({_gib2(kv_bytes, v)} GiB GPU)"
                    if v >= Version("0.32.0")
                    else f"available GPU memory ({_gib2(kv_bytes, v)} GiB available for KV cache)"
                )
                eng.log(
                    "INFO",
                    "kv_cache_utils.py:1316",
                    f"Auto-fit max_model_len: reduced from {length} to {capacity} to fit in {where}",
                )
                length = capacity
            else:
                where = (
                    f"available KV cache memory ({_gib2(kv_bytes, v)} GiB GPU)"
                    if v >= Version("0.32.0")
                    else "available GPU memory"
                )
                eng.log(
                    "INFO",
                    "kv_cache_utils.py:1310",
                    f"Auto-fit max_model_len: full model context length {length} fits in {where}",
                )
        if capacity < length:
            self._engine_error(
                f"ValueError: {self._refusal(length, capacity, per_token, kv_bytes)}", "ValueError"
            )
            return 1
        concurrency = capacity / length
        if not v1:
            eng.log(
                "INFO",
                "executor_base.py:110" if v >= Version("0.7.0") else "gpu_executor.py:122",
                f"# {self._block_word()} blocks: {blocks}, # CPU blocks: 2048",
            )
            if v >= Version("0.6.3"):
                eng.log(
                    "INFO",
                    "executor_base.py:115",
                    f"Maximum concurrency for {length} tokens per request: {concurrency:.2f}x",
                )
        elif v >= Version("0.28.0"):
            pool = "GPU"
            eng.log(
                "INFO",
                "kv_cache_utils.py:1291",
                f"{pool} KV cache size: {capacity:,} tokens, "
                f"Maximum concurrency for {length:,} tokens per request: {concurrency:.2f}x",
            )
        else:
            eng.log("INFO", "kv_cache_utils.py:864", f"GPU KV cache size: {capacity:,} tokens")
            eng.log(
                "INFO",
                "kv_cache_utils.py:868",
                f"Maximum concurrency for {length:,} tokens per request: {concurrency:.2f}x",
            )
        with os.fdopen(write_fd, "w") as pipe:
            if self.hang:
                eng.log("INFO", "core.py:210", "Compiling the model graph (this can take a while)")
                while True:
                    time.sleep(3600)
            pipe.write(json.dumps({"max_model_len": length, "capacity": capacity}))
        # The engine lives as long as the server, as vLLM's EngineCore does.
        while True:
            time.sleep(3600)

    def _block_word(self) -> str:
        if self.version >= Version("0.7.3"):
            return "cuda"
        if self.version >= Version("0.7.0"):
            return "CUDA"
        return "GPU"

    def _refusal(self, length: int, capacity: int, per_token: int, kv_bytes: float) -> str:
        v = self.version
        if v < Version("0.8.0"):
            return (
                f"The model's max seq len ({length}) is larger than the maximum number of tokens that can "
                f"be stored in KV cache ({capacity}). Try increasing `gpu_memory_utilization` or "
                "decreasing `max_model_len` when initializing the engine."
            )
        needed = per_token * -(-length // BLOCK) * BLOCK
        gib = _gib2
        models = "model's" if v >= Version("0.22.0") else "models's"
        head = (
            f"To serve at least one request with the {models} max seq len ({length}), "
            f"({gib(needed, v)} {'GB' if v < Version('0.8.3') else 'GiB'} KV cache is needed, which is "
            f"larger than the available KV cache memory ({gib(kv_bytes, v)} "
            f"{'GB' if v < Version('0.8.3') else 'GiB'})."
        )
        estimate = f"Based on the available memory, the estimated maximum model length is {capacity}."
        advice = (
            "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
            "the engine."
        )
        docs = " See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details."
        if v < Version("0.8.4"):
            return f"{head} {advice}"
        if v < Version("0.9.1"):
            return f"{head} Based on the available memory,  {advice}"
        if v < Version("0.13.0"):
            return f"{head} {estimate} {advice}"
        if v < Version("0.22.0"):
            return f"{head} {estimate} {advice}{docs}"
        advice = (
            "Try increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) "
            "or decreasing `max_model_len` when initializing the engine."
        )
        return f"{head} {estimate} {advice}{docs}"

    def _engine_error(self, final: str, kind: str, pre: str | None = None) -> None:
        """Print an engine-side failure the way this version's engine process reports it."""
        v = self.version
        eng = self.engine
        frames = [
            "Traceback (most recent call last):",
            '  File "vllm/worker/worker.py", line 493, in raise_if_cache_size_invalid'
            if v < Version("0.8.0")
            else '  File "vllm/v1/core/kv_cache_utils.py", line 716, in check_enough_kv_cache_memory',
            "    raise ValueError(" if kind == "ValueError" else "    raise",
            final,
        ]
        if pre:
            eng.log("ERROR", "gpu_model_runner.py:2862", pre)
        if v < Version("0.5.4"):
            rank = "[rank0]: " if v >= Version("0.5.0") else ""
            eng.raw("\n".join(frames), prefix=rank)
        elif v < Version("0.6.2"):
            eng.raw("Process SpawnProcess-1:\n" + "\n".join(frames))
        elif v < Version("0.8.0"):
            if v >= Version("0.6.4"):
                eng.log("ERROR", "engine.py:366", final.split(": ", 1)[1] if ": " in final else final)
                eng.log("ERROR", "engine.py:366", "\n".join(frames))
            eng.raw("Process SpawnProcess-1:\n" + "\n".join(frames))
        elif v < Version("0.8.5"):
            eng.log("ERROR", "core.py:387", "EngineCore hit an exception: " + "\n".join(frames))
        else:
            where = f"core.py:{_line_for(_EF_LINES, v)}"
            eng.log("ERROR", where, "EngineCore failed to start.\n" + "\n".join(frames))
            eng.raw(f"Process {_engine_name(v)}:\n" + "\n".join(frames))


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    version = Version(os.environ.get("AIFRED_STANDIN_VLLM_VERSION", "0.32.0"))
    if args_in[:1] == ["--version"] or args_in == ["serve", "--version"]:
        print(version)
        return 0
    serve_form = args_in[:1] == ["serve"]
    parser = build_parser(version, serve_form)
    args = parser.parse_args(args_in[1:] if serve_form else args_in)
    if not serve_form and not args.model:
        parser.error("the following arguments are required: --model")
    standin = Standin(args, version)

    def on_term(signum: int, frame: Any) -> None:
        if standin.child:
            try:
                os.kill(standin.child, signal.SIGTERM)
                os.waitpid(standin.child, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    return standin.run()


if __name__ == "__main__":
    sys.exit(main())
