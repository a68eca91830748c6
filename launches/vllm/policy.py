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
the host's next free port replaces it (at most ``PORT_TRIES`` ports) and the launch goes on. When
another process takes it between that check and vLLM's bind (two hosts on one machine picking from
the same range), the attempt ends ``port_in_use`` and the next attempt starts at the same length on
the host's next free port, within ``max_attempts``. A port from the config is never replaced: a busy
one fails the launch at once.

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
    itself (None when vLLM's output decided); ``served`` is the length a ready server serves;
    ``picked_port`` is the attempt's port when the host picked it (None: the config's port).
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
    picked_port: int | None = None

    @property
    def last(self) -> bool:
        return self.number >= self.max_attempts


@dataclass(frozen=True)
class Step:
    """The launcher's next step: ``start`` again at ``length`` (after stopping a server that is ready
    but above the cap, when ``stop_ready``), ``ready`` serving ``length``, or ``fail`` with ``reason``.

    ``learned``/``learned_from`` is what the launch has learned so far (``contract.is_ceiling``);
    ``announce`` asks for a ``limit_learned`` event now (a refusal's number, before the next start);
    ``max_num_seqs`` is the sequence count of the next start; ``new_port`` asks for the host's next
    free port for it. A ``start`` with a ``reason`` gives the finished attempt's verdict in words
    ("" keeps vLLM's own).
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
    new_port: bool = False


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
    if verdict.outcome == Outcome.PORT_IN_USE and known.picked_port is not None:
        return _port_taken(known, kept)
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


def _port_taken(known: Known, kept: dict[str, Any]) -> Step:
    """The step after vLLM found the port the host picked taken: the same length again on the host's
    next free port, or, on the last attempt, ``failed`` naming the host's port range."""
    taken = f"Port {known.picked_port} was taken by another process before vLLM could bind it"
    if known.last:
        reason = (
            f"{taken}; gave up after {known.number} attempts. Free some ports of the host's port range "
            "(AIFRED_PORT_RANGE) or give each host on this machine its own range."
        )
        return Step("fail", outcome="failed", reason=reason, **kept)
    reason = f"{taken}; the host's next free port is tried."
    return Step("start", length=known.requested, reason=reason, new_port=True, **kept)


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


class _Ended(Exception):
    """The launch failed before an attempt could be watched (no version, no model config, a bad option,
    a busy port, a process that does not start); ``result`` is what ``run_launch`` returns."""

    def __init__(self, result: LaunchResult) -> None:
        super().__init__(result.reason)
        self.result = result


@dataclass(frozen=True)
class _Watched:
    """What watching one attempt found.

    ``verdict`` is vLLM's (read again after the ready line, so it holds the KV capacity and auto-fit
    lines); ``stopped_by`` is ``Outcome.TIMEOUT`` or ``Outcome.CANCELLED`` when the launcher ended the
    attempt itself (None when vLLM's output decided); ``served`` is the length in tokens a ready
    server serves (None unless ``ready``); ``message`` is the attempt's reason in words.
    """

    attempt: _Attempt
    verdict: Verdict
    stopped_by: Outcome | None
    ready: bool
    served: int | None
    stopped_by_launcher: bool
    message: str

    @property
    def process(self) -> VllmProcess:
        return self.attempt.process


