"""Model facts read from a model's ``config.json``, derived the way vLLM derives them.

The launcher needs the native context before it starts vLLM (it is the first length it asks for)
and the KV-cache bytes per token (the stand-in uses them to simulate a GPU). Both must match what
vLLM itself computes, so the length key scan, the ``text_config`` rule for multimodal models and
the RoPE-scaling multiplication follow vLLM's ``_get_and_verify_max_len``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

# Order matters only for ties; vLLM keeps the smallest value over all keys present.
POSSIBLE_LENGTH_KEYS: tuple[str, ...] = (
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

# RoPE types whose factor vLLM does not multiply into the derived length.
_UNSCALED_ROPE_TYPES = frozenset({"su", "longrope", "llama3", "mrope"})

_DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "float": 4,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "fp8_inc": 1,
    "fp8_ds_mla": 1,
}


class ModelConfigError(Exception):
    """A model's config.json cannot be found, read, or does not name a context length."""


@dataclass(frozen=True)
class ModelFacts:
    """What the launcher knows about a model from its config.json (and tokenizer_config.json)."""

    model: str
    revision: str | None
    native_context: int
    max_len_key: str
    base_context: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    num_attention_heads: int
    hidden_size: int
    dtype: str | None
    rope_scaling: dict[str, Any] | None = None
    architectures: tuple[str, ...] = ()
    intermediate_size: int | None = None
    vocab_size: int | None = None
    tie_word_embeddings: bool = False
    rope_theta: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def kv_bytes_per_token(self, dtype: str | None = None) -> int:
        """Bytes of K and V cache one token needs across all layers.

        ``dtype`` is a vLLM ``--kv-cache-dtype`` or ``--dtype`` value; ``None`` or ``"auto"`` means the
        model's own dtype.
        """
        name = (dtype or "auto").lower()
        if name == "auto":
            name = (self.dtype or "bfloat16").lower()
        size = _DTYPE_BYTES.get(name.removeprefix("torch."), 2)
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * size

    def estimated_parameters(self) -> int:
        """A rough parameter count for a dense decoder, used only to simulate weight memory."""
        hidden = self.hidden_size
        inter = self.intermediate_size or 4 * hidden
        vocab = self.vocab_size or 32000
        q_and_o = 2 * hidden * self.num_attention_heads * self.head_dim
        k_and_v = 2 * hidden * self.num_kv_heads * self.head_dim
        per_layer = q_and_o + k_and_v + 3 * hidden * inter
        embeddings = vocab * hidden * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embeddings

    def context_for_version(self, vllm_version: str | None) -> int:
        """The length vLLM derives when ``--max-model-len`` is omitted.

        vLLM 0.30.0 stopped multiplying YaRN factors into the length, so there the config's own
        length is used for YaRN models.
        """
        from launches.vllm.versions import parse_version

        rope_type = _rope_type(self.rope_scaling)
        if vllm_version and rope_type == "yarn" and parse_version(vllm_version) >= parse_version("0.30.0"):
            return self.base_context
        return self.native_context

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["architectures"] = list(self.architectures)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFacts:
        values = dict(data)
        values["architectures"] = tuple(values.get("architectures") or ())
        return cls(**values)


def _rope_type(rope: dict[str, Any] | None) -> str | None:
    if not rope:
        return None
    return rope.get("rope_type") or rope.get("type")


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    thinker = config.get("thinker_config")
    if isinstance(thinker, dict) and isinstance(thinker.get("text_config"), dict):
        return thinker["text_config"]
    text = config.get("text_config")
    if isinstance(text, dict):
        return text
    return config


def derive_context(
    config: dict[str, Any], tokenizer_config: dict[str, Any] | None = None
) -> tuple[int, str, int]:
    """Return (derived length, key it came from, length before RoPE scaling) as vLLM < 0.30 does."""
    text = _text_config(config)
    best: tuple[float, str] | None = None
    for key in POSSIBLE_LENGTH_KEYS:
        value = text.get(key)
        usable = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        if usable and (best is None or value < best[0]):
            best = (value, key)
    override = text.get("model_max_length")
    if isinstance(override, int | float) and not isinstance(override, bool) and override > 0:
        best = (override, "model_max_length")
    if best is None:
        raise ModelConfigError(
            "config.json names no context length (none of "
            f"{', '.join(POSSIBLE_LENGTH_KEYS)}); set a context cap for this model explicitly."
        )
    derived, key = best
    if tokenizer_config:
        tok_max = tokenizer_config.get("model_max_length")
        if isinstance(tok_max, int | float) and not isinstance(tok_max, bool) and 0 < tok_max < derived:
            derived = tok_max
    base = int(derived)
    rope = text.get("rope_scaling") or text.get("rope_parameters")
    if isinstance(rope, dict):
        rope_type = _rope_type(rope)
        factor = rope.get("factor")
        if rope_type not in _UNSCALED_ROPE_TYPES and isinstance(factor, int | float) and factor > 0:
            if rope_type == "yarn" and isinstance(rope.get("original_max_position_embeddings"), int):
                derived = rope["original_max_position_embeddings"]
            derived = derived * factor
    return int(derived), key, base


