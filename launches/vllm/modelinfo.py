"""Model facts read from a model's ``config.json``, derived the way vLLM derives them.

vLLM reads ``config.json`` through Transformers' config classes (``AutoConfig``): class defaults,
attribute maps (``n_head`` -> ``num_attention_heads``) and the text part of a multimodal config
(``get_text_config()``) fill what the file leaves out. This module does the same, falling back to
the raw JSON only for architectures the installed Transformers does not know, and then applies
vLLM's own length rules for the vLLM version at hand:

* vLLM 0.32.0, ``vllm/transformers_utils/model_arch_config_convertor.py``
  (``derive_max_model_len_and_key``): the smallest of the known length keys of the text config;
  ``model_max_length`` in the config overrides them all.
* vLLM 0.32.0, ``vllm/config/model.py`` (``_get_and_verify_max_len``): RoPE factors multiply the
  length except for ``su``/``longrope``/``llama3``/``yarn``/``deepseek_yarn``/
  ``deepseek_llama_scaling``; Gemma 3's length is never multiplied (it is already scaled);
  for LongRoPE the length vLLM starts at without ``--max-model-len`` (and where ``auto`` begins) is
  ``original_max_position_embeddings`` while the derived length is still accepted; the tokenizer's
  ``model_max_length`` counts only for pooling models with absolute position embeddings
  (``ModelConfig.get_and_verify_max_len``); a config without any length key is served at 2,048.
* Up to vLLM 0.29.x (e.g. 0.11.0, same file): YaRN's length is
  ``original_max_position_embeddings x factor``, every other non-``su``/``longrope``/``llama3``
  factor multiplies the length.
* vLLM 0.32.0, ``vllm/transformers_utils/config.py`` (``get_hf_text_config``,
  ``iter_rope_parameters``) and ``model_arch_config_convertor.py`` (``get_head_size``,
  ``get_total_num_kv_heads``, ``is_deepseek_mla``) for heads, head size and MLA.

``native_context`` is the longest length vLLM accepts; ``default_context`` is the length vLLM starts
at when no ``--max-model-len`` is given (and where ``--max-model-len auto`` starts fitting).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

# vLLM 0.32.0 model_arch_config_convertor.py: the keys a length may hide under. vLLM keeps the
# smallest value over all keys present (order matters only for ties).
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
# vLLM 0.32.0 config/model.py: the length vLLM assumes when the config names none.
DEFAULT_WHEN_NO_LENGTH = 2048
# The version whose rules apply when none is given: the newest the project knows.
NEWEST_RULES = "0.32.0"

# RoPE types whose factor vLLM does not multiply into the length, before and from 0.30.0.
_UNSCALED_BEFORE_0_30 = frozenset({"su", "longrope", "llama3"})
_UNSCALED_FROM_0_30 = _UNSCALED_BEFORE_0_30 | {"yarn", "deepseek_yarn", "deepseek_llama_scaling"}

# vLLM 0.32.0 model_arch_config_convertor.py (is_deepseek_mla): model types with a latent KV cache.
_MLA_MODEL_TYPES = frozenset(
    {
        "axk1",
        "deepseek_v2",
        "deepseek_v3",
        "deepseek_v32",
        "deepseek_v4",
        "deepseek_v41",
        "dots3_note",
        "deepseek_mtp",
        "k3_dspark",
        "glm5_next",
        "glm5_next_text",
        "glm_moe_dsa",
        "glm4_moe_lite",
        "glm4_moe_lite_mtp",
        "kimi_k2",
        "kimi_linear",
        "longcat_flash",
        "pangu_ultra_moe",
        "pangu_ultra_moe_mtp",
        "bailing_hybrid",
        "bailing_hybrid_mtp",
        "bailing_hybrid_v3_mtp",
        "hy_v4",
        "hy_v4_mtp",
    }
)
# Models whose layers mix attention with state-space or linear-attention layers (vLLM's
# ``IsHybrid`` models): their KV capacity in tokens is not the length they serve.
_HYBRID_MODEL_TYPES = frozenset(
    {
        "jamba",
        "bamba",
        "nemotron_h",
        "falcon_h1",
        "zamba",
        "zamba2",
        "granitemoehybrid",
        "qwen3_next",
        "qwen3_5",
        "qwen3_5_moe",
        "plamo2",
        "lfm2",
        "lfm2_moe",
        "minimax",
        "minimax_text_01",
        "kimi_linear",
    }
)
_MAMBA_MODEL_TYPES = frozenset({"mamba", "mamba2", "falcon_mamba"})
_ATTENTION_LAYER_TYPES = frozenset({"full_attention", "attention", "sliding_attention", "chunked_attention"})
# vLLM 0.32.0 model_arch_config_convertor.py (get_total_num_kv_heads), in vLLM's order.
_KV_HEAD_KEYS = (
    "n_head_kv",
    "num_kv_heads",
    "num_key_value_heads",
    "multi_query_group_num",
    "num_attention_groups",
)
# vLLM's pooling runner is chosen for these architecture endings (encoders, classifiers).
_POOLING_SUFFIXES = ("Model", "ForSequenceClassification", "ForTokenClassification", "ForEmbedding")

ATTENTION_KINDS = ("full", "sliding", "mla", "hybrid", "mamba")

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

log = logging.getLogger(__name__)


class ModelConfigError(Exception):
    """A model's config.json cannot be found or read, or does not describe a model vLLM can serve."""


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _rope_type(rope: dict[str, Any] | None) -> str | None:
    if not rope:
        return None
    kind = rope.get("rope_type") or rope.get("type")
    # vLLM patches the legacy names before reading them (config.py patch_legacy_rope_type).
    return {"su": "longrope", "mrope": "default"}.get(kind, kind)