class _LaunchRun:
    """One run of the launch policy: what it decided before the first start and what it has learned
    since, as named attributes, with one method per step of ``run``.

    Set once by ``_prepare``: ``version`` (vLLM's, "0.14.1"), ``wanted`` (tokens), ``yarn`` (None
    without a YaRN factor), ``env`` (the environment of every start) and ``common`` (the fields
    every result carries). Changed by the attempts: ``options`` (the port, ``--max-num-seqs``),
    ``requested`` (the next start's ``--max-model-len``: tokens or "auto"), ``attempts``,
    ``learned``/``learned_from``, ``capacity`` (the last KV capacity vLLM logged, tokens),
    ``refused_before`` and ``max_num_seqs``.
    """

    version: str
    wanted: int
    yarn: YarnSetting | None
    env: dict[str, str]
    common: dict[str, Any]
    requested: int | str
    max_num_seqs: int | None
    started: float

    def __init__(
        self,
        request: LaunchRequest,
        on_event: EventCallback | None,
        cancel: threading.Event | None,
        before_retry: Callable[[], None] | None,
    ) -> None:
        self.request = request
        self.on_event = on_event
        self.cancel = cancel
        self.before_retry = before_retry
        self.options = request.options
        self.env_base = {**os.environ, **request.extra_env}
        self.attempts: list[AttemptResult] = []
        self.learned: int | None = None
        self.learned_from: str | None = None
        self.capacity: int | None = None
        self.refused_before = False

    def run(self) -> LaunchResult:
        """Prepare, then start attempts until ``next_step`` says ready or fail (see ``run_launch``)."""
        try:
            self._prepare()
            for number in range(1, max(1, self.request.max_attempts) + 1):
                argv = self._argv()
                log_path = self._log_path(number)
                argv, picked = self._attempt_port(argv)
                self._emit(AttemptStartedPayload(attempt=number, argv=argv, requested_len=self.requested))
                self._make_sure_port_free(number, argv, picked)
                watched = self._watch(self._start(number, argv, log_path))
                step = next_step(self._known(number, watched))
                self._record(number, argv, log_path, watched, step)
                result = self._carry_out(step, watched)
                if result is not None:
                    return result
            return self._failure("failed", "No attempt was made", attempts=self.attempts, **self.common)
        except _Ended as ended:
            return ended.result

    @property
    def url(self) -> str:
        """The server's base URL on the current ``options`` ("http://127.0.0.1:8000")."""
        return f"http://{self.options.host}:{self.options.port}"

    def _emit(self, payload: Payload) -> None:
        """Send ``payload`` to ``on_event`` as ``(kind, dict)``; nothing without a callback."""
        if self.on_event is not None:
            self.on_event(payload.kind, payload.to_dict())

    def _failure(self, outcome: str, reason: str, **extra: Any) -> LaunchResult:
        """Emit ``failed`` and return the failed result; ``extra`` are further ``LaunchResult`` fields."""
        self._emit(FailedPayload(reason=reason, outcome=Outcome(outcome)))
        return LaunchResult(outcome=outcome, reason=reason, **extra)

    def _prepare(self) -> None:
        """Decide what holds for every attempt: vLLM's version, the model's lengths, the wanted length,
        the YaRN setting, the learned ``--max-num-seqs`` and the first start's length (``first_length``).

        Raises ``_Ended`` (a ``failed`` result, event emitted) when the version cannot be detected or
        the model's config cannot be read.
        """
        request = self.request
        self.version = self._version()
        native, default, theta = self._lengths()
        factor = request.yarn_factor or 1.0
        self.wanted = wanted_length(native, factor, request.context_cap)
        self.yarn = YarnSetting(factor, native, theta) if factor != 1.0 else None
        self.common = {"vllm_version": self.version, "native_context": native, "wanted_len": self.wanted}
        self.max_num_seqs = request.max_num_seqs
        if self.max_num_seqs:
            self.options = replace(self.options, max_num_seqs=int(self.max_num_seqs))
        self.requested = first_length(
            self.wanted,
            version=self.version,
            default=default,
            with_yarn=self.yarn is not None,
            known_limit=request.known_limit,
            ceiling_hint=request.ceiling_hint,
        )
        self.env = build_env(request.gpu_uuids or None, self.env_base)
        self.started = time.time()

    def _version(self) -> str:
        """The request's vLLM version, else the one ``base_command`` reports. Raises ``_Ended``."""
        if self.request.vllm_version is not None:
            return self.request.vllm_version
        try:
            return detect_vllm_version(self.request.base_command, env=self.env_base)
        except VllmVersionError as exc:
            raise _Ended(self._failure("failed", str(exc))) from exc

    def _lengths(self) -> tuple[int, int, float | None]:
        """The model's native and default context (tokens; the default is the native one when the
        model has none of its own) and its RoPE theta, from the request or else read from the model's
        config for this vLLM version. Raises ``_Ended`` when the config cannot be read."""
        request, options = self.request, self.options
        native, default, theta = request.native_context, request.default_context, request.rope_theta
        if native is None:
            try:
                facts = read_model_facts(
                    options.model, options.revision, token=request.extra_env.get("HF_TOKEN")
                )
            except ModelConfigError as exc:
                raise _Ended(self._failure("failed", str(exc), vllm_version=self.version)) from exc
            native, default = facts.lengths_for_version(
                self.version, disable_sliding_window=has_flag(options.extra_args, "--disable-sliding-window")
            )
            theta = theta if theta is not None else facts.rope_theta
        return native, default or native, theta

    def _argv(self) -> list[str]:
        """vLLM's argv for a start at ``requested`` on the current options. Raises ``_Ended`` on an
        ``ArgvError`` (an option this vLLM version does not take)."""
        try:
            return build_argv(
                self.request.base_command,
                self.options,
                max_model_len=self.requested,
                vllm_version=self.version,
                yarn=self.yarn,
            )
        except ArgvError as exc:
            raise _Ended(self._failure("failed", str(exc), attempts=self.attempts, **self.common)) from exc

    def _log_path(self, number: int) -> str | None:
        """The file attempt ``number`` logs to under ``log_dir`` (created), or None without one."""
        log_dir = self.request.log_dir
        if not log_dir:
            return None
        os.makedirs(log_dir, exist_ok=True)
        return os.path.join(
            log_dir, f"launch-{self.request.launch_id or int(self.started)}-attempt-{number}.log"
        )

    def _attempt_port(self, argv: list[str]) -> tuple[list[str], bool]:
        """The port of the next start: a busy port the host picked is replaced by its next free one
        (``_free_picked_port``; ``options`` and ``argv`` then name it). Returns the argv to start and
        False when every port tried was busy or the host has none left. Raises ``_Ended`` when the
        argv cannot be rebuilt for the new port."""
        picked = _free_picked_port(self.options, self.request.next_port)
        if picked is not None and picked != self.options.port:
            self.options = replace(self.options, port=picked)
            argv = self._argv()
        return argv, picked is not None

    def _make_sure_port_free(self, number: int, argv: list[str], picked: bool) -> None:
        """Return when a port was picked and nothing answers there. Else whatever answers is not the
        server we would start: record attempt ``number`` as ``port_in_use`` without starting anything,
        emit its ``attempt_finished`` and raise ``_Ended`` with the failed launch."""
        if picked and not port_in_use(self.options.host, self.options.port):
            return
        now = time.time()
        if self.request.next_port is None:
            # The site refuses a fixed port its own launches hold (``LaunchConfig.port_problem``).
            message = (
                f"Port {self.options.port} on {self.options.host} is held by another process (not a launch "
                "of this site); choose another port in the config, or leave it empty so the host picks one."
            )
        else:
            message = (
                f"Every port the host picked on {self.options.host} ({PORT_TRIES} tries) was already in use "
                "by another process; free some ports of the host's port range (AIFRED_PORT_RANGE)."
            )
        self.attempts.append(
            AttemptResult(
                number,
                self.requested,
                argv,
                str(Outcome.PORT_IN_USE),
                started_at=now,
                ended_at=now,
                message=message,
            )
        )
        self._emit(
            AttemptFinishedPayload(
                attempt=number, outcome=Outcome.PORT_IN_USE, message=message, started_at=now, ended_at=now
            )
        )
        raise _Ended(self._failure("failed", message, attempts=self.attempts, **self.common))

    def _start(self, number: int, argv: list[str], log_path: str | None) -> _Attempt:
        """Start vLLM for attempt ``number``. Raises ``_Ended`` when the process cannot start."""
        try:
            return _Attempt(number, argv, self.env, log_path, self._emit)
        except ProcessStartError as exc:
            raise _Ended(self._failure("failed", str(exc), attempts=self.attempts, **self.common)) from exc

    def _watch(self, attempt: _Attempt) -> _Watched:
        """Watch ``attempt`` for at most ``ready_timeout`` seconds (or until ``cancel``). A server
        that is not ready is stopped (``FAILED_STOP_GRACE``); a ready one is left running and asked
        for the length it serves (else vLLM's logged length, else the requested one)."""
        deadline = time.monotonic() + self.request.ready_timeout
        verdict, stopped_by = attempt.watch(self.url, self.options.port, deadline, self.cancel)
        process = attempt.process
        ready = stopped_by is None and verdict.outcome == Outcome.READY
        if ready:
            # vLLM's logger (KV capacity, auto-fit) writes to stdout and uvicorn's ready line to stderr:
            # take every line written before the ready line into the verdict.
            process.catch_up()
            attempt.drain()
            verdict = attempt.watcher.verdict()
        stopped_by_launcher = not ready and process.poll() is None
        if not ready:
            process.stop(FAILED_STOP_GRACE)
            attempt.drain()
        served: int | None = None
        if ready:
            served = read_served_max_model_len(self.url) or verdict.max_model_len
            if served is None and isinstance(self.requested, int):
                served = self.requested
        message = verdict.message
        if stopped_by == Outcome.TIMEOUT:
            message = f"vLLM was not ready within {self.request.ready_timeout:g} s"
        elif stopped_by == Outcome.CANCELLED:
            message = "The launch was cancelled"
        return _Watched(
            attempt=attempt,
            verdict=verdict,
            stopped_by=Outcome(stopped_by) if stopped_by is not None else None,
            ready=ready,
            served=served,
            stopped_by_launcher=stopped_by_launcher,
            message=message,
        )

    def _record(
        self, number: int, argv: list[str], log_path: str | None, watched: _Watched, step: Step
    ) -> None:
        """Append attempt ``number`` to ``attempts``, emit ``attempt_finished`` and keep the KV
        capacity (tokens) vLLM logged, if it logged one. The attempt's message is ``step``'s reason
        when ``step`` starts again with one (a picked port taken), else the verdict's."""
        verdict, process = watched.verdict, watched.process
        outcome = str(watched.stopped_by or verdict.outcome)
        ended = time.time()
        result = AttemptResult(
            number=number,
            requested_len=self.requested,
            argv=argv,
            outcome=outcome,
            parsed_len=(
                watched.served if watched.ready else verdict.max_model_len or verdict.derived_max_model_len
            ),
            exit_code=process.returncode if not watched.ready else None,
            started_at=watched.attempt.started_at,
            ended_at=ended,
            duration=ended - watched.attempt.started_at,
            message=step.reason if step.action == "start" and step.reason else watched.message,
            log_tail=list(verdict.tail),
            log_path=log_path,
            kv_capacity_tokens=verdict.kv_capacity_tokens,
            decided_at=watched.attempt.decided_at,
            stopped_by_launcher=watched.stopped_by_launcher,
        )
        self.attempts.append(result)
        self._emit(
            AttemptFinishedPayload(
                attempt=number,
                outcome=Outcome(outcome),
                parsed_len=result.parsed_len,
                exit_code=result.exit_code,
                stopped_by_launcher=result.stopped_by_launcher,
                message=result.message,
                log_tail=result.log_tail,
                started_at=result.started_at,
                ended_at=result.ended_at,
            )
        )
        if verdict.kv_capacity_tokens:
            self.capacity = verdict.kv_capacity_tokens

    def _known(self, number: int, watched: _Watched) -> Known:
        """What ``next_step`` reads after attempt ``number``."""
        return Known(
            verdict=watched.verdict,
            requested=self.requested,
            wanted=self.wanted,
            number=number,
            max_attempts=self.request.max_attempts,
            message=watched.message,
            stopped_by=watched.stopped_by,
            served=watched.served,
            refused_before=self.refused_before,
            with_yarn=self.yarn is not None,
            max_num_seqs=self.max_num_seqs,
            learned=self.learned,
            learned_from=self.learned_from,
            picked_port=self.options.port if self.request.next_port is not None else None,
        )

    def _carry_out(self, step: Step, watched: _Watched) -> LaunchResult | None:
        """Do what ``step`` says: keep what it learned, then return the failed or ready result, or
        (None) stop a ready server above the cap when asked, move to the host's next free port when
        asked and set the next start's length. Fails when the host has no free port left."""
        self._learn(step)
        if step.new_port and self.request.next_port is not None:
            following = self.request.next_port(self.options.port)
            if following is None:
                reason = (
                    f"Port {self.options.port} was taken by another process before vLLM could bind it and "
                    "the host has no free port left; free some ports of its port range (AIFRED_PORT_RANGE)."
                )
                step = replace(step, action="fail", reason=reason)
            else:
                self.options = replace(self.options, port=following)
        if step.action == "fail":
            return self._failure(
                step.outcome,
                step.reason,
                attempts=self.attempts,
                learned_limit=self.learned,
                learned_from=self.learned_from,
                kv_capacity_tokens=self.capacity,
                **self.common,
            )
        if step.action == "ready":
            return self._ready(watched)
        if step.stop_ready:
            watched.process.stop(STOP_GRACE)
        self.requested = step.length
        if self.before_retry is not None:
            self.before_retry()
        return None

    def _learn(self, step: Step) -> None:
        """Keep ``step``'s learned limit and ``--max-num-seqs``; emit ``limit_learned`` when it
        announces one (a refusal's number, before the next start)."""
        self.learned, self.learned_from = step.learned, step.learned_from
        self.refused_before = self.refused_before or step.refused
        if step.announce:
            self._emit(
                LimitLearnedPayload(
                    max_model_len=self.learned,
                    learned_from=self.learned_from,
                    kv_capacity_tokens=self.capacity,
                )
            )
        if step.max_num_seqs != self.max_num_seqs:
            self.max_num_seqs = step.max_num_seqs
            self.options = replace(self.options, max_num_seqs=self.max_num_seqs)

    def _ready(self, watched: _Watched) -> LaunchResult:
        """Emit ``limit_learned`` (when a length is known) and ``ready``; return the ready result, with
        the running process unless ``detect_only`` (then the server is stopped)."""
        process = watched.process
        # For "fits" the event carries the served length: a floor for the site to keep (none when
        # the served length is unknown). Only a hybrid model's learned sequence count travels.
        length = self.learned if self.learned is not None else watched.served
        if length is not None:
            self._emit(
                LimitLearnedPayload(
                    max_model_len=length,
                    learned_from=self.learned_from,
                    kv_capacity_tokens=self.capacity,
                    max_num_seqs=self.max_num_seqs or None,
                )
            )
        self._emit(
            ReadyPayload(
                url=self.url,
                max_model_len=watched.served,
                kv_capacity_tokens=self.capacity,
                pid=process.pid,
                pgid=process.pgid,
            )
        )
        if self.request.detect_only:
            process.stop(STOP_GRACE)
        return LaunchResult(
            outcome="ready",
            reason=watched.message,
            attempts=self.attempts,
            max_model_len=watched.served,
            learned_limit=self.learned,
            learned_from=self.learned_from,
            kv_capacity_tokens=self.capacity,
            url=self.url,
            pid=process.pid,
            pgid=process.pgid,
            process=None if self.request.detect_only else process,
            max_num_seqs=self.max_num_seqs,
            **self.common,
        )


