"""What travels between the site, the control worker and the GPU workers, defined once.

Plain Python, no Django: the GPU worker imports it too. A launch spec is built once by the site
(``LaunchSpec.to_dict``) and parsed once on the host (``LaunchSpec.from_dict``); an event is checked on
arrival at the control side (``parse_event``). Whatever does not parse raises ``ContractError`` whose
message names the field that is wrong, so the receiver can refuse it with that reason instead of
applying half of it.
"""

from __future__ import annotations

import enum
from dataclasses import MISSING, asdict, dataclass, field, fields
from types import UnionType
from typing import Any, ClassVar, Literal, Self, Union, get_args, get_origin, get_type_hints


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
# nothing on the launch row; every other kind has a handler on the control side (``Launch._on_<kind>``,
# ``launches.events``), which reads the kind's payload (``PAYLOADS``).
HISTORY_ONLY_KINDS = frozenset(
    {EventKind.LOG, EventKind.UNHEALTHY, EventKind.HEALTHY, EventKind.ADOPTED, EventKind.WORKER_RESTARTED}
)


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


# --- event payloads --------------------------------------------------------------------------------
# One frozen dataclass per event kind, with the fields its senders fill (``launches.gpu.runtime``,
# ``launches.vllm.policy``). Lengths are in tokens, times in seconds (``started_at``/``ended_at``: Unix
# epoch seconds), ``log_tail``/``lines``: vLLM's output lines without their line ends.


def _rule(
    minimum: float | None = None,
    maximum: float | None = None,
    choices: frozenset[str] | None = None,
    default: Any = MISSING,
) -> Any:
    """A payload field that ``from_dict`` also checks against ``minimum``/``maximum`` (inclusive, for a
    number) or ``choices`` (for a string)."""
    return field(default=default, metadata={"minimum": minimum, "maximum": maximum, "choices": choices})


@dataclass(frozen=True)
class Payload:
    """What one event carries. ``from_dict`` checks a dict as it arrives; ``to_dict`` gives the JSON-ready
    dict with every field, which ``from_dict`` reads back to an equal payload."""

    kind: ClassVar[EventKind]

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Parse ``data`` (a JSON object) into this kind's payload.

        Raises ``ContractError`` naming the field as ``data.<field>``: a required field missing, a value
        of the wrong type (``True`` is no number, a number no ``True``), below its minimum or above its
        maximum, an outcome this site does not know, or a key that is no field of the kind.
        """
        _require_object(data)
        known = {item.name: item for item in fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            names = ", ".join(f"data.{key}" for key in unknown)
            raise ContractError(f"{names}: not a field of a {cls.kind} event.")
        hints = _payload_hints(cls)
        values: dict[str, Any] = {}
        for name, item in known.items():
            if name not in data:
                if item.default is MISSING and item.default_factory is MISSING:
                    raise ContractError(f"data.{name}: missing; a {cls.kind} event needs it.")
                continue
            values[name] = _checked(f"data.{name}", data[name], hints[name], item.metadata)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values (an outcome as its string)."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(self)}


@dataclass(frozen=True)
class AcceptedPayload(Payload):
    """The host took the spec: its name, the GPU worker's process id and the port it starts on."""

    kind: ClassVar[EventKind] = EventKind.ACCEPTED
    host: str
    worker_pid: int | None = _rule(1, default=None)
    port: int | None = _rule(1, 65535, default=None)


@dataclass(frozen=True)
class ModelFactsPayload(Payload):
    """What a GPU worker of an earlier release read of the model's config.json on its host (today's
    workers send none: the spec carries the lengths for the host's vLLM version). Still applied, so a
    fleet whose site is upgraded before its hosts loses nothing. ``facts`` is ``ModelFacts.to_dict()``
    (``launches.vllm.modelinfo``), sent as the event's own keys; or ``error``, why it could not be read.
    Exactly one of the two is set; ``facts`` has at least ``native_context`` (tokens, >= 1)."""

    kind: ClassVar[EventKind] = EventKind.MODEL_FACTS
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        _require_object(data)
        if "error" in data:
            others = sorted(str(key) for key in data if key != "error")
            if others:
                names = ", ".join(f"data.{key}" for key in others)
                raise ContractError(f"{names}: a model_facts event with an error carries nothing else.")
            return cls(error=_checked("data.error", data["error"], str, {}))
        if "native_context" not in data:
            raise ContractError("data.native_context: missing; a model_facts event needs it.")
        _checked("data.native_context", data["native_context"], int, {"minimum": 1})
        if "model" in data:
            _checked("data.model", data["model"], str, {})
        return cls(facts=dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error} if self.error is not None else dict(self.facts)


