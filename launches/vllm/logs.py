"""Turn vLLM's output into a verdict: did it start, and if not, why and what would fit.

Every pattern works on any vLLM from 0.4 to 0.33: lines are cleaned of ``\\r`` and ANSI colour
first, and no pattern is anchored at the line start, because vLLM and the tools around it put
prefixes before the text (``(EngineCore_DP0 pid=12) ERROR 10-31 15:07:50 [core.py:708] ``,
``[rank0]: ``, ``vllm-1  | ``).

Outcomes, and the choice made for automatic fitting:

* ``ready`` — the server printed "Application startup complete.". When ``--max-model-len auto``
  reduced the length ("Auto-fit max_model_len: reduced from A to B"), the outcome is still
  ``ready``; ``max_model_len`` and ``auto_fit_len`` are B, and the policy records B as a learned
  limit. The outcome ``auto_fit`` is used only for a log that shows the reduction but never became
  ready (a stopped or truncated start), so that the learned number is not lost.
* ``context_too_long`` — the KV cache cannot hold the requested length; ``max_model_len`` is the
  length vLLM says fits (its estimate, the V0 token count, or an approximation from the GiB figures
  rounded down to 16 when vLLM printed no number), else None.
* ``max_num_seqs_too_high`` — a hybrid (Mamba / linear-attention) model has fewer Mamba cache
  blocks than ``max_num_seqs``; ``max_num_seqs`` is the number vLLM says fits. Not a context limit.
* ``gpu_busy``, ``weights_do_not_fit``, ``length_above_model``, ``port_in_use``,
  ``model_not_found``, ``crashed`` — failures that teach no context limit. A bind error that comes
  after "Application startup complete." (uvicorn binds only then) still makes the start
  ``port_in_use``: whatever answers on that port is not this server. vLLM 0.32.0's "Address already
  in use. Retrying with a new port." (data-parallel set-up) is not a failure.
* ``timeout`` and ``cancelled`` are never produced here; the launch policy uses them.

``python -m launches.vllm.logs FILE...`` prints one JSON verdict per file.
"""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from launches.contract import Outcome

BLOCK_SIZE = 16
TAIL_LINES = 40

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Verdict:
    outcome: Outcome
    max_model_len: int | None = None
    requested_len: int | None = None
    kv_capacity_tokens: int | None = None
    max_concurrency: float | None = None
    max_num_seqs: int | None = None
    vllm_version: str | None = None
    derived_max_model_len: int | None = None
    auto_fit_len: int | None = None
    exit_code: int | None = None
    message: str = ""
    decisive_line: str | None = None
    tail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = str(self.outcome)
        return data


def clean_line(line: str) -> str:
    return _ANSI.sub("", line.replace("\r", "")).rstrip("\n")


def round_down(value: int, block: int = BLOCK_SIZE) -> int:
    return value // block * block


def _n(text: str) -> int:
    return int(text.replace(",", ""))


def _fmt(value: int | None) -> str:
    return f"{value:,}" if value is not None else "?"


