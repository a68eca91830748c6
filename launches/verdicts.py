"""Plain words for what happened to an attempt, as the live page and the history show it.

Plain Python, no Django: it takes the numbers of an ``attempt_finished`` event. A negative exit code
is the signal that ended the process, and is said so ("killed by signal 9 (SIGKILL)"). The outcome names are
those of ``launches.contract.Outcome``; an unknown one is shown as
given rather than hidden, so a new outcome from a newer worker is still readable.
"""

from __future__ import annotations

import re
import signal

from launches.contract import Outcome

OUTCOME_LABELS: dict[str, str] = {str(outcome): outcome.label for outcome in Outcome}


def tokens(value: int | None) -> str:
    return "an unknown number of" if value is None else f"{value:,}"


def describe_attempt(
    outcome: str,
    requested_len: int | str | None,
    parsed_len: int | None = None,
    exit_code: int | None = None,
    next_len: int | None = None,
    cause: str | None = None,
    message: str | None = None,
) -> str:
    """One sentence: what vLLM said, and what the launcher does about it.

    ``next_len`` is the length of the attempt that followed, when there was one: it is what really
    happened, so it is preferred over guessing the policy's next step. ``requested_len`` is "auto"
    (or None) for an auto-fit start (vLLM 0.14+ takes ``--max-model-len auto``). ``cause`` is the
    launch's outcome code, for an attempt the launch's end cut short (``interrupted``). ``message`` is
    the attempt's own (the event's ``message``): for ``port_in_use`` it names the port and whether it
    was the config's or one the host picked, and is shown as it is.
    """
    if not isinstance(requested_len, int):
        requested_len = None
    if not isinstance(next_len, int):
        next_len = None
    asked = "the automatic length" if requested_len is None else f"{requested_len:,} tokens"
    restart = f" — restarting with {next_len:,}" if next_len else ""
    if outcome == "ready":
        served = parsed_len or requested_len
        return f"vLLM is ready with {tokens(served)} tokens of context."
    if outcome == "context_too_long":
        if parsed_len:
            return f"KV cache too small for {asked}; vLLM says {parsed_len:,} fit{restart}"
        return f"KV cache too small for {asked}; vLLM printed no length that fits{restart}"
    if outcome == "auto_fit":
        return f"vLLM's auto-fit reduced the length to {tokens(parsed_len)} tokens{restart}"
    if outcome == "gpu_busy":
        return (
            "The GPU is busy: another process holds memory vLLM needs. "
            "This says nothing about the context, so no limit was learned."
        )
    if outcome == "weights_do_not_fit":
        return "The model's weights do not fit in this GPU's memory; no context length can help."
    if outcome == "length_above_model":
        return f"{asked.capitalize()} is above what the model allows; enable YaRN or lower the cap{restart}"
    if outcome == "port_in_use":
        if message:
            return sentence(message)
        if next_len:
            return "Another process took the port the host picked; the next attempt uses its next free port."
        return "Another process on the host holds the port; the launch's reason names it and what to do."
    if outcome == "max_num_seqs_too_high":
        return (
            "This hybrid model's Mamba cache holds fewer sequences than max_num_seqs; "
            f"restarting with the number vLLM named{restart}. This is not a context limit."
        )
    if outcome == "model_not_found":
        return "vLLM could not find the model; check its repo id, revision or local path."
    if outcome == "timeout":
        return "vLLM did not become ready in time and was stopped."
    if outcome == "cancelled":
        return "Stopped on request."
    if outcome == "crashed":
        how = "ended" if exit_code is None else exit_words(exit_code)
        how = f"was {how}" if how.startswith("killed") else how
        return f"vLLM {how} for a reason the launcher does not recognise; see the log tail."
    if outcome == "interrupted":
        return f"Interrupted: {interruption(cause)}, before vLLM gave a verdict."
    if outcome in LAUNCH_ENDINGS:
        return f"Attempt ended: {LAUNCH_ENDINGS[outcome]}{restart}."
    label = OUTCOME_LABELS.get(outcome, outcome or "unknown")
    return f"Attempt ended: {label}{restart}"


# How a launch ended when no attempt's verdict says it (``Outcome``'s launch-level values), as the
# reason an attempt still running then was cut short.
LAUNCH_ENDINGS: dict[str, str] = {
    Outcome.INTERRUPTED: "the launch ended before vLLM gave a verdict",
    Outcome.REFUSED: "the GPU host refused the launch",
    Outcome.FAILED: "the launch failed",
    Outcome.STOPPED: "the launch was stopped",
    Outcome.LOST: "the GPU host lost the server",
    Outcome.CRASH_LOOP: "vLLM crashed too often and is no longer restarted",
    Outcome.WORKER_RESTARTED: "the GPU worker restarted",
    Outcome.NEVER_RECEIVED: "the GPU host never received the launch",
    Outcome.START_TIMEOUT: "the start took longer than allowed",
    Outcome.STOP_UNCONFIRMED: "the GPU host did not confirm the stop",
    Outcome.HOST_FORGOT: "the GPU host no longer knows the launch",
    Outcome.CANCELLED: "the launch was cancelled",
    Outcome.TIMEOUT: "vLLM did not become ready in time",
}