@dataclass(frozen=True)
class AttemptStartedPayload(Payload):
    """One ``vllm serve`` start: its number (from 1), the length asked for ("auto": vLLM's auto-fit,
    None: vLLM's default) and the argv it runs."""

    kind: ClassVar[EventKind] = EventKind.ATTEMPT_STARTED
    attempt: int = _rule(1)
    argv: list[str]
    requested_len: int | Literal["auto"] | None = _rule(1, default=None)


@dataclass(frozen=True)
class AttemptFinishedPayload(Payload):
    """How one attempt ended: the log classifier's ``outcome``, the length it served or named
    (``parsed_len``), vLLM's exit code (None while it serves or when unknown), whether the launcher
    stopped it, the verdict's message and last log lines, and when it started and ended."""

    kind: ClassVar[EventKind] = EventKind.ATTEMPT_FINISHED
    attempt: int = _rule(1)
    outcome: Outcome
    parsed_len: int | None = _rule(0, default=None)
    exit_code: int | None = None
    stopped_by_launcher: bool = False
    message: str = ""
    log_tail: list[str] = field(default_factory=list)
    started_at: float | None = _rule(0, default=None)
    ended_at: float | None = _rule(0, default=None)


@dataclass(frozen=True)
class LogPayload(Payload):
    """A batch of one attempt's output lines, in the order they were read."""

    kind: ClassVar[EventKind] = EventKind.LOG
    attempt: int = _rule(1)
    lines: list[str]


@dataclass(frozen=True)
class LimitLearnedPayload(Payload):
    """A length learned on this GPU: a ceiling or a floor by ``learned_from`` (``is_ceiling``), with
    the KV cache's capacity in tokens and, for a hybrid model, the sequence count that fits."""

    kind: ClassVar[EventKind] = EventKind.LIMIT_LEARNED
    max_model_len: int = _rule(1)
    learned_from: str | None = _rule(choices=CEILING_SOURCES | FLOOR_SOURCES, default=None)
    kv_capacity_tokens: int | None = _rule(0, default=None)
    max_num_seqs: int | None = _rule(1, default=None)


@dataclass(frozen=True)
class ReadyPayload(Payload):
    """The server answers: its URL as the host sees it, the length it serves, the KV cache's capacity
    in tokens and the process (group) id."""

    kind: ClassVar[EventKind] = EventKind.READY
    url: str
    max_model_len: int | None = _rule(1, default=None)
    kv_capacity_tokens: int | None = _rule(0, default=None)
    pid: int | None = _rule(1, default=None)
    pgid: int | None = _rule(1, default=None)


@dataclass(frozen=True)
class FailedPayload(Payload):
    """The start failed: why, and the outcome that says how ("failed": the last attempt's verdict)."""

    kind: ClassVar[EventKind] = EventKind.FAILED
    reason: str
    outcome: Outcome = Outcome.FAILED


@dataclass(frozen=True)
class CancelledPayload(Payload):
    """Stopped before the start began."""

    kind: ClassVar[EventKind] = EventKind.CANCELLED
    reason: str


@dataclass(frozen=True)
class StoppedPayload(Payload):
    """The server was stopped; a YaRN test's server is stopped after it came up with ``max_model_len``
    tokens (``test_passed``). ``outcome`` says why when it was not asked for ("worker_restarted")."""

    kind: ClassVar[EventKind] = EventKind.STOPPED
    reason: str
    test_passed: bool = False
    max_model_len: int | None = _rule(1, default=None)
    outcome: Outcome | None = None


@dataclass(frozen=True)
class CrashedPayload(Payload):
    """A ready server exited: why, its exit code (None when unknown) and its last log lines;
    ``outcome`` "crash_loop" when it crashed too often to be restarted again."""

    kind: ClassVar[EventKind] = EventKind.CRASHED
    reason: str
    outcome: Outcome = Outcome.CRASHED
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RestartingPayload(Payload):
    """A server kept up crashed: restart number ``restarts`` of ``restart_limit`` follows in
    ``next_try_in`` seconds."""

    kind: ClassVar[EventKind] = EventKind.RESTARTING
    restarts: int = _rule(1)
    next_try_in: float = _rule(0)
    reason: str = ""
    restart_limit: int = _rule(0, default=0)
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UnhealthyPayload(Payload):
    """A ready server's /health stopped answering."""

    kind: ClassVar[EventKind] = EventKind.UNHEALTHY
    reason: str = ""


@dataclass(frozen=True)
class HealthyPayload(Payload):
    """An unhealthy server answers /health again."""

    kind: ClassVar[EventKind] = EventKind.HEALTHY


@dataclass(frozen=True)
class AdoptedPayload(Payload):
    """A restarted GPU worker found the server of its predecessor still running and watches it."""

    kind: ClassVar[EventKind] = EventKind.ADOPTED
    pid: int | None = _rule(1, default=None)
    pgid: int | None = _rule(1, default=None)
    url: str = ""