def facts_from_config(
    config: dict[str, Any],
    *,
    model: str,
    revision: str | None = None,
    tokenizer_config: dict[str, Any] | None = None,
) -> ModelFacts:
    text = _text_config(config)
    native, key, base = derive_context(config, tokenizer_config)
    try:
        heads = int(text["num_attention_heads"])
        hidden = int(text["hidden_size"])
        layers = int(text.get("num_hidden_layers") or text["n_layer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelConfigError(
            f"config.json of {model} lacks {exc} (layers, attention heads or hidden size); "
            "it does not look like a decoder model vLLM can serve."
        ) from exc
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or hidden // heads)
    dtype = text.get("torch_dtype") or text.get("dtype") or config.get("torch_dtype") or config.get("dtype")
    rope = text.get("rope_scaling") or text.get("rope_parameters")
    theta = text.get("rope_theta")
    if theta is None and isinstance(rope, dict):
        theta = rope.get("rope_theta")
    return ModelFacts(
        model=model,
        revision=revision,
        native_context=native,
        max_len_key=key,
        base_context=base,
        num_layers=layers,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        num_attention_heads=heads,
        hidden_size=hidden,
        dtype=str(dtype) if dtype else None,
        rope_scaling=dict(rope) if isinstance(rope, dict) else None,
        architectures=tuple(config.get("architectures") or ()),
        intermediate_size=text.get("intermediate_size"),
        vocab_size=text.get("vocab_size") or config.get("vocab_size"),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=float(theta) if isinstance(theta, int | float) else None,
    )


def _load_json(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise ModelConfigError(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}); fix or re-download the file."
        ) from exc
    except OSError as exc:
        raise ModelConfigError(f"{what} cannot be read ({exc.strerror}).") from exc
    if not isinstance(data, dict):
        raise ModelConfigError(f"{what} does not hold a JSON object; fix or re-download the file.")
    return data


def _hub_file(
    model: str,
    filename: str,
    revision: str | None,
    token: str | None,
    local_files_only: bool,
    cache_dir: str | None,
) -> str:
    # Imported here so that reading a local directory does not need huggingface_hub at all.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{model}" + (f" at revision {revision}" if revision else "")
    kwargs: dict[str, Any] = {"revision": revision, "cache_dir": cache_dir, "token": token}
    try:
        return hf_hub_download(model, filename, local_files_only=True, **kwargs)
    except HFValidationError as exc:
        raise ModelConfigError(
            f"{model!r} is neither a local directory nor a valid Hugging Face repo id; "
            "give a path to a model directory or an id like 'org/name'."
        ) from exc
    except (LocalEntryNotFoundError, EntryNotFoundError, FileNotFoundError):
        if local_files_only:
            raise ModelConfigError(
                f"{filename} of {where} is not in the Hugging Face cache and downloading is not "
                "allowed here; download the model on this host first or allow the hub."
            ) from None
    try:
        return hf_hub_download(model, filename, local_files_only=False, **kwargs)
    except GatedRepoError as exc:
        raise ModelConfigError(
            f"{model} is a gated repository; accept its licence on huggingface.co and give a token "
            "that has access."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelConfigError(
            f"Hugging Face repository {model} does not exist or is private; check the id or give a "
            "token that can read it."
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelConfigError(f"{model} has no revision {revision!r}; check the revision.") from exc
    except LocalEntryNotFoundError as exc:
        raise ModelConfigError(
            f"{filename} of {where} is not cached and the hub cannot be reached (offline mode or "
            "no network); download the model on this host first."
        ) from exc
    except EntryNotFoundError as exc:
        raise ModelConfigError(
            f"{where} has no {filename}; it is not a Transformers model vLLM can serve."
        ) from exc
    except OSError as exc:
        raise ModelConfigError(f"{filename} of {where} could not be downloaded ({exc}).") from exc


def read_model_facts(
    model: str,
    revision: str | None = None,
    *,
    token: str | None = None,
    local_files_only: bool = False,
    cache_dir: str | None = None,
) -> ModelFacts:
    """Read config.json (and tokenizer_config.json when present) of a local model or a hub repo.

    The Hugging Face cache is tried first; the hub is asked only when the file is not cached and
    ``local_files_only`` is false.
    """
    tokenizer_config: dict[str, Any] | None = None
    if os.path.isdir(model):
        config_path = os.path.join(model, "config.json")
        if not os.path.isfile(config_path):
            raise ModelConfigError(
                f"The model directory {model} has no config.json; point to the directory that holds "
                "the model's config.json and weights."
            )
        config = _load_json(config_path, f"config.json of {model}")
        tok_path = os.path.join(model, "tokenizer_config.json")
        if os.path.isfile(tok_path):
            tokenizer_config = _safe_tokenizer_config(tok_path)
    else:
        config_path = _hub_file(model, "config.json", revision, token, local_files_only, cache_dir)
        config = _load_json(config_path, f"config.json of {model}")
        tok_path = os.path.join(os.path.dirname(config_path), "tokenizer_config.json")
        if os.path.isfile(tok_path):
            tokenizer_config = _safe_tokenizer_config(tok_path)
    return facts_from_config(config, model=model, revision=revision, tokenizer_config=tokenizer_config)


def _safe_tokenizer_config(path: str) -> dict[str, Any] | None:
    # A broken tokenizer config must not stop the launch: vLLM would fail on it with its own words.
    try:
        return _load_json(path, "tokenizer_config.json")
    except ModelConfigError:
        return None