def context_lengths(
    base_context: int,
    rope: list[dict[str, Any]],
    *,
    model_type: str,
    original_max_position_embeddings: int | None,
    vllm_version: str | None = None,
    sliding_window_cap: int | None = None,
) -> tuple[int, int]:
    """(longest length vLLM accepts, length vLLM starts at without ``--max-model-len``), in tokens.

    ``base_context`` is the length read from the config's keys (after the tokenizer rule), ``rope``
    the RoPE parameter dicts (one per layer type). The rules are those of ``vllm_version`` (the
    newest known when None), from vLLM's ``config/model.py`` ``_get_and_verify_max_len``.
    ``sliding_window_cap`` is the model's sliding window when ``--disable-sliding-window`` is given:
    vLLM then never goes beyond it.
    Raises ``VllmVersionError`` for a version that is not a version number.
    """
    from launches.vllm.versions import yarn_multiplies_length

    old_yarn = yarn_multiplies_length(vllm_version or NEWEST_RULES)
    unscaled = _UNSCALED_BEFORE_0_30 if old_yarn else _UNSCALED_FROM_0_30
    derived: float = base_context
    if sliding_window_cap and sliding_window_cap < derived:
        derived = sliding_window_cap
    if rope and "gemma3" not in model_type:
        factor = 1.0
        for params in rope:
            kind = _rope_type(params)
            if kind in unscaled or not _positive(params.get("factor")):
                continue
            factor = float(params["factor"])
            if old_yarn and kind == "yarn" and _positive(params.get("original_max_position_embeddings")):
                derived = params["original_max_position_embeddings"]
        derived *= factor
    native = int(derived)
    default = native
    if any(_rope_type(params) == "longrope" for params in rope):
        original = original_max_position_embeddings
        default = int(original) if _positive(original) else native
    return native, default