def sentence(text: str) -> str:
    """``text`` stripped, ending with a full stop (one added when it ends with none of ``.!?``)."""
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else f"{text}."


def interruption(cause: str | None) -> str:
    """Why an attempt was cut short, from the launch's outcome code ``cause``: "the GPU worker
    restarted"; "the launch ended" when the cause is unknown or says no more."""
    if cause == Outcome.INTERRUPTED:
        return "the launch ended"
    return LAUNCH_ENDINGS.get(cause or "", "the launch ended")


def signal_words(number: int) -> str:
    """A signal number in words: 9 -> "signal 9 (SIGKILL)"; "signal 99" for one Python does not name."""
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def exit_words(exit_code: int) -> str:
    """A process's return code in words: 1 -> "exited with code 1"; a negative code is the signal that
    ended it (as Python's subprocess reports it): -9 -> "killed by signal 9 (SIGKILL)"."""
    if exit_code < 0:
        return f"killed by {signal_words(-exit_code)}"
    return f"exited with code {exit_code}"


# How a crash's reason introduces vLLM's last log lines (live.js splits the summary at it too).
LOG_TAIL_MARK = "\nLast log lines:\n"

_NEGATIVE_CODE = re.compile(r"\b(exited with code|exit code) -(\d+)")


def describe_restart(
    restarts: int, restart_limit: int, next_try_in: float, exit_code: int | None = None, reason: str = ""
) -> str:
    """A kept-up server's crash and the restart that follows, in one sentence (``next_try_in`` in
    seconds): "The server exited (killed by signal 9 (SIGKILL)); restarting 1 of 3 in 0.5 s."
    ``exit_code`` as Python's subprocess reports it; without one, ``reason`` (signals said by name)."""
    if exit_code is not None:
        how = f" ({exit_words(exit_code)})"
    elif reason:
        how = f" ({with_signal_names(reason).rstrip('.')})"
    else:
        how = ""
    of = f" of {restart_limit}" if restart_limit else ""
    return f"The server exited{how}; restarting {restarts}{of} in {next_try_in:g} s."


# What the live page says of an event that arrived after its launch had ended (launches.events).
LATE_EVENT = "arrived after the launch had ended; kept in the history, not applied"


def with_signal_names(text: str) -> str:
    """``text`` with each negative exit code said as the signal it is: "vLLM exited with code -9"
    -> "vLLM was killed by signal 9 (SIGKILL)". For messages a GPU worker wrote with the bare code;
    vLLM's own log lines after ``LOG_TAIL_MARK`` are left as vLLM wrote them."""

    def words(match: re.Match) -> str:
        was = "was " if match.group(1).startswith("exited") else ""
        return f"{was}killed by {signal_words(int(match.group(2)))}"

    sentence, mark, log = text.partition(LOG_TAIL_MARK)
    return _NEGATIVE_CODE.sub(words, sentence) + mark + log


def describe_exit(exit_code: int | None, stopped_by_launcher: bool = False, outcome: str = "") -> str:
    """How vLLM's process ended, in words, or "—" while it runs or when it was left serving.

    "exited with code 1"; "killed by signal 9 (SIGKILL)" (a negative code is a signal, as Python's
    subprocess reports it). ``stopped_by_launcher``: the launcher stopped it on the attempt's verdict
    (``outcome``) with SIGTERM, then SIGKILL if it lingered, and ``exit_code`` is vLLM's answer:
    "stopped by the launcher after vLLM's refusal (SIGTERM; vLLM exited with code 0)".
    """
    if exit_code is None:
        return "—"
    if not stopped_by_launcher:
        return exit_words(exit_code)
    why = STOP_REASONS.get(outcome, "after vLLM's refusal")
    if exit_code >= 0:
        return f"stopped by the launcher {why} (SIGTERM; vLLM exited with code {exit_code})"
    if exit_code == -signal.SIGKILL:
        return f"stopped by the launcher {why} (SIGTERM, then SIGKILL; vLLM was killed)"
    if exit_code == -signal.SIGTERM:
        return f"stopped by the launcher {why} (SIGTERM; vLLM was killed by it)"
    return f"stopped by the launcher {why} (vLLM was {exit_words(exit_code)})"


# Why the launcher stopped a vLLM that was still running, by the attempt's outcome; any other outcome
# is a refusal vLLM printed.
STOP_REASONS: dict[str, str] = {
    Outcome.TIMEOUT: "when the time to become ready ran out",
    Outcome.CANCELLED: "on request",
    Outcome.INTERRUPTED: "when the launch ended",
    Outcome.READY: "on request",
}