_ESTIMATE = re.compile(r"estimated maximum model length is (\d+)")
_V0_REFUSAL = re.compile(
    r"max seq len \((\d+)\) is larger than the maximum number of tokens that can be stored in KV cache "
    r"\((\d+)\)"
)
_V1_REFUSAL = re.compile(
    r"To serve at least one request with the models?'s max seq len \((\d+)\), \(([\d.]+) Gi?B KV cache "
    r"is needed, which is larger than the available KV cache memory \((-?[\d.]+) Gi?B\)"
)
_NO_MEMORY = re.compile(r"No available memory for the cache blocks|Cannot auto-fit max_model_len")
_NEGATIVE_KV = re.compile(
    r"Available KV cache memory: -[\d.]+ GiB|memory reserved for KV Cache is -[\d.]+ ?GiB"
)
_MAMBA_BLOCKS = re.compile(r"max_num_seqs \((\d+)\) exceeds available Mamba cache blocks \((\d+)\)")
_GPU_BUSY = re.compile(
    r"Free memory on device(?: \S+)? \(([\d.]+)/([\d.]+) GiB\) on startup is less than "
    r"(?:desired GPU memory utilization|the engine's budget)"
)
_OOM = re.compile(
    r"(?:torch\.)?(?:cuda\.)?OutOfMemoryError: CUDA out of memory"
    r"|Failed to load model - not enough GPU memory"
    r"|Failed to create unquantized linear weights"
    r"|CUDA out of memory occurred when warming up (?:sampler|pooler)"
)
_LENGTH_ABOVE = re.compile(
    r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len "
    r"\(([\w.]+)=([\d.]+) or model_max_length=(\w+) in model's config\.json\)"
)
_PORT = re.compile(r"[Aa]ddress already in use|\[Errno 98\]")
_PORT_RETRY = re.compile(r"Retrying with a new port")
_MODEL_NOT_FOUND = re.compile(
    r"RepositoryNotFoundError|is not a local folder and is not a valid model identifier"
    r"|No such file or directory.*config\.json|does not appear to have a file named config\.json"
    r"|GatedRepoError|access a gated repo|Cannot access gated repo|401 Client Error"
    r"|HFValidationError|Repo id must be in the form|Invalid repository ID or local directory specified"
)
# Failures whose sentence needs no number from the line, in the order they are looked for.
_FIXED_FAILURES: tuple[tuple[re.Pattern[str], Outcome, str], ...] = (
    (
        _NO_MEMORY,
        Outcome.WEIGHTS_DO_NOT_FIT,
        "No GPU memory left for the KV cache after loading the weights; raise gpu_memory_utilization, "
        "quantize, or use more GPUs",
    ),
    (
        _OOM,
        Outcome.WEIGHTS_DO_NOT_FIT,
        "The model's weights do not fit in GPU memory (CUDA out of memory); quantize, use more GPUs, "
        "or raise gpu_memory_utilization",
    ),
    (
        _MODEL_NOT_FOUND,
        Outcome.MODEL_NOT_FOUND,
        "vLLM could not find the model (no such local folder or Hugging Face repo, or no config.json); "
        "check the model id, revision and token",
    ),
)
_READY = re.compile(r"Application startup complete\.")
_KV_TOKENS = re.compile(r"(?:[A-Z]+(?: \+ host)? )?KV cache size: ([\d,]+) tokens")
_BLOCKS = re.compile(r"# (?:GPU|CUDA|cuda) blocks: (\d+)")
_CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
_USING_LEN = re.compile(r"Using max model len (\d+)")
_MAX_SEQ_LEN = re.compile(r"\bmax_seq_len=(\d+)")
_BLOCK_SIZE = re.compile(r"\bblock_size=(\d+)")
_AUTO_REDUCED = re.compile(r"Auto-fit max_model_len: reduced from (\d+) to (\d+)")
_AUTO_FULL = re.compile(r"Auto-fit max_model_len: full model context length (\d+) fits")
_BANNER = re.compile(
    r"vLLM (?:API )?server version ([0-9][^\s,]*)"
    # 0.15+ logo: "█ ▀▄▀ █  version 0.32.0"; and the V1 engine line "LLM engine (v0.32.0)".
    r"|[█▀▄]\s+version ([0-9][^\s,]*)|LLM engine \(v([0-9][^\s,)]*)\)"
)
_SOURCE_LINE = re.compile(r"\braise \w+\(")
_FATAL = re.compile(
    r"Engine core initialization failed|Engine process failed to start"
    r"|Got fatal signal from worker processes|RPCServer process died before responding to readiness probe"
)


