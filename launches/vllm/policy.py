"""The launch policy: start vLLM with the largest context the GPU really holds.

Wanted length ``W = native x yarn_factor``, lowered to the cap. With a known limit the server starts
once at ``min(W, limit)``. On vLLM 0.14+ it starts once with ``--max-model-len auto`` and learns the
limit from the auto-fit line (one more start at the cap when auto-fit chose more than the cap).
On older vLLM it starts at ``W``; when vLLM refuses with a number, the process group is stopped on
that line (not after vLLM's slow teardown) and the next start uses the number rounded down to 16.

Only "the context does not fit the KV cache" (or auto-fit) teaches a limit. The KV capacity vLLM logs
on a successful start is reported but never taken as a limit: it is not always a length vLLM accepts
(real vLLM 0.32.0 logged "KV cache size: 32,768 tokens" and then refused 32,768, estimating 32,640).
The site keeps it as a ceiling hint: a later start without a known limit on a vLLM without auto-fit
begins at the hint instead of the wanted length, and a refusal there still corrects it.

``--max-model-len auto`` is used only where it can reach the wanted length: vLLM's auto-fit starts
at its default length, which for LongRoPE models is ``original_max_position_embeddings`` (4,096 for
Phi-3.5, which accepts 131,072), and with YaRN on 0.30+ the override raises the length above that
start. Above the default the launcher asks for the wanted length explicitly and a refusal corrects it.

A ready verdict needs our own server: the port must be free before the start (else
``port_in_use`` without starting anything), and the process answering ``/health`` must belong to
the started process group; a bind error printed after "startup complete" wins over it. A port the
host picked (``LaunchRequest.next_port`` set) is not the user's choice: when it is busy at the start,
the host's next free port replaces it (at most ``PORT_TRIES`` ports) and the launch goes on.

``max_num_seqs_too_high`` (a hybrid model's Mamba cache holds fewer sequences than
``--max-num-seqs``) restarts with the number vLLM printed; it is reported as ``max_num_seqs`` in
``limit_learned`` and the result, so the site can start there next time.

``length_above_model`` (the length is above what the model's config allows) retries once at the
model's own length when no YaRN was asked, because that is a configuration ceiling, not a hardware
one; with YaRN it fails, since the overrides should have raised the ceiling and silently dropping
them would hide a real problem.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from launches.contract import (
    AttemptFinishedPayload,
    AttemptStartedPayload,
    FailedPayload,
    LimitLearnedPayload,
    LogPayload,
    Payload,
    ReadyPayload,
    wanted_length,
)
from launches.vllm.argv import ArgvError, ServeOptions, YarnSetting, build_argv, build_env
from launches.vllm.flags import has_flag
from launches.vllm.logs import LogWatcher, Outcome, Verdict, round_down
from launches.vllm.modelinfo import ModelConfigError, read_model_facts
from launches.vllm.process import (
    ProcessStartError,
    VllmProcess,
    port_in_use,
    port_owned_by_group,
    probe_health,
    read_served_max_model_len,
)
from launches.vllm.versions import VllmVersionError, detect_vllm_version, supports_auto_max_model_len

SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY")
EventCallback = Callable[[str, dict[str, Any]], None]
LOG_FLUSH_SECONDS = 0.25
LOG_FLUSH_LINES = 50
STOP_GRACE = 10.0
# A start that has failed holds nothing worth a clean shutdown, and vLLM ignores SIGTERM while its
# engine start-up fails (it exits on its own ~11 s later): kill it quickly so the retry starts sooner.
FAILED_STOP_GRACE = 1.0
# How many busy ports a host-picked port is replaced by before the launch ends ``port_in_use``.
PORT_TRIES = 5


@dataclass
class LaunchRequest:
    options: ServeOptions
    launch_id: str | int | None = None
    base_command: list[str] = field(default_factory=lambda: ["vllm", "serve"])
    vllm_version: str | None = None
    native_context: int | None = None
    # What vLLM starts at without a length (LongRoPE: below native_context); None = native_context.
    default_context: int | None = None
    known_limit: int | None = None
    # A --max-num-seqs learned before for a hybrid model (None: vLLM's own default).
    max_num_seqs: int | None = None
    ceiling_hint: int | None = None
    yarn_factor: float = 1.0
    context_cap: int | None = None
    gpu_uuids: list[str] = field(default_factory=list)
    ready_timeout: float = 900
    max_attempts: int = 3
    detect_only: bool = False
    log_dir: str | None = None
    # May hold HF_TOKEN: kept out of repr and masked in to_dict, so a logged request leaks nothing.
    extra_env: dict[str, str] = field(default_factory=dict, repr=False)
    rope_theta: float | None = None
    # Only where the host picked the port: ``next_port(busy)`` returns the host's next free port
    # after ``busy`` (None when none is free). None: the config's fixed port, never replaced.
    next_port: Callable[[int], int | None] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, next_port=None))
        del data["next_port"]
        data["options"] = self.options.to_dict()
        data["extra_env"] = {
            name: "***" if any(word in name.upper() for word in SECRET_WORDS) else value
            for name, value in self.extra_env.items()
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LaunchRequest:
        values = dict(data)
        values["options"] = ServeOptions.from_dict(values["options"])
        return cls(**values)


@dataclass
class AttemptResult:
    number: int
    requested_len: int | str
    argv: list[str]
    outcome: str
    parsed_len: int | None = None
    exit_code: int | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    duration: float = 0.0
    message: str = ""
    log_tail: list[str] = field(default_factory=list)
    log_path: str | None = None
    kv_capacity_tokens: int | None = None
    decided_at: float | None = None
    # The launcher stopped vLLM on its verdict (a refusal line, a timeout, a cancel): the exit code is
    # then that of a process told to stop, not vLLM's own.
    stopped_by_launcher: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LaunchResult:
    outcome: str
    reason: str
    attempts: list[AttemptResult] = field(default_factory=list)
    max_model_len: int | None = None
    learned_limit: int | None = None
    learned_from: str | None = None
    kv_capacity_tokens: int | None = None
    url: str | None = None
    pid: int | None = None
    pgid: int | None = None
    process: VllmProcess | None = None
    vllm_version: str | None = None
    native_context: int | None = None
    wanted_len: int | None = None
    max_num_seqs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("process", "attempts")}
        data["attempts"] = [attempt.to_dict() for attempt in self.attempts]
        return data


class _Attempt:
    """One start of vLLM, watched until it is ready, refused, gone, timed out or cancelled."""

    def __init__(
        self,
        number: int,
        argv: list[str],
        env: dict[str, str],
        log_path: str | None,
        emit: Callable[[Payload], None],
    ) -> None:
        self.number = number
        self.argv = argv
        self.emit = emit
        self.lines: queue.Queue[str] = queue.Queue()
        self.watcher = LogWatcher()
        self.started_at = time.time()
        self.process = VllmProcess.start(
            argv, env, on_line=lambda _stream, line: self.lines.put(line), log_path=log_path
        )
        self._batch: list[str] = []
        self.decided_at: float | None = None
        self._last_flush = time.monotonic()

    def _take(self, line: str) -> Verdict | None:
        self._batch.append(line)
        verdict = self.watcher.feed(line)
        if len(self._batch) >= LOG_FLUSH_LINES:
            self.flush()
        return verdict

    def flush(self) -> None:
        if self._batch:
            self.emit(LogPayload(attempt=self.number, lines=self._batch))
            self._batch = []
        self._last_flush = time.monotonic()

    def drain(self) -> None:
        while True:
            try:
                self._take(self.lines.get_nowait())
            except queue.Empty:
                break
        self.flush()

    def _ours_answers(self, url: str, port: int) -> bool:
        """/health answers and the listening socket belongs to this start's process group."""
        if self.process.poll() is not None or not probe_health(url, timeout=1.0):
            return False
        return port_owned_by_group(port, self.process.pgid) is not False

    def watch(
        self, url: str, port: int, deadline: float, cancel: threading.Event | None
    ) -> tuple[Verdict, str | None]:
        """Return the verdict and, for a ready server, None; else the policy outcome to report."""
        decided: Verdict | None = None
        while True:
            if cancel is not None and cancel.is_set():
                return self.watcher.verdict(), Outcome.CANCELLED
            if time.monotonic() > deadline:
                return self.watcher.verdict(), Outcome.TIMEOUT
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                line = None
            if line is not None and (verdict := self._take(line)) is not None:
                decided = verdict
                self.decided_at = time.time()
            if time.monotonic() - self._last_flush >= LOG_FLUSH_SECONDS:
                self.flush()
            if decided is not None and decided.outcome != Outcome.READY:
                return decided, None
            if decided is not None and line is None and self._ours_answers(url, port):
                return decided, None
            if line is None and self.process.poll() is not None:
                self.process.wait(2.0)
                self.drain()
                return self.watcher.verdict(self.process.returncode), None


