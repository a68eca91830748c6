"""Validation of operator-supplied extra vLLM arguments.

The site builds the parts of the command line that drive the launch policy itself; an extra argument
that repeats one of them would silently fight the policy (two ``--max-model-len`` values, a second
``--port``), so it is refused with a message that names the flag and the field to use instead.
"""

from __future__ import annotations

import shlex

# flag -> the launch-config field that controls it (for the error message)
MANAGED_FLAGS: dict[str, str] = {
    "--max-model-len": "the context cap (the launcher chooses the length)",
    "--port": "port",
    "--host": "the host's bind address",
    "--model": "model",
    "--gpu-memory-utilization": "gpu_memory_utilization",
    "--dtype": "dtype",
    "--quantization": "quantization",
    "-q": "quantization",
    "--kv-cache-dtype": "kv_cache_dtype",
    "--tensor-parallel-size": "tensor_parallel_size",
    "-tp": "tensor_parallel_size",
    "--max-num-batched-tokens": "max_num_batched_tokens",
    "--enforce-eager": "enforce_eager",
    "--rope-scaling": "the YaRN settings",
    "--hf-overrides": "the YaRN settings",
    "--served-model-name": "served model name",
    "--revision": "the model's revision",
    "--api-key": "a server secret, which must not be stored in a launch config",
}


class ExtraArgsError(ValueError):
    """Extra vLLM arguments that cannot be used as given."""


def _flag_name(token: str) -> str:
    return token.split("=", 1)[0]


def parse_extra_args(text: str) -> list[str]:
    """Split an operator's extra arguments into an argv list and refuse managed flags.

    The text is split like a POSIX shell would split it, but it is never run by a shell: the result
    is appended to an argv list.
    """
    try:
        tokens = shlex.split(text or "")
    except ValueError as exc:
        raise ExtraArgsError(f"Extra arguments could not be split ({exc}); check the quotes.") from exc
    for token in tokens:
        if not token.startswith("-"):
            continue
        name = _flag_name(token)
        if name in MANAGED_FLAGS:
            raise ExtraArgsError(
                f"{name} is managed by the launcher; set {MANAGED_FLAGS[name]} instead of passing it "
                "in the extra arguments."
            )
        # vLLM also accepts the underscore spelling of every flag.
        dashed = name.replace("_", "-")
        if dashed != name and dashed in MANAGED_FLAGS:
            raise ExtraArgsError(
                f"{name} is managed by the launcher; set {MANAGED_FLAGS[dashed]} instead of passing it "
                "in the extra arguments."
            )
    return tokens