@dataclass(frozen=True)
class ModelFacts:
    """What the launcher knows about a model from its config.json (and tokenizer_config.json).

    Lengths are in tokens; ``native_context`` and ``default_context`` follow the rules of
    ``rules_version`` (see ``context_for_version`` for another version).
    """

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
    default_context: int | None = None
    model_type: str = ""
    attention_kind: str = "full"
    attention_layers: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    original_max_position_embeddings: int | None = None
    sliding_window: int | None = None
    rope_parameters: list[dict[str, Any]] = field(default_factory=list)
    rules_version: str = NEWEST_RULES
    read_with: str = "transformers"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_hybrid(self) -> bool:
        """State-space or linear-attention layers: the logged KV capacity is no length limit."""
        return self.attention_kind in ("hybrid", "mamba")

    def kv_bytes_per_token(self, dtype: str | None = None) -> int:
        """Bytes of KV cache one token needs across all attention layers.

        ``dtype`` is a vLLM ``--kv-cache-dtype`` or ``--dtype`` value; ``None`` or ``"auto"`` means the
        model's own dtype. MLA keeps one latent vector (``kv_lora_rank + qk_rope_head_dim``) per layer;
        state-space layers keep per-sequence state, not per-token cache (0 for a pure Mamba model).
        """
        name = (dtype or "auto").lower()
        if name == "auto":
            name = (self.dtype or "bfloat16").lower()
        size = _DTYPE_BYTES.get(name.removeprefix("torch."), 2)
        layers = self.num_layers if self.attention_layers is None else self.attention_layers
        if self.attention_kind == "mla" and self.kv_lora_rank:
            return layers * (self.kv_lora_rank + (self.qk_rope_head_dim or 0)) * size
        return 2 * layers * self.num_kv_heads * self.head_dim * size

    def estimated_parameters(self) -> int:
        """A rough parameter count for a dense decoder, used only to simulate weight memory."""
        hidden = self.hidden_size
        inter = self.intermediate_size or 4 * hidden
        vocab = self.vocab_size or 32000
        # An MLA head_dim is the cached latent width, not a projection's; use the hidden split instead.
        head_dim = hidden // self.num_attention_heads if self.attention_kind == "mla" else self.head_dim
        q_and_o = 2 * hidden * self.num_attention_heads * head_dim
        k_and_v = 2 * hidden * self.num_kv_heads * head_dim
        per_layer = q_and_o + k_and_v + 3 * hidden * inter
        embeddings = vocab * hidden * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embeddings

    def lengths_for_version(
        self, vllm_version: str | None, *, disable_sliding_window: bool = False
    ) -> tuple[int, int]:
        """(native_context, default_context) under the rules of ``vllm_version`` (newest when None);
        ``disable_sliding_window`` as vLLM's ``--disable-sliding-window`` caps both at the window."""
        return context_lengths(
            self.base_context,
            self.rope_parameters,
            model_type=self.model_type,
            original_max_position_embeddings=self.original_max_position_embeddings,
            vllm_version=vllm_version,
            sliding_window_cap=self.sliding_window if disable_sliding_window else None,
        )

    def context_for_version(self, vllm_version: str | None) -> int:
        """The longest length ``vllm_version`` accepts for this model (tokens)."""
        return self.lengths_for_version(vllm_version)[0]

    def default_for_version(self, vllm_version: str | None) -> int:
        """The length ``vllm_version`` starts at without ``--max-model-len`` (tokens)."""
        return self.lengths_for_version(vllm_version)[1]

    def summary(self) -> dict[str, Any]:
        """The facts an operator reads: lengths, shape, dtype, attention kind, KV bytes per token."""
        return {
            "model": self.model,
            "revision": self.revision,
            "vllm_version": self.rules_version,
            "native_context": self.native_context,
            "default_context": self.default_context,
            "max_len_key": self.max_len_key,
            "num_layers": self.num_layers,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "dtype": self.dtype,
            "attention_kind": self.attention_kind,
            "kv_bytes_per_token": self.kv_bytes_per_token(),
            "architectures": list(self.architectures),
            "read_with": self.read_with,
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["architectures"] = list(self.architectures)
        data["kv_bytes_per_token"] = self.kv_bytes_per_token()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFacts:
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in known}
        values["architectures"] = tuple(values.get("architectures") or ())
        return cls(**values)