def run_launch(
    request: LaunchRequest,
    *,
    on_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
    before_retry: Callable[[], None] | None = None,
) -> LaunchResult:
    """Start vLLM for ``request`` with the largest context the GPU holds and return how it ended.

    Follows the module docstring's rules: vLLM's version (``request.vllm_version`` or detected from
    ``base_command``) decides ``--max-model-len auto`` (0.14+) and how the model's lengths and YaRN
    overrides are read (``versions``); every later start is what ``next_step`` decides, for at most
    ``max_attempts`` starts. ``on_event(kind, payload)`` receives, in order, per attempt
    ``attempt_started``, ``log`` batches and ``attempt_finished`` (a ``limit_learned`` after a
    refusal with a number), then ``limit_learned`` (when a length is known) and ``ready``, or
    ``failed``. ``cancel`` set ends the running attempt as ``cancelled``; ``before_retry`` is called
    before each further start.

    Returns a ``LaunchResult``: ``outcome`` "ready" (with ``url``, ``pid``/``pgid``, the served
    ``max_model_len`` in tokens and the running ``process``, none when ``detect_only`` stopped it)
    or the failing outcome with its ``reason``. Raises nothing for vLLM's failures: a version or
    config that cannot be read, a bad option, a busy port or a process that does not start end as
    ``failed``.
    """
    return _LaunchRun(request, on_event, cancel, before_retry).run()
