"""The exact vLLM command line and environment for one start.

Everything is an argv list: JSON for ``--hf-overrides`` travels as one element and no shell ever
sees it. The YaRN flags follow the host's vLLM version (see ``versions.yarn_flag_form``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from launches.contract import MemoryOptions
from launches.vllm.flags import ExtraArgsError, parse_extra_args
from launches.vllm.versions import (
    VllmVersionError,
    supports_auto_max_model_len,
    uses_legacy_rope_type_key,
    yarn_flag_form,
)


class ArgvError(ValueError):
    """Launch options that cannot be turned into a vLLM command line."""


@dataclass(frozen=True, kw_only=True)
class ServeOptions(MemoryOptions):
    """One ``vllm serve`` start's options: the memory options (``contract.MemoryOptions``) and the rest."""

    model: str
    revision: str | None = None
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    # Learned for hybrid models from vLLM's Mamba-cache refusal; after the extra args, so it wins.
    max_num_seqs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["extra_args"] = list(self.extra_args)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServeOptions:
        values = dict(data)
        values["extra_args"] = tuple(values.get("extra_args") or ())
        return cls(**values)


@dataclass(frozen=True)
class YarnSetting:
    factor: float
    original_max_position_embeddings: int
    rope_theta: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.factor) and self.factor != 1.0

    @property
    def extended_length(self) -> int:
        return int(self.original_max_position_embeddings * self.factor)


def _number(value: float) -> float | int:
    # JSON "1000000" reads better than "1000000.0" and vLLM accepts both.
    return int(value) if float(value).is_integer() else value


def yarn_args(yarn: YarnSetting, vllm_version: str) -> list[str]:
    """The flags that switch YaRN on for this vLLM version (empty for factor 1.0)."""
    if not yarn.active:
        return []
    try:
        form = yarn_flag_form(vllm_version)
    except VllmVersionError as exc:
        raise ArgvError(str(exc)) from exc
    type_key = "type" if uses_legacy_rope_type_key(vllm_version) else "rope_type"
    scaling: dict[str, Any] = {
        type_key: "yarn",
        "factor": float(yarn.factor),
        "original_max_position_embeddings": int(yarn.original_max_position_embeddings),
    }
    if form == "rope_scaling_flag":
        return ["--rope-scaling", json.dumps(scaling)]
    if form == "hf_overrides_rope_scaling":
        return ["--hf-overrides", json.dumps({"rope_scaling": scaling})]
    parameters = dict(scaling)
    if yarn.rope_theta is not None:
        parameters["rope_theta"] = _number(yarn.rope_theta)
    overrides: dict[str, Any] = {}
    if form == "hf_overrides_rope_parameters_with_max_pos":
        # From 0.30.0 vLLM takes the length from max_position_embeddings as is.
        overrides["max_position_embeddings"] = yarn.extended_length
    overrides["rope_parameters"] = parameters
    return ["--hf-overrides", json.dumps(overrides)]


def checked_extra_args(extra_args: tuple[str, ...] | list[str]) -> list[str]:
    """Re-check already split extra arguments: none may repeat a flag the launcher manages."""
    try:
        return parse_extra_args(shlex.join(list(extra_args)))
    except ExtraArgsError as exc:
        raise ArgvError(str(exc)) from exc


def build_argv(
    base_command: list[str],
    options: ServeOptions,
    *,
    max_model_len: int | str,
    vllm_version: str,
    yarn: YarnSetting | None = None,
) -> list[str]:
    if not base_command:
        raise ArgvError("The vLLM command is empty; configure e.g. 'vllm serve'.")
    if isinstance(max_model_len, str):
        if max_model_len != "auto":
            raise ArgvError(f"max_model_len must be a number or 'auto', not {max_model_len!r}.")
        if not supports_auto_max_model_len(vllm_version):
            raise ArgvError(
                f"vLLM {vllm_version} cannot fit the context by itself ('--max-model-len auto' needs "
                "0.14.0 or later); give a number."
            )
        length = "auto"
    else:
        if int(max_model_len) <= 0:
            raise ArgvError(f"max_model_len must be positive, not {max_model_len}.")
        length = str(int(max_model_len))

    argv = list(base_command)
    if base_command[-1] == "serve":
        argv.append(options.model)
    else:
        argv += ["--model", options.model]
    if options.revision:
        argv += ["--revision", options.revision]
    if options.served_model_name:
        argv += ["--served-model-name", options.served_model_name]
    argv += ["--host", options.host, "--port", str(int(options.port))]
    argv += ["--max-model-len", length]
    argv += ["--gpu-memory-utilization", f"{options.gpu_memory_utilization:g}"]
    argv += ["--dtype", options.dtype]
    if options.quantization:
        argv += ["--quantization", options.quantization]
    if options.kv_cache_dtype and options.kv_cache_dtype != "auto":
        argv += ["--kv-cache-dtype", options.kv_cache_dtype]
    if options.tensor_parallel_size != 1:
        argv += ["--tensor-parallel-size", str(int(options.tensor_parallel_size))]
    if options.max_num_batched_tokens:
        argv += ["--max-num-batched-tokens", str(int(options.max_num_batched_tokens))]
    if options.enforce_eager:
        argv.append("--enforce-eager")
    if yarn is not None:
        argv += yarn_args(yarn, vllm_version)
    argv += checked_extra_args(options.extra_args)
    if options.max_num_seqs:
        argv += ["--max-num-seqs", str(int(options.max_num_seqs))]
    return argv


def build_env(
    gpu_uuids: list[str] | None,
    base_env: Mapping[str, str] | None = None,
    hf_token: str | None = None,
) -> dict[str, str]:
    env = dict(base_env or {})
    if gpu_uuids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_uuids)
    # Plain text on both streams keeps the log parser's job to the words vLLM prints.
    env["NO_COLOR"] = "1"
    env["VLLM_LOGGING_COLOR"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    if hf_token:
        env["HF_TOKEN"] = hf_token
    return env
