"""What travels between the site, the control worker and the GPU workers, defined once.

Plain Python, no Django: the GPU worker imports it too. A launch spec is built once by the site
(``LaunchSpec.to_dict``) and parsed once on the host (``LaunchSpec.from_dict``); an event is checked on
arrival at the control side (``parse_event``). Whatever does not parse raises ``ContractError`` whose
message names the field that is wrong, so the receiver can refuse it with that reason instead of
applying half of it.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any


class ContractError(ValueError):
    """A spec or event that does not match the contract; the message names the bad field."""


# Celery task names: the GPU worker's tasks (queue ``gpu.<host>``) and the control worker's (queue
# ``control``). Both programs register and send by these names only.
RUN_LAUNCH_TASK = "launches.gpu.run_launch"
STOP_LAUNCH_TASK = "launches.gpu.stop_launch"
RECONCILE_TASK = "launches.gpu.reconcile"
HOST_REPORT_TASK = "launches.control.host_report"
APPLY_EVENT_TASK = "launches.control.apply_event"
LAUNCH_UNKNOWN_TASK = "launches.control.launch_unknown"
MARK_LOST_LAUNCHES_TASK = "launches.control.mark_lost_launches"
READ_MODEL_FACTS_TASK = "launches.control.read_model_facts"


class Outcome(enum.StrEnum):
    """How one attempt ended, as the launcher's log classifier names it, and how a launch ended when no
    attempt's verdict says it; ``label`` is the words people see (the live page, the history filter,
    the admin, the API)."""

    READY = "ready"
    CONTEXT_TOO_LONG = "context_too_long"
    AUTO_FIT = "auto_fit"
    GPU_BUSY = "gpu_busy"
    WEIGHTS_DO_NOT_FIT = "weights_do_not_fit"
    LENGTH_ABOVE_MODEL = "length_above_model"
    PORT_IN_USE = "port_in_use"
    MAX_NUM_SEQS_TOO_HIGH = "max_num_seqs_too_high"
    MODEL_NOT_FOUND = "model_not_found"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    # How a launch ended when no attempt's verdict says it (set by the site or the GPU worker).
    INTERRUPTED = "interrupted"
    REFUSED = "refused"
    FAILED = "failed"
    STOPPED = "stopped"
    LOST = "lost"
    CRASH_LOOP = "crash_loop"
    WORKER_RESTARTED = "worker_restarted"
    NEVER_RECEIVED = "never_received"
    START_TIMEOUT = "start_timeout"
    STOP_UNCONFIRMED = "stop_unconfirmed"
    HOST_FORGOT = "host_forgot"

    @property
    def label(self) -> str:
        return _OUTCOME_LABELS[self]


_OUTCOME_LABELS: dict[Outcome, str] = {
    Outcome.READY: "Ready",
    Outcome.CONTEXT_TOO_LONG: "KV cache too small",
    Outcome.AUTO_FIT: "Auto-fitted",
    Outcome.GPU_BUSY: "GPU busy",
    Outcome.WEIGHTS_DO_NOT_FIT: "Weights do not fit",
    Outcome.LENGTH_ABOVE_MODEL: "Length above the model's maximum",
    Outcome.PORT_IN_USE: "Port in use",
    Outcome.MAX_NUM_SEQS_TOO_HIGH: "Too many sequences for the Mamba cache",
    Outcome.MODEL_NOT_FOUND: "Model not found",
    Outcome.CRASHED: "Crashed",
    Outcome.TIMEOUT: "Timed out",
    Outcome.CANCELLED: "Cancelled",
    Outcome.INTERRUPTED: "Interrupted",
    Outcome.REFUSED: "Refused by the host",
    Outcome.FAILED: "Failed",
    Outcome.STOPPED: "Stopped",
    Outcome.LOST: "Lost",
    Outcome.CRASH_LOOP: "Crashed too often",
    Outcome.WORKER_RESTARTED: "GPU worker restarted",
    Outcome.NEVER_RECEIVED: "Never received by the host",
    Outcome.START_TIMEOUT: "Start timed out",
    Outcome.STOP_UNCONFIRMED: "Stop unconfirmed",
    Outcome.HOST_FORGOT: "Forgotten by the host",
}


class EventKind(enum.StrEnum):
    """Every kind of numbered launch event a GPU worker sends."""

    ACCEPTED = "accepted"
    MODEL_FACTS = "model_facts"
    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_FINISHED = "attempt_finished"
    LOG = "log"
    LIMIT_LEARNED = "limit_learned"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    CRASHED = "crashed"
    RESTARTING = "restarting"
    UNHEALTHY = "unhealthy"
    HEALTHY = "healthy"
    ADOPTED = "adopted"
    WORKER_RESTARTED = "worker_restarted"


# Kinds kept in the launch's event history (the admin's event list, the live page's log) that change
# nothing on the launch row; every other kind has a handler on the control side (``Launch._on_<kind>``).
HISTORY_ONLY_KINDS = frozenset(
    {EventKind.LOG, EventKind.UNHEALTHY, EventKind.HEALTHY, EventKind.ADOPTED, EventKind.WORKER_RESTARTED}
)

# Keys each kind must carry, with the types they must have (absent keys are allowed elsewhere).
_INT = (int,)
_STR = (str,)
_LIST = (list,)
REQUIRED_PAYLOAD: dict[EventKind, dict[str, tuple[type, ...]]] = {
    EventKind.ACCEPTED: {"host": _STR},
    EventKind.MODEL_FACTS: {},
    EventKind.ATTEMPT_STARTED: {"attempt": _INT, "argv": _LIST},
    EventKind.ATTEMPT_FINISHED: {"attempt": _INT, "outcome": _STR},
    EventKind.LOG: {"attempt": _INT, "lines": _LIST},
    EventKind.LIMIT_LEARNED: {"max_model_len": _INT},
    EventKind.READY: {"url": _STR},
    EventKind.FAILED: {"reason": _STR},
    EventKind.CANCELLED: {"reason": _STR},
    EventKind.STOPPED: {"reason": _STR},
    EventKind.CRASHED: {"reason": _STR},
    EventKind.RESTARTING: {"restarts": _INT, "next_try_in": (int, float)},
    EventKind.UNHEALTHY: {},
    EventKind.HEALTHY: {},
    EventKind.ADOPTED: {},
    EventKind.WORKER_RESTARTED: {},
}


@dataclass(frozen=True)
class MemoryOptions:
    """The launch options that decide how much GPU memory vLLM takes and so how many tokens its KV
    cache holds: each is a ``LaunchConfig`` field of the same name and one ``vllm serve`` flag
    (``MEMORY_OPTION_FLAGS``). The memory fingerprint, the config form's fieldset, ``ServeOptions``,
    the managed-flag list and the ``python -m launches.vllm`` options all derive from this list.
    Extra arguments count too, for their memory-relevant part (``gpus.fingerprint``)."""

    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    tensor_parallel_size: int = 1
    max_num_batched_tokens: int | None = None
    enforce_eager: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryOptions:
        """Read the options of a launch spec; a missing, None or empty value takes vLLM's default."""
        defaults = cls()
        values = {name: data.get(name) for name in MEMORY_OPTION_FIELDS}
        return cls(
            gpu_memory_utilization=float(values["gpu_memory_utilization"] or defaults.gpu_memory_utilization),
            dtype=values["dtype"] or defaults.dtype,
            quantization=values["quantization"] or None,
            kv_cache_dtype=values["kv_cache_dtype"] or defaults.kv_cache_dtype,
            tensor_parallel_size=int(values["tensor_parallel_size"] or defaults.tensor_parallel_size),
            max_num_batched_tokens=values["max_num_batched_tokens"],
            enforce_eager=bool(values["enforce_eager"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MEMORY_OPTION_FIELDS: tuple[str, ...] = tuple(item.name for item in fields(MemoryOptions))
# The vLLM flag each memory option sets (vLLM 0.32.0, ``vllm/engine/arg_utils.py``).
MEMORY_OPTION_FLAGS: dict[str, str] = {name: "--" + name.replace("_", "-") for name in MEMORY_OPTION_FIELDS}


# Where a learned length comes from (``limit_learned``'s ``learned_from``). A refusal's number and
# auto-fit's choice are ceilings (the GPU holds no more); "fits" carries the length that was served,
# a floor (at least that much fits). The GPU worker's policy and the site's limits read this rule.
CEILING_SOURCES = frozenset({"refusal", "auto_fit"})
FLOOR_SOURCES = frozenset({"fits"})


def is_ceiling(learned_from: str | None) -> bool:
    """Whether a length learned this way is a ceiling (True) or only a floor (False)."""
    return learned_from in CEILING_SOURCES


def wanted_length(native: int, factor: float = 1.0, cap: int | None = None) -> int:
    """The context a launch asks for, in tokens: ``native`` × YaRN ``factor`` (1.0 without YaRN),
    rounded down to a whole token, then lowered to ``cap`` when one is set (None or 0: no cap)."""
    wanted = int(native * factor)
    return min(wanted, int(cap)) if cap else wanted


@dataclass(frozen=True)
class Event:
    launch_id: int
    seq: int
    kind: EventKind
    data: dict[str, Any]
    emitted_at: str | None = None


def parse_event(launch_id: Any, seq: Any, kind: Any, data: Any, emitted_at: Any = None) -> Event:
    """Check one event as it arrives: ``(launch_id, seq, kind, data, emitted_at)`` → ``Event``.

    Raises ``ContractError`` naming the field: a non-positive ``seq``, an unknown ``kind``, a payload
    that is not an object or lacks a key its kind needs (``data.max_model_len`` ...).
    """
    _whole("launch_id", launch_id, minimum=1)
    _whole("seq", seq, minimum=1)
    try:
        event_kind = EventKind(kind)
    except ValueError:
        raise ContractError(f"kind: {kind!r} is not an event kind this site knows.") from None
    if not isinstance(data, dict):
        raise ContractError(f"data: expected an object, got {type(data).__name__}.")
    for key, types in REQUIRED_PAYLOAD[event_kind].items():
        if key not in data:
            raise ContractError(f"data.{key}: missing; a {event_kind} event needs it.")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ContractError(
                f"data.{key}: expected {' or '.join(t.__name__ for t in types)}, got {type(value).__name__}."
            )
    if emitted_at is not None and not isinstance(emitted_at, str):
        raise ContractError("emitted_at: expected an ISO 8601 string.")
    return Event(int(launch_id), int(seq), event_kind, data, emitted_at)


def _whole(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{name}: expected a whole number, got {type(value).__name__}.")
    if value < minimum:
        raise ContractError(f"{name}: {value} is below {minimum}.")
    return value


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a GPU host needs to start one launch's server, with the launch's identity.

    ``spec_id`` is unique per launch (the Celery task id): a worker that has already run a spec with
    this identity refuses it again, so a redelivered message never starts a second server.
    """

    launch_id: int
    spec_id: str
    model: str
    # None: the worker picks a free port in its range and reports it.
    port: int | None
    kind: str = "launch"
    revision: str | None = None
    # The longest --max-model-len the host's vLLM version accepts for the model (tokens), derived by
    # the site from the model's facts under that version's rules.
    native_context: int | None = None
    # What that version starts at without --max-model-len (LongRoPE: below native_context).
    default_context: int | None = None
    # The model's RoPE base frequency, written into a YaRN launch's rope parameters.
    rope_theta: float | None = None
    # A hybrid model's max_num_seqs learned from vLLM's Mamba-cache refusal, passed as --max-num-seqs.
    max_num_seqs: int | None = None
    known_limit: int | None = None
    ceiling_hint: int | None = None
    yarn_factor: float = 1.0
    context_cap: int | None = None
    gpu_indices: list[int] = field(default_factory=lambda: [0])
    gpu_uuids: list[str] = field(default_factory=list)
    served_model_name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    detect_only: bool = False
    # Auto-restart: restart a crashed server at most ``restart_limit`` times in ``restart_window_s``.
    keep_up: bool = False
    restart_limit: int = 0
    restart_window_s: int = 600

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LaunchSpec:
        """Parse a spec as it arrives; raises ``ContractError`` naming the field that is wrong.

        Keys the contract does not know are ignored: a spec stored or queued by an earlier site may
        still carry ``base_command``, ``vllm_version``, ``fingerprint`` and ``fingerprint_fields``,
        which no host reads.
        """
        if not isinstance(data, dict):
            raise ContractError(f"spec: expected an object, got {type(data).__name__}.")
        known = {item.name for item in fields(cls)}
        for name in ("launch_id", "spec_id", "model"):
            if data.get(name) in (None, ""):
                raise ContractError(f"{name}: missing; every launch spec needs it.")
        if "port" not in data:
            raise ContractError("port: missing; every launch spec names one (null: the host picks).")
        _whole("launch_id", data["launch_id"], minimum=1)
        if data["port"] is not None:
            port = _whole("port", data["port"], minimum=1)
            if port > 65535:
                raise ContractError(f"port: {port} is above 65535.")
        for name in (
            "native_context",
            "default_context",
            "max_num_seqs",
            "known_limit",
            "ceiling_hint",
            "context_cap",
        ):
            if data.get(name) is not None:
                _whole(name, data[name], minimum=1)
        for name in ("restart_limit", "restart_window_s"):
            if name in data:
                _whole(name, data[name], minimum=0)
        indices = data.get("gpu_indices", [0])
        if not isinstance(indices, list) or not indices:
            raise ContractError("gpu_indices: expected a non-empty list of card indices.")
        for index in indices:
            _whole("gpu_indices", index, minimum=0)
        factor = data.get("yarn_factor", 1.0)
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 1.0 <= factor <= 8.0:
            raise ContractError(f"yarn_factor: {factor!r} is not a number from 1.0 to 8.0.")
        if not isinstance(data.get("options", {}), dict):
            raise ContractError("options: expected an object.")
        for name in ("spec_id", "model", "kind"):
            if name in data and not isinstance(data[name], str):
                raise ContractError(f"{name}: expected a string.")
        return cls(**{name: value for name, value in data.items() if name in known})