@dataclass(frozen=True)
class WorkerRestartedPayload(Payload):
    """The GPU worker of ``host`` restarted while this launch was on it."""

    kind: ClassVar[EventKind] = EventKind.WORKER_RESTARTED
    host: str


PAYLOADS: dict[EventKind, type[Payload]] = {
    payload.kind: payload
    for payload in (
        AcceptedPayload,
        ModelFactsPayload,
        AttemptStartedPayload,
        AttemptFinishedPayload,
        LogPayload,
        LimitLearnedPayload,
        ReadyPayload,
        FailedPayload,
        CancelledPayload,
        StoppedPayload,
        CrashedPayload,
        RestartingPayload,
        UnhealthyPayload,
        HealthyPayload,
        AdoptedPayload,
        WorkerRestartedPayload,
    )
}


def parse_payload(kind: Any, data: Any) -> Payload:
    """Check what an event of ``kind`` carries: ``data`` (a JSON object) → its kind's typed payload.

    Raises ``ContractError`` naming the field: ``kind`` when it is no event kind, else as
    ``Payload.from_dict`` does.
    """
    try:
        event_kind = EventKind(kind)
    except ValueError:
        raise ContractError(f"kind: {kind!r} is not an event kind this site knows.") from None
    return PAYLOADS[event_kind].from_dict(data)


def _require_object(data: Any) -> None:
    if not isinstance(data, dict):
        raise ContractError(f"data: expected an object, got {type(data).__name__}.")


def _payload_hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


_HINTS: dict[type, dict[str, Any]] = {}


def _checked(name: str, value: Any, hint: Any, limits: Any) -> Any:
    """``value`` as field ``name`` of type ``hint`` holds it; raises ``ContractError`` naming ``name``."""
    options = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    for option in options:
        if _fits(value, option):
            break
    else:
        wanted = " or ".join(_describe(option) for option in options)
        if any(isinstance(option, type) and issubclass(option, enum.Enum) for option in options):
            raise ContractError(f"{name}: {value!r} is not {wanted}.")
        raise ContractError(f"{name}: expected {wanted}, got {_describe_value(value)}.")
    if isinstance(value, int | float) and not isinstance(value, bool):
        minimum, maximum = limits.get("minimum"), limits.get("maximum")
        if minimum is not None and value < minimum:
            raise ContractError(f"{name}: {value} is below {minimum}.")
        if maximum is not None and value > maximum:
            raise ContractError(f"{name}: {value} is above {maximum}.")
    choices = limits.get("choices")
    if choices and isinstance(value, str) and value not in choices:
        raise ContractError(f"{name}: {value!r} is not one of {', '.join(sorted(choices))}.")
    if isinstance(option, type) and issubclass(option, enum.Enum):
        return option(value)
    if option is float:
        return float(value)
    if isinstance(value, list):
        return list(value)
    return value


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = get_origin(hint)
    if origin is Literal:
        return isinstance(value, str) and value in get_args(hint)
    if origin is list:
        (item,) = get_args(hint)
        return isinstance(value, list) and all(_fits(entry, item) for entry in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(key, str) for key in value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, str) and value in {member.value for member in hint}
    if hint is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    if hint is None or hint is type(None):
        return "null"
    origin = get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(choice) for choice in get_args(hint))
    if origin is list:
        return f"a list of {_WORDS[get_args(hint)[0]]}s"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return f"an {hint.__name__.lower()} this site knows"
    return f"a {_WORDS.get(hint, getattr(hint, '__name__', str(hint)))}"


_WORDS: dict[Any, str] = {int: "whole number", float: "number", str: "string", bool: "boolean"}


def _describe_value(value: Any) -> str:
    if isinstance(value, list):
        odd = next((entry for entry in value if not isinstance(entry, str)), None)
        return f"a list holding {type(odd).__name__}" if odd is not None else "list"
    return type(value).__name__


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


@dataclass(frozen=True)
class Event:
    """One numbered event of one launch as it arrived, with its kind's typed payload."""

    launch_id: int
    seq: int
    kind: EventKind
    payload: Payload
    emitted_at: str | None = None


def parse_event(launch_id: Any, seq: Any, kind: Any, data: Any, emitted_at: Any = None) -> Event:
    """Check one event as it arrives: ``(launch_id, seq, kind, data, emitted_at)`` → ``Event``.

    Raises ``ContractError`` naming the field: a non-positive ``seq``, an unknown ``kind``, a payload
    that is not its kind's (``data.max_model_len`` missing, of the wrong type, out of range, a key the
    kind does not have ...; see ``Payload.from_dict``).
    """
    _whole("launch_id", launch_id, minimum=1)
    _whole("seq", seq, minimum=1)
    payload = parse_payload(kind, data)
    if emitted_at is not None and not isinstance(emitted_at, str):
        raise ContractError("emitted_at: expected an ISO 8601 string.")
    return Event(int(launch_id), int(seq), payload.kind, payload, emitted_at)


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
