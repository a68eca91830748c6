"""Validation of operator-supplied extra vLLM arguments, and which of them change memory.

The site builds the parts of the command line that drive the launch policy itself; an extra argument
that repeats one of them would silently fight the policy (two ``--max-model-len`` values, a second
``--port``), so it is refused with a message that names the flag and the field to use instead.

vLLM's parser accepts more spellings than the documented one (vLLM 0.32.0,
``vllm/utils/argparse_utils.py`` ``FlexibleArgumentParser``, on top of Python's ``argparse`` with
``allow_abbrev``): underscores for dashes (``--max_model_len``), ``--flag=value``, any unambiguous
prefix (``--max-model``, ``--gpu-memory``, ``--por``), ``--no-`` for boolean flags, and dotted paths
into JSON arguments (``--hf-overrides.max_position_embeddings 4096``). Every one of them is refused
for a managed flag.

Every other extra argument changes the memory vLLM uses, and so the context that fits, unless it is
on ``MEMORY_NEUTRAL_FLAGS`` (names, keys, templates, parsers, logging); those that are not become part
of the memory fingerprint (``memory_relevant_args``), so a limit learned with them is never applied to
a launch without them.
"""

from __future__ import annotations

import shlex

from launches.contract import MEMORY_OPTION_FLAGS

# flag -> the launch-config field that controls it (for the error message)
MANAGED_FLAGS: dict[str, str] = {
    "--max-model-len": "the context cap (the launcher chooses the length)",
    "--port": "port",
    "--host": "the host's bind address",
    "--model": "model",
    **{flag: name for name, flag in MEMORY_OPTION_FLAGS.items()},
    "-q": "quantization",
    "-tp": "tensor_parallel_size",
    "--rope-scaling": "the YaRN settings",
    "--hf-overrides": "the YaRN settings",
    "--served-model-name": "served model name",
    "--revision": "the model's revision",
    "--api-key": "a server secret, which must not be stored in a launch config",
}

# Flags that do not change how much memory vLLM takes or how many tokens its KV cache holds.
# Value-taking flags list how many values follow when not given with "=".
MEMORY_NEUTRAL_FLAGS: dict[str, int] = {
    "--chat-template": 1,
    "--chat-template-content-format": 1,
    "--response-role": 1,
    "--tool-call-parser": 1,
    "--tool-parser-plugin": 1,
    "--enable-auto-tool-choice": 0,
    "--reasoning-parser": 1,
    "--uvicorn-log-level": 1,
    "--disable-log-requests": 0,
    "--enable-log-requests": 0,
    "--disable-log-stats": 0,
    "--max-log-len": 1,
    "--disable-uvicorn-access-log": 0,
    "--disable-fastapi-docs": 0,
    "--root-path": 1,
    "--allowed-origins": 1,
    "--enable-prompt-tokens-details": 0,
    "--return-tokens-as-token-ids": 0,
}


class ExtraArgsError(ValueError):
    """Extra vLLM arguments that cannot be used as given."""


def canonical_flag(token: str) -> str:
    """``--max_model_len=5`` -> ``--max-model-len``; ``--hf-overrides.a.b`` -> ``--hf-overrides``.

    Only the long form is rewritten (vLLM turns underscores into dashes in flag names only).
    """
    name = token.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].split(".", 1)[0].replace("_", "-")
    return name


def managed_flag(token: str) -> str | None:
    """The managed flag ``token`` would set in vLLM's parser, or None.

    ``token`` is one argv element starting with ``-``. Abbreviations count when they are a prefix of
    a managed flag (vLLM would take them for it, or refuse them as ambiguous).
    """
    name = canonical_flag(token)
    candidates = [name]
    if name.startswith("--no-"):
        candidates.append("--" + name[5:])
    for candidate in candidates:
        if candidate in MANAGED_FLAGS:
            return candidate
        if candidate.startswith("--") and len(candidate) > 3:
            matches = [flag for flag in MANAGED_FLAGS if flag.startswith(candidate)]
            if matches:
                return matches[0]
    return None


def parse_extra_args(text: str) -> list[str]:
    """Split an operator's extra arguments into an argv list and refuse managed flags.

    The text is split like a POSIX shell would split it, but it is never run by a shell: the result
    is appended to an argv list. Raises ``ExtraArgsError`` naming the flag and the field to use.
    """
    try:
        tokens = shlex.split(text or "")
    except ValueError as exc:
        raise ExtraArgsError(f"Extra arguments could not be split ({exc}); check the quotes.") from exc
    for token in tokens:
        if not token.startswith("-") or _is_number(token):
            continue
        flag = managed_flag(token)
        if flag is not None:
            spelled = token.split("=", 1)[0]
            as_written = "" if spelled == flag else f" (written {spelled})"
            raise ExtraArgsError(
                f"{flag}{as_written} is managed by the launcher; set {MANAGED_FLAGS[flag]} instead of "
                "passing it in the extra arguments."
            )
    return tokens


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def has_flag(extra_args: list[str] | tuple[str, ...], flag: str) -> bool:
    """Whether ``extra_args`` set ``flag`` (``--a-b``) in any spelling vLLM reads as it."""
    return any(token.startswith("-") and canonical_flag(token) == flag for token in extra_args)


def memory_relevant_args(extra_args: list[str] | tuple[str, ...]) -> list[str]:
    """The extra arguments that change memory, normalised (``--flag=value`` to ``--flag value``,
    underscores to dashes), in their order; the ``MEMORY_NEUTRAL_FLAGS`` and their values dropped.
    """
    kept: list[str] = []
    tokens = list(extra_args)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not token.startswith("-") or _is_number(token):
            kept.append(token)
            continue
        flag = canonical_flag(token)
        if flag in MEMORY_NEUTRAL_FLAGS:
            if "=" not in token:
                index += MEMORY_NEUTRAL_FLAGS[flag]
            continue
        name, sep, value = token.partition("=")
        if name.startswith("--"):
            head, dot, path = name[2:].partition(".")
            name = "--" + head.replace("_", "-") + dot + path
        kept.append(name)
        if sep:
            kept.append(value)
    return kept