def first_length(
    wanted: int,
    *,
    version: str,
    default: int,
    with_yarn: bool,
    known_limit: int | None = None,
    ceiling_hint: int | None = None,
) -> int | str:
    """The ``--max-model-len`` of the first start, in tokens, or "auto" for vLLM's auto-fit.

    A known limit wins; auto-fit (vLLM 0.14+, ``versions.supports_auto_max_model_len``) only where it
    can reach ``wanted`` (no YaRN, ``wanted`` at most vLLM's default length); then a ceiling hint
    rounded down to the block size; else ``wanted`` itself.
    """
    if known_limit:
        return min(wanted, int(known_limit))
    if supports_auto_max_model_len(version) and not with_yarn and wanted <= default:
        # Auto-fit starts at vLLM's default length: only there can it reach the wanted one.
        return "auto"
    if ceiling_hint:
        return min(wanted, round_down(int(ceiling_hint)))
    return wanted


@dataclass(frozen=True)
class Known:
    """What is known after one attempt: the launcher's decision reads nothing else.

    ``stopped_by`` is ``Outcome.TIMEOUT`` or ``Outcome.CANCELLED`` when the launcher ended the attempt
    itself (None when vLLM's output decided); ``served`` is the length a ready server serves.
    """

    verdict: Verdict
    requested: int | str
    wanted: int
    number: int
    max_attempts: int
    message: str = ""
    stopped_by: Outcome | None = None
    served: int | None = None
    refused_before: bool = False
    with_yarn: bool = False
    max_num_seqs: int | None = None
    learned: int | None = None
    learned_from: str | None = None

    @property
    def last(self) -> bool:
        return self.number >= self.max_attempts


