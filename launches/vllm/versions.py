"""vLLM versions: finding out which one a host runs, and what that version can do.

The command line for YaRN and for automatic context fitting changed several times between vLLM
releases; every decision that depends on it goes through the predicates here.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from typing import Literal

from packaging.version import InvalidVersion, Version

YarnFlagForm = Literal[
    "rope_scaling_flag",
    "hf_overrides_rope_scaling",
    "hf_overrides_rope_parameters",
    "hf_overrides_rope_parameters_with_max_pos",
]

_VERSION_IN_TEXT = re.compile(r"\b(\d+\.\d+(?:\.\d+)*(?:[.\-+]?[A-Za-z0-9]+)*)\s*$")


class VllmVersionError(Exception):
    """The vLLM version is unknown, cannot be detected, or cannot do what is asked."""


def parse_version(text: str) -> Version:
    try:
        return Version(text.strip())
    except InvalidVersion as exc:
        raise VllmVersionError(f"{text!r} is not a vLLM version number (expected e.g. 0.11.0).") from exc


def _at_least(version: str | Version, floor: str) -> bool:
    parsed = version if isinstance(version, Version) else parse_version(version)
    return parsed >= Version(floor)


def supports_auto_max_model_len(version: str) -> bool:
    return _at_least(version, "0.14.0")


def uses_legacy_rope_type_key(version: str) -> bool:
    """Before 0.5.3.post1 vLLM read only ``type`` from the rope-scaling dict."""
    return not _at_least(version, "0.5.3.post1")


def yarn_multiplies_length(version: str) -> bool:
    """Up to 0.29.x vLLM derives the length as original x factor; from 0.30.0 it does not."""
    return not _at_least(version, "0.30.0")


def yarn_flag_form(version: str) -> YarnFlagForm:
    parsed = parse_version(version)
    if parsed < Version("0.4.3"):
        raise VllmVersionError(
            f"vLLM {version} cannot take YaRN settings on the command line (0.4.3 or later is needed); "
            "upgrade vLLM on this host or turn YaRN off."
        )
    if parsed < Version("0.11.1"):
        return "rope_scaling_flag"
    if parsed < Version("0.12.0"):
        return "hf_overrides_rope_scaling"
    if parsed < Version("0.30.0"):
        return "hf_overrides_rope_parameters"
    return "hf_overrides_rope_parameters_with_max_pos"


def version_query_command(base_command: list[str]) -> list[str]:
    """The argv that prints the version of the vLLM that ``base_command`` would start."""
    if not base_command:
        raise VllmVersionError("The vLLM command is empty; configure e.g. 'vllm serve'.")
    if base_command[-1] == "serve":
        return [*base_command[:-1], "--version"]
    if "-m" in base_command:
        python = base_command[: base_command.index("-m")]
        return [*python, "-c", "import vllm; print(vllm.__version__)"]
    return [*base_command, "--version"]


def detect_vllm_version(
    base_command: list[str], env: Mapping[str, str] | None = None, timeout: float = 60
) -> str:
    """Ask the installed vLLM for its version."""
    argv = version_query_command(base_command)
    run_env = dict(os.environ if env is None else env)
    try:
        done = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise VllmVersionError(
            f"{argv[0]} was not found; install vLLM on this host or configure the vLLM command."
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise VllmVersionError(f"{' '.join(argv)} did not answer within {timeout:g} s.") from exc
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise VllmVersionError(
            f"{' '.join(argv)} failed (exit {done.returncode}): {detail}. Check that vLLM is installed."
        )
    match = _VERSION_IN_TEXT.search(lines[-1])
    if not match:
        raise VllmVersionError(f"{' '.join(argv)} printed {lines[-1]!r}, which holds no version number.")
    version = match.group(1)
    parse_version(version)
    return version