class _RawConfig:
    """Attribute access over a config dict, for architectures Transformers does not know."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def get_text_config(self) -> _RawConfig:
        for outer, inner in (("thinker_config", "text_config"), ("text_config", None), ("llm_config", None)):
            part = self._data.get(outer)
            if inner and isinstance(part, dict):
                part = part.get(inner)
            if isinstance(part, dict):
                return _RawConfig(part)
        return self


def _load_config_object(config: dict[str, Any]) -> tuple[Any, str]:
    """The config as Transformers builds it (class defaults, attribute maps), or the raw dict."""
    model_type = config.get("model_type")
    if model_type:
        # Transformers' import-time notices (no PyTorch here) are noise in a launcher's log.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from transformers import AutoConfig
        except ImportError:  # pragma: no cover - transformers is a pinned requirement
            return _RawConfig(config), "raw"
        try:
            return AutoConfig.for_model(**config), "transformers"
        except ValueError as exc:
            # An architecture this Transformers does not know (or refuses): the raw file is all
            # there is, as for vLLM's own fallback to the raw config.
            log.info("Transformers cannot build %s's config (%s); reading config.json as is", model_type, exc)
        except Exception as exc:  # a broken or remote-code config is read raw
            log.info("Transformers failed on a %s config (%s); reading config.json as is", model_type, exc)
    return _RawConfig(config), "raw"


def _first(obj: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _rope_list(text: Any) -> list[dict[str, Any]]:
    """vLLM 0.32.0 config.py ``iter_rope_parameters``: one dict per layer type, or one."""
    rope = getattr(text, "rope_parameters", None)
    if not isinstance(rope, dict) or not rope:
        rope = getattr(text, "rope_scaling", None)
    if not isinstance(rope, dict) or not rope:
        return []
    nested = all(isinstance(value, dict) for value in rope.values())
    dicts = [value for value in rope.values() if value] if nested else [rope]
    # Keep only what the length rules read (LongRoPE's factor lists are long and irrelevant).
    keep = ("rope_type", "type", "factor", "original_max_position_embeddings", "rope_theta")
    return [{key: params[key] for key in keep if key in params} for params in dicts]


def _is_pooling(architectures: tuple[str, ...]) -> bool:
    return bool(architectures) and all(arch.endswith(_POOLING_SUFFIXES) for arch in architectures)


def _attention_kind(text: Any, model_type: str, is_mla: bool, length: float) -> tuple[str, int | None]:
    """(kind, number of layers that keep a per-token KV cache, None = all of them)."""
    layer_types = getattr(text, "layer_types", None)
    kinds = set(layer_types or ())
    attention = [kind for kind in layer_types or () if kind in _ATTENTION_LAYER_TYPES]
    if model_type in _MAMBA_MODEL_TYPES:
        return "mamba", 0
    if model_type in _HYBRID_MODEL_TYPES or (kinds and not kinds <= _ATTENTION_LAYER_TYPES):
        pattern = getattr(text, "hybrid_override_pattern", None)
        if not attention and isinstance(pattern, str):
            attention = [char for char in pattern if char == "*"]
        period = getattr(text, "attn_layer_period", None)
        if not attention and _positive(period):
            attention = list(
                range(int(getattr(text, "attn_layer_offset", 0) or 0), text.num_hidden_layers, period)
            )
        interval = getattr(text, "full_attention_interval", None)
        if not attention and _positive(interval):
            attention = list(range(int(interval) - 1, text.num_hidden_layers, int(interval)))
        return "hybrid", (len(attention) or None)
    if is_mla:
        return "mla", None
    if "sliding_attention" in kinds:
        return "sliding", None
    window = getattr(text, "sliding_window", None)
    if _positive(window) and window < length and getattr(text, "use_sliding_window", True):
        return "sliding", None
    return "full", None


def facts_from_config(
    config: dict[str, Any],
    *,
    model: str,
    revision: str | None = None,
    tokenizer_config: dict[str, Any] | None = None,
    vllm_version: str | None = None,
) -> ModelFacts:
    """Model facts from the parsed ``config.json`` (and ``tokenizer_config.json``) of ``model``.

    Lengths follow ``vllm_version``'s rules (the newest known when None). Raises
    ``ModelConfigError`` when the config names no layers (nothing vLLM could serve).
    """
    hf_config, read_with = _load_config_object(config)
    text = hf_config.get_text_config()
    if text is not hf_config and getattr(text, "num_attention_heads", None) is None:
        # vLLM 0.32.0 config.py get_hf_text_config refuses such a text config.
        raise ModelConfigError(
            f"config.json of {model}: the text_config has no num_attention_heads; vLLM cannot serve it."
        )
    model_type = str(getattr(text, "model_type", None) or config.get("model_type") or "")
    architectures = tuple(config.get("architectures") or ())

    base: float = float("inf")
    key = ""
    for name in POSSIBLE_LENGTH_KEYS:
        value = getattr(text, name, None)
        if _positive(value) and value < base:
            base, key = value, name
    if _positive(getattr(text, "model_max_length", None)):
        base, key = text.model_max_length, "model_max_length"
    if (
        tokenizer_config
        and _is_pooling(architectures)
        and getattr(text, "position_embedding_type", "") == "absolute"
        and _positive(tokenizer_config.get("model_max_length"))
    ):
        base = min(base, tokenizer_config["model_max_length"])
    if base == float("inf"):
        # vLLM then starts at 2,048 and accepts any explicit --max-model-len.
        base, key = DEFAULT_WHEN_NO_LENGTH, ""

    layers = int(_first(text, ("num_hidden_layers", "n_layer", "n_layers", "num_layers")) or 0)
    if layers <= 0:
        raise ModelConfigError(
            f"config.json of {model} names no layers (num_hidden_layers); it does not look like a model "
            "vLLM can serve."
        )
    heads = int(_first(text, ("num_attention_heads", "n_head", "n_heads")) or 0)
    hidden = int(_first(text, ("hidden_size", "n_embd", "d_model")) or 0)
    is_mla = model_type in _MLA_MODEL_TYPES and getattr(text, "kv_lora_rank", None) is not None
    kv_heads = int(_first(text, _KV_HEAD_KEYS) or heads)
    if (
        model_type in ("falcon", "RefinedWeb", "RefinedWebModel")
        and getattr(text, "multi_query", False)
        and not getattr(text, "new_decoder_architecture", False)
    ):
        kv_heads = 1
    head_dim = getattr(text, "head_dim", None)
    if not _positive(head_dim):
        head_dim = getattr(text, "hidden_size_per_head", None)
    if not _positive(head_dim):
        head_dim = hidden // heads if heads else 0
    if is_mla and _positive(getattr(text, "qk_rope_head_dim", None)):
        # vLLM 0.32.0 model_arch_config_convertor.py (get_head_size): an MLA layer caches one latent
        # vector of kv_lora_rank + qk_rope_head_dim; the KV heads stay the config's total.
        head_dim = int(text.kv_lora_rank) + int(text.qk_rope_head_dim)
    kind, attention_layers = _attention_kind(text, model_type, is_mla, base)
    if kind == "mamba":
        kv_heads, head_dim = 0, 0
    rope = _rope_list(text)
    original = getattr(text, "original_max_position_embeddings", None)
    if not _positive(original):
        original = next(
            (p["original_max_position_embeddings"] for p in rope if "original_max_position_embeddings" in p),
            None,
        )
    native, default = context_lengths(
        int(base),
        rope,
        model_type=model_type,
        original_max_position_embeddings=original,
        vllm_version=vllm_version,
    )
    dtype = _first(text, ("dtype", "torch_dtype")) or _first(hf_config, ("dtype", "torch_dtype"))
    dtype = config.get("torch_dtype") or config.get("dtype") if dtype is None else dtype
    theta = getattr(text, "rope_theta", None)
    if theta is None:
        theta = next((p["rope_theta"] for p in rope if "rope_theta" in p), None)
    legacy_rope = config.get("rope_scaling") if isinstance(config.get("rope_scaling"), dict) else None
    return ModelFacts(
        model=model,
        revision=revision,
        native_context=native,
        max_len_key=key,
        base_context=int(base),
        num_layers=layers,
        num_kv_heads=kv_heads,
        head_dim=int(head_dim),
        num_attention_heads=heads,
        hidden_size=hidden,
        dtype=str(dtype).removeprefix("torch.") if dtype else None,
        rope_scaling=legacy_rope
        or (rope[0] if len(rope) == 1 and _rope_type(rope[0]) != "default" else None),
        architectures=architectures,
        intermediate_size=getattr(text, "intermediate_size", None),
        vocab_size=getattr(text, "vocab_size", None) or config.get("vocab_size"),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=float(theta) if _positive(theta) else None,
        default_context=default,
        model_type=model_type,
        attention_kind=kind,
        attention_layers=attention_layers,
        kv_lora_rank=getattr(text, "kv_lora_rank", None) if is_mla else None,
        qk_rope_head_dim=getattr(text, "qk_rope_head_dim", None) if is_mla else None,
        original_max_position_embeddings=int(original) if _positive(original) else None,
        sliding_window=getattr(text, "sliding_window", None)
        if isinstance(getattr(text, "sliding_window", None), int)
        else None,
        rope_parameters=rope,
        rules_version=vllm_version or NEWEST_RULES,
        read_with=read_with,
    )


def _load_json(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise ModelConfigError(
            # json's messages such as "Invalid control character at" expect the position after them.
            f"{what} is not valid JSON ({exc.msg.removesuffix(' at')} at line {exc.lineno}, column "
            f"{exc.colno}); fix or re-download the file."
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
    vllm_version: str | None = None,
) -> ModelFacts:
    """Read config.json (and tokenizer_config.json when present) of a local model or a hub repo.

    The Hugging Face cache is tried first; the hub is asked only when the file is not cached and
    ``local_files_only`` is false. Lengths follow ``vllm_version`` (newest known rules when None).
    Raises ``ModelConfigError`` with a message that says what to fix.
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
    return facts_from_config(
        config, model=model, revision=revision, tokenizer_config=tokenizer_config, vllm_version=vllm_version
    )


def _safe_tokenizer_config(path: str) -> dict[str, Any] | None:
    # A broken tokenizer config must not stop the launch: vLLM would fail on it with its own words.
    try:
        return _load_json(path, "tokenizer_config.json")
    except ModelConfigError:
        return None