@dataclass(frozen=True)
class Step:
    """The launcher's next step: ``start`` again at ``length`` (after stopping a server that is ready
    but above the cap, when ``stop_ready``), ``ready`` serving ``length``, or ``fail`` with ``reason``.

    ``learned``/``learned_from`` is what the launch has learned so far (``contract.is_ceiling``);
    ``announce`` asks for a ``limit_learned`` event now (a refusal's number, before the next start);
    ``max_num_seqs`` is the sequence count of the next start.
    """

    action: str
    length: int | str | None = None
    outcome: str = "failed"
    reason: str = ""
    learned: int | None = None
    learned_from: str | None = None
    announce: bool = False
    refused: bool = False
    stop_ready: bool = False
    max_num_seqs: int | None = None


def next_step(known: Known) -> Step:
    """Decide what follows one attempt (pure: no processes, no clock, no events). See the module
    docstring for the rules; each branch has a row in ``tests/vllm/test_policy_steps.py``."""
    verdict, requested = known.verdict, known.requested
    kept = {"learned": known.learned, "learned_from": known.learned_from, "max_num_seqs": known.max_num_seqs}
    if known.stopped_by is not None:
        return Step("fail", outcome=str(known.stopped_by), reason=known.message, **kept)
    if verdict.outcome == Outcome.READY:
        if verdict.auto_fit_len:
            learned, learned_from = verdict.auto_fit_len, "auto_fit"
        elif known.refused_before and isinstance(requested, int):
            learned, learned_from = requested, "refusal"
        else:
            # It fits: the served length is a floor, not a ceiling (see the module docstring).
            learned, learned_from = None, "fits"
        found = {"learned": learned, "learned_from": learned_from, "max_num_seqs": known.max_num_seqs}
        if known.served is not None and known.served > known.wanted and not known.last:
            # Auto-fit chose more than the operator's cap: start again at the cap.
            return Step("start", length=known.wanted, stop_ready=True, **found)
        return Step("ready", length=known.served, outcome="ready", reason=known.message, **found)
    next_len: int | str | None = None
    learned_now: dict[str, Any] = {}
    max_num_seqs = known.max_num_seqs
    if verdict.outcome in (Outcome.CONTEXT_TOO_LONG, Outcome.AUTO_FIT) and verdict.max_model_len:
        fits = round_down(verdict.max_model_len)
        current = requested if isinstance(requested, int) else known.wanted
        if 0 < fits < current:
            next_len = fits
            source = "auto_fit" if verdict.outcome == Outcome.AUTO_FIT else "refusal"
            learned_now = {"learned": fits, "learned_from": source, "announce": True, "refused": True}
    elif (
        verdict.outcome == Outcome.LENGTH_ABOVE_MODEL
        and not known.with_yarn
        and verdict.derived_max_model_len
        and isinstance(requested, int)
        and verdict.derived_max_model_len < requested
    ):
        next_len = verdict.derived_max_model_len
    elif (
        verdict.outcome == Outcome.MAX_NUM_SEQS_TOO_HIGH
        and verdict.max_num_seqs
        and verdict.max_num_seqs != known.max_num_seqs
    ):
        # Not a context limit: the same length again, with the sequences vLLM says fit.
        max_num_seqs = verdict.max_num_seqs
        next_len = requested
    found = {**kept, "max_num_seqs": max_num_seqs, **learned_now}
    if next_len is None or known.last:
        reason = known.message
        if verdict.outcome == Outcome.CONTEXT_TOO_LONG and next_len is None:
            reason = f"{known.message}; no smaller length to try"
        elif known.last and next_len is not None:
            reason = f"{known.message}; gave up after {known.number} attempts"
        return Step("fail", outcome="failed", reason=reason, **found)
    return Step("start", length=next_len, **found)