class LogWatcher:
    """Reads vLLM output line by line and says as soon as the start is decided."""

    def __init__(self, tail_lines: int = TAIL_LINES) -> None:
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self.decided: Verdict | None = None
        self.vllm_version: str | None = None
        self.requested_len: int | None = None
        self.using_len: int | None = None
        self.kv_tokens: int | None = None
        self.blocks: int | None = None
        self.block_size = BLOCK_SIZE
        self.concurrency: tuple[int, float] | None = None
        self.auto_reduced: tuple[int, int] | None = None
        self.auto_full: int | None = None
        self.negative_kv = False
        self._failure: Verdict | None = None
        self._fatal_line: str | None = None
        self._ready_line: str | None = None

    def feed(self, raw: str) -> Verdict | None:
        """Take one line; return the verdict the first time a decisive line arrives."""
        line = clean_line(raw)
        self.tail.append(line)
        self._learn(line)
        if self.decided is not None and self.decided.outcome == Outcome.READY and self._port_failure(line):
            # uvicorn reports "startup complete" before it binds: a bind error after it wins.
            self._failure = self._port_failure(line)
            self._ready_line = None
            self.decided = self.verdict()
            return self.decided
        if self.decided is not None:
            return None
        # A traceback's source line ("raise ValueError(\"No available ...") repeats the words of
        # the message that follows it; the message line itself is the one to report.
        failure = None if _SOURCE_LINE.search(line) else self._failure_in(line)
        if failure is not None:
            self._failure = self._failure or failure
            self.decided = self.verdict()
            return self.decided
        if _READY.search(line):
            self._ready_line = line
            self.decided = self.verdict()
            return self.decided
        if _FATAL.search(line):
            self._fatal_line = line
            self.decided = self.verdict()
            return self.decided
        return None

    def _learn(self, line: str) -> None:
        if (m := _BANNER.search(line)) and not self.vllm_version:
            self.vllm_version = next(group for group in m.groups() if group)
        if m := _USING_LEN.search(line):
            self.using_len = int(m.group(1))
        if m := _MAX_SEQ_LEN.search(line):
            self.requested_len = int(m.group(1))
        if m := _BLOCK_SIZE.search(line):
            self.block_size = int(m.group(1))
        if m := _KV_TOKENS.search(line):
            self.kv_tokens = _n(m.group(1))
        if m := _BLOCKS.search(line):
            self.blocks = int(m.group(1))
            if self.blocks == 0:
                # V0: "# cuda blocks: 0" - the weights left nothing for the KV cache.
                self.negative_kv = True
        if m := _CONCURRENCY.search(line):
            self.concurrency = (_n(m.group(1)), float(m.group(2)))
        if m := _AUTO_REDUCED.search(line):
            self.auto_reduced = (int(m.group(1)), int(m.group(2)))
        if m := _AUTO_FULL.search(line):
            self.auto_full = int(m.group(1))
        if _NEGATIVE_KV.search(line):
            self.negative_kv = True

    @staticmethod
    def _port_failure(line: str) -> Verdict | None:
        if not _PORT.search(line) or _PORT_RETRY.search(line):
            return None
        return Verdict(
            Outcome.PORT_IN_USE,
            message="The port is already in use by another process; choose another port.",
            decisive_line=line,
        )

    def _failure_in(self, line: str) -> Verdict | None:
        if m := _MAMBA_BLOCKS.search(line):
            wanted, fits = int(m.group(1)), int(m.group(2))
            return Verdict(
                Outcome.MAX_NUM_SEQS_TOO_HIGH,
                max_num_seqs=fits,
                message=f"max_num_seqs {wanted:,} is more than the {fits:,} Mamba cache blocks this hybrid "
                f"model has room for; restarting with --max-num-seqs {fits:,}",
                decisive_line=line,
            )
        if m := _V1_REFUSAL.search(line):
            requested, needed, available = int(m.group(1)), float(m.group(2)), float(m.group(3))
            if e := _ESTIMATE.search(line):
                fits = int(e.group(1))
            elif needed > 0 and available > 0:
                # No number printed (0.7.0-0.9.0.1): KV memory is linear in the length for
                # full-attention models, so the ratio of the GiB figures gives the length.
                # The figures are rounded to 0.01 GiB; take the pessimistic end of that rounding.
                fits = round_down(int(requested * max(available - 0.005, 0) / (needed + 0.005)))
            else:
                fits = None
            if fits == 0:
                fits = None
            return Verdict(
                Outcome.CONTEXT_TOO_LONG,
                max_model_len=fits,
                requested_len=requested,
                message=f"KV cache too small for {_fmt(requested)} tokens; vLLM says {_fmt(fits)} fit"
                if fits
                else f"KV cache too small for {_fmt(requested)} tokens ({available:g} GiB free for "
                f"{needed:g} GiB needed)",
                decisive_line=line,
            )
        if m := _V0_REFUSAL.search(line):
            requested, fits = int(m.group(1)), int(m.group(2))
            return Verdict(
                Outcome.CONTEXT_TOO_LONG,
                max_model_len=fits,
                requested_len=requested,
                kv_capacity_tokens=fits,
                message=f"KV cache too small for {_fmt(requested)} tokens; vLLM says {_fmt(fits)} fit",
                decisive_line=line,
            )
        if m := _LENGTH_ABOVE.search(line):
            requested, key, derived = int(m.group(1)), m.group(2), int(float(m.group(3)))
            return Verdict(
                Outcome.LENGTH_ABOVE_MODEL,
                requested_len=requested,
                derived_max_model_len=derived,
                message=f"{_fmt(requested)} tokens is more than the model's own length ({key}="
                f"{_fmt(derived)}); lower the context or turn on YaRN",
                decisive_line=line,
            )
        if m := _GPU_BUSY.search(line):
            return Verdict(
                Outcome.GPU_BUSY,
                message=f"GPU busy: only {m.group(1)} of {m.group(2)} GiB free at start; other processes "
                "hold GPU memory (or lower gpu_memory_utilization)",
                decisive_line=line,
            )
        if port := self._port_failure(line):
            return port
        for pattern, outcome, message in _FIXED_FAILURES:
            if pattern.search(line):
                return Verdict(outcome, message=message, decisive_line=line)
        return None

    def capacity(self) -> int | None:
        if self.kv_tokens is not None:
            return self.kv_tokens
        if self.blocks is not None:
            return self.blocks * self.block_size
        if self.concurrency is not None:
            return int(self.concurrency[0] * self.concurrency[1])
        return None

    def verdict(self, exit_code: int | None = None) -> Verdict:
        """The verdict over everything fed so far (also for a process that has exited)."""
        base = {
            "vllm_version": self.vllm_version,
            "max_concurrency": self.concurrency[1] if self.concurrency else None,
            "exit_code": exit_code,
            "tail": list(self.tail),
        }
        if self._failure is not None:
            failure = self._failure
            values = asdict(failure) | {k: v for k, v in base.items() if v is not None}
            values["outcome"] = failure.outcome
            if values.get("requested_len") is None:
                values["requested_len"] = self.requested_len or self.using_len
            if values.get("kv_capacity_tokens") is None and failure.outcome == Outcome.CONTEXT_TOO_LONG:
                values["kv_capacity_tokens"] = self.capacity()
            return Verdict(**values)
        auto_len = self.auto_reduced[1] if self.auto_reduced else None
        per_request = self.concurrency[0] if self.concurrency else None
        configured = auto_len or self.auto_full or self.using_len or self.requested_len or per_request
        if self._ready_line is not None:
            capacity = self.capacity()
            text = f"Ready with a context of {_fmt(configured)} tokens" if configured else "Ready"
            if capacity:
                text += f"; KV cache holds {_fmt(capacity)} tokens"
            if self.auto_reduced:
                text += f" (auto-fit reduced {_fmt(self.auto_reduced[0])} to {_fmt(auto_len)})"
            return Verdict(
                Outcome.READY,
                max_model_len=configured,
                requested_len=self.using_len or self.requested_len,
                kv_capacity_tokens=capacity,
                auto_fit_len=auto_len,
                message=text,
                decisive_line=self._ready_line,
                **base,
            )
        if self.auto_reduced:
            return Verdict(
                Outcome.AUTO_FIT,
                max_model_len=auto_len,
                requested_len=self.auto_reduced[0],
                kv_capacity_tokens=self.capacity(),
                auto_fit_len=auto_len,
                message=f"Auto-fit reduced {_fmt(self.auto_reduced[0])} to {_fmt(auto_len)} tokens, "
                "but the server did not become ready",
                **base,
            )
        if self.negative_kv:
            return Verdict(
                Outcome.WEIGHTS_DO_NOT_FIT,
                message="No GPU memory left for the KV cache after loading the weights",
                **base,
            )
        if self._fatal_line is not None:
            message = f"vLLM failed to start: {self._fatal_line.strip()}"
        elif exit_code is not None:
            message = f"vLLM exited with code {exit_code} before it was ready"
        else:
            message = "vLLM did not say why it stopped"
        return Verdict(
            Outcome.CRASHED,
            requested_len=self.using_len or self.requested_len,
            message=message,
            decisive_line=self._fatal_line,
            **base,
        )


def classify(lines: Iterable[str] | str, *, exit_code: int | None = None) -> Verdict:
    """One verdict for a whole log (a string or an iterable of lines)."""
    watcher = LogWatcher()
    if isinstance(lines, str):
        lines = lines.splitlines()
    for line in lines:
        watcher.feed(line)
    return watcher.verdict(exit_code)


def classify_file(path: str) -> Verdict:
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    # Corpus files start with a comment saying where the log came from; it is not vLLM output.
    if lines and lines[0].startswith("# source:"):
        lines = lines[1:]
    return classify(lines)


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m launches.vllm.logs FILE...", file=sys.stderr)
        return 2
    for path in paths:
        verdict = classify_file(path)
        record = {"file": path} | verdict.to_dict()
        del record["tail"]
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
