"""The memory fingerprint: the launch options that change how many tokens fit in the KV cache.

Plain Python, no Django: the GPU worker and the site compute the same key. YaRN is deliberately not
part of it: it changes positions, not the KV cache's size. Extra vLLM arguments are part of it unless
they are memory-neutral (``launches.vllm.flags.MEMORY_NEUTRAL_FLAGS``): ``--max-num-seqs``,
``--block-size``, ``--kv-cache-memory``, ``--cpu-offload-gb``, compilation options and the like change
how many tokens fit, so a limit learned with them must not be applied without them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from launches.contract import MEMORY_OPTION_FIELDS, MemoryOptions
from launches.vllm.flags import memory_relevant_args

FINGERPRINT_FIELDS = (*MEMORY_OPTION_FIELDS, "vllm_version")


def _normalise(name: str, value: Any) -> Any:
    if name == "gpu_memory_utilization":
        return round(float(value), 4)
    if name in {"tensor_parallel_size", "max_num_batched_tokens"}:
        return int(value) if value not in (None, "") else None
    if name == "enforce_eager":
        return bool(value)
    if value in (None, ""):
        return None
    return str(value)


def memory_fingerprint(options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return (hex digest, the normalised fields it was computed from).

    Every field of FINGERPRINT_FIELDS must be present in ``options`` (None is a value); a missing one
    is a programming error, not a default, because a silently different key would hide a limit.
    ``options["extra_args"]`` (an argv list, optional) adds its memory-relevant part; without any,
    the key is the one computed before extra arguments counted, so limits learned then still apply.
    """
    missing = [name for name in FINGERPRINT_FIELDS if name not in options]
    if missing:
        raise KeyError(f"memory fingerprint needs {', '.join(missing)}")
    fields = {name: _normalise(name, options[name]) for name in FINGERPRINT_FIELDS}
    if extra := memory_relevant_args(options.get("extra_args") or ()):
        fields["extra_args"] = extra
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    return digest, fields


def describe_fingerprint(fields: Mapping[str, Any]) -> str:
    """The options of a fingerprint's fields (``memory_fingerprint``'s second value) that differ from
    vLLM's defaults (``MemoryOptions``), as "quantization awq, enforce_eager", with the memory-relevant
    extra arguments last; "default options" when none differs. The vLLM version is left out: it is
    shown on its own. What tells two limits of one GPU profile × model apart."""
    defaults = {name: _normalise(name, value) for name, value in MemoryOptions().to_dict().items()}
    parts = []
    for name in MEMORY_OPTION_FIELDS:
        value = _normalise(name, fields.get(name, defaults[name]))
        if value == defaults[name]:
            continue
        parts.append(name if value is True else f"{name} {value if value is not None else 'none'}")
    if extra := fields.get("extra_args"):
        parts.append(" ".join(str(arg) for arg in extra))
    return ", ".join(parts) or "default options"