def _free_picked_port(options: ServeOptions, next_port: Callable[[int], int | None] | None) -> int | None:
    """The port to start on: ``options.port`` when nothing answers there or the port is the config's
    (``next_port`` None); else the first of at most ``PORT_TRIES`` ports from ``next_port`` that
    nothing answers on. None when every one tried is busy or the host has no free port left."""
    port = options.port
    if next_port is None:
        return port
    for _ in range(PORT_TRIES):
        if not port_in_use(options.host, port):
            return port
        following = next_port(port)
        if following is None:
            return None
        port = following
    return None


def run_launch(
    request: LaunchRequest,
    *,
    on_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
    before_retry: Callable[[], None] | None = None,
) -> LaunchResult:
    def emit(payload: Payload) -> None:
        if on_event is not None:
            on_event(payload.kind, payload.to_dict())

    def fail(outcome: str, reason: str, **extra: Any) -> LaunchResult:
        emit(FailedPayload(reason=reason, outcome=Outcome(outcome)))
        return LaunchResult(outcome=outcome, reason=reason, **extra)

    options = request.options
    env_base = {**os.environ, **request.extra_env}
    version = request.vllm_version
    if version is None:
        try:
            version = detect_vllm_version(request.base_command, env=env_base)
        except VllmVersionError as exc:
            return fail("failed", str(exc))
    native = request.native_context
    default = request.default_context
    theta = request.rope_theta
    if native is None:
        try:
            facts = read_model_facts(options.model, options.revision, token=request.extra_env.get("HF_TOKEN"))
        except ModelConfigError as exc:
            return fail("failed", str(exc), vllm_version=version)
        native, default = facts.lengths_for_version(
            version, disable_sliding_window=has_flag(options.extra_args, "--disable-sliding-window")
        )
        theta = theta if theta is not None else facts.rope_theta
    default = default or native
    factor = request.yarn_factor or 1.0
    wanted = wanted_length(native, factor, request.context_cap)
    yarn = YarnSetting(factor, native, theta) if factor != 1.0 else None
    common: dict[str, Any] = {"vllm_version": version, "native_context": native, "wanted_len": wanted}
    max_num_seqs = request.max_num_seqs
    if max_num_seqs:
        options = replace(options, max_num_seqs=int(max_num_seqs))

    requested = first_length(
        wanted,
        version=version,
        default=default,
        with_yarn=yarn is not None,
        known_limit=request.known_limit,
        ceiling_hint=request.ceiling_hint,
    )
    url = f"http://{options.host}:{options.port}"
    env = build_env(request.gpu_uuids or None, env_base)
    attempts: list[AttemptResult] = []
    learned: int | None = None
    learned_from: str | None = None
    capacity: int | None = None
    refused_before = False
    started = time.time()

    for number in range(1, max(1, request.max_attempts) + 1):
        try:
            argv = build_argv(
                request.base_command, options, max_model_len=requested, vllm_version=version, yarn=yarn
            )
        except ArgvError as exc:
            return fail("failed", str(exc), attempts=attempts, **common)
        log_path = None
        if request.log_dir:
            os.makedirs(request.log_dir, exist_ok=True)
            log_path = os.path.join(
                request.log_dir, f"launch-{request.launch_id or int(started)}-attempt-{number}.log"
            )
        picked = _free_picked_port(options, request.next_port)
        if picked is not None and picked != options.port:
            options = replace(options, port=picked)
            url = f"http://{options.host}:{options.port}"
            argv = build_argv(
                request.base_command, options, max_model_len=requested, vllm_version=version, yarn=yarn
            )
        emit(AttemptStartedPayload(attempt=number, argv=argv, requested_len=requested))
        if picked is None or port_in_use(options.host, options.port):
            # Something else answers there: whatever it says, it is not the server we would start.
            now = time.time()
            if request.next_port is None:
                message = (
                    f"Port {options.port} on {options.host} is already in use by another process; "
                    "choose another port in the config, or leave it empty so the host picks one"
                )
            else:
                message = (
                    f"Every port the host picked on {options.host} ({PORT_TRIES} tries) was already in use "
                    "by another process; free some ports of the host's port range (AIFRED_PORT_RANGE)"
                )
            attempts.append(
                AttemptResult(
                    number,
                    requested,
                    argv,
                    str(Outcome.PORT_IN_USE),
                    started_at=now,
                    ended_at=now,
                    message=message,
                )
            )
            emit(
                AttemptFinishedPayload(
                    attempt=number, outcome=Outcome.PORT_IN_USE, message=message, started_at=now, ended_at=now
                )
            )
            return fail("failed", message, attempts=attempts, **common)
        try:
            attempt = _Attempt(number, argv, env, log_path, emit)
        except ProcessStartError as exc:
            return fail("failed", str(exc), attempts=attempts, **common)
        deadline = time.monotonic() + request.ready_timeout
        verdict, policy_outcome = attempt.watch(url, options.port, deadline, cancel)
        process = attempt.process
        ready = policy_outcome is None and verdict.outcome == Outcome.READY
        if ready:
            # vLLM's logger (KV capacity, auto-fit) writes to stdout and uvicorn's ready line to stderr:
            # take every line written before the ready line into the verdict.
            attempt.process.catch_up()
            attempt.drain()
            verdict = attempt.watcher.verdict()
        stopped_by_launcher = not ready and process.poll() is None
        if not ready:
            process.stop(FAILED_STOP_GRACE)
            attempt.drain()
        served: int | None = None
        if ready:
            served = read_served_max_model_len(url) or verdict.max_model_len
            if served is None and isinstance(requested, int):
                served = requested
        outcome = str(policy_outcome or verdict.outcome)
        message = verdict.message
        if policy_outcome == Outcome.TIMEOUT:
            message = f"vLLM was not ready within {request.ready_timeout:g} s"
        elif policy_outcome == Outcome.CANCELLED:
            message = "The launch was cancelled"
        ended = time.time()
        result = AttemptResult(
            number=number,
            requested_len=requested,
            argv=argv,
            outcome=outcome,
            parsed_len=served if ready else verdict.max_model_len or verdict.derived_max_model_len,
            exit_code=process.returncode if not ready else None,
            started_at=attempt.started_at,
            ended_at=ended,
            duration=ended - attempt.started_at,
            message=message,
            log_tail=list(verdict.tail),
            log_path=log_path,
            kv_capacity_tokens=verdict.kv_capacity_tokens,
            decided_at=attempt.decided_at,
            stopped_by_launcher=stopped_by_launcher,
        )
        attempts.append(result)
        emit(
            AttemptFinishedPayload(
                attempt=number,
                outcome=Outcome(outcome),
                parsed_len=result.parsed_len,
                exit_code=result.exit_code,
                stopped_by_launcher=stopped_by_launcher,
                message=message,
                log_tail=result.log_tail,
                started_at=result.started_at,
                ended_at=result.ended_at,
            )
        )
        if verdict.kv_capacity_tokens:
            capacity = verdict.kv_capacity_tokens
        step = next_step(
            Known(
                verdict=verdict,
                requested=requested,
                wanted=wanted,
                number=number,
                max_attempts=request.max_attempts,
                message=message,
                stopped_by=Outcome(policy_outcome) if policy_outcome is not None else None,
                served=served,
                refused_before=refused_before,
                with_yarn=yarn is not None,
                max_num_seqs=max_num_seqs,
                learned=learned,
                learned_from=learned_from,
            )
        )
        learned, learned_from, refused_before = (
            step.learned,
            step.learned_from,
            refused_before or step.refused,
        )
        if step.announce:
            emit(
                LimitLearnedPayload(
                    max_model_len=learned, learned_from=learned_from, kv_capacity_tokens=capacity
                )
            )
        if step.max_num_seqs != max_num_seqs:
            max_num_seqs = step.max_num_seqs
            options = replace(options, max_num_seqs=max_num_seqs)
        if step.action == "fail":
            return fail(
                step.outcome,
                step.reason,
                attempts=attempts,
                learned_limit=learned,
                learned_from=learned_from,
                kv_capacity_tokens=capacity,
                **common,
            )
        if step.action == "ready":
            # For "fits" the event carries the served length: a floor for the site to keep (none when
            # the served length is unknown). Only a hybrid model's learned sequence count travels.
            length = learned if learned is not None else served
            if length is not None:
                emit(
                    LimitLearnedPayload(
                        max_model_len=length,
                        learned_from=learned_from,
                        kv_capacity_tokens=capacity,
                        max_num_seqs=max_num_seqs or None,
                    )
                )
            emit(
                ReadyPayload(
                    url=url,
                    max_model_len=served,
                    kv_capacity_tokens=capacity,
                    pid=process.pid,
                    pgid=process.pgid,
                )
            )
            if request.detect_only:
                process.stop(STOP_GRACE)
            return LaunchResult(
                outcome="ready",
                reason=message,
                attempts=attempts,
                max_model_len=served,
                learned_limit=learned,
                learned_from=learned_from,
                kv_capacity_tokens=capacity,
                url=url,
                pid=process.pid,
                pgid=process.pgid,
                process=None if request.detect_only else process,
                max_num_seqs=max_num_seqs,
                **common,
            )
        if step.stop_ready:
            process.stop(STOP_GRACE)
        requested = step.length
        if before_retry is not None:
            before_retry()
    return fail("failed", "No attempt was made", attempts=attempts, **common)
