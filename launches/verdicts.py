"""Plain words for what happened to an attempt, as the live page and the history show it.

Plain Python, no Django: it takes the numbers of an ``attempt_finished`` event. The outcome names are
those of ``launches.contract.Outcome``; an unknown one is shown as
given rather than hidden, so a new outcome from a newer worker is still readable.
"""

from __future__ import annotations

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
) -> str:
    """One sentence: what vLLM said, and what the launcher does about it.

    ``next_len`` is the length of the attempt that followed, when there was one: it is what really
    happened, so it is preferred over guessing the policy's next step. ``requested_len`` is "auto"
    (or None) for an auto-fit start (vLLM 0.14+ takes ``--max-model-len auto``).
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
        return (
            "The port is already in use on the host by another process. A port fixed in the config: "
            "choose another one there; a port the host picks: free ports of its range."
        )
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
        code = "" if exit_code is None else f" (exit code {exit_code})"
        return f"vLLM exited{code} for a reason the launcher does not recognise; see the log tail."
    label = OUTCOME_LABELS.get(outcome, outcome or "unknown")
    return f"Attempt ended: {label}{restart}"


def describe_exit(exit_code: int | None, stopped_by_launcher: bool = False) -> str:
    """How vLLM's process ended, in words: "exit code 1", "killed by the launcher (SIGTERM)", or "—"
    while it runs or when it was left serving. A negative code is the signal that ended it (as
    Python's subprocess reports it); the launcher is what sends signals to its servers.
    ``stopped_by_launcher``: the launcher stopped it (SIGTERM) on its verdict, and vLLM exited with
    ``exit_code`` on that signal: "killed by the launcher (SIGTERM, exit code 0)"."""
    if exit_code is None:
        return "—"
    if stopped_by_launcher and exit_code >= 0:
        return f"killed by the launcher (SIGTERM, exit code {exit_code})"
    if exit_code < 0:
        import signal

        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by the launcher ({name})"
    return f"exit code {exit_code}"
