"""Launches made by a test, recorded so their output is kept and their servers are stopped.

Everything vLLM and the launcher printed goes to test-artifacts/real-vllm/<name>/ (git-ignored), so the
stand-in can be compared with the real thing after a run.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.real_vllm import support

ARTIFACTS = support.REPO_ROOT / "test-artifacts" / "real-vllm"


@dataclass
class Launches:
    folder: Path
    vllm_python: str
    model_dir: Path
    runs: list[support.LauncherRun] = field(default_factory=list)

    def run(self, kv_cache_gib: int, **options) -> support.LauncherRun:
        number = len(self.runs) + 1
        # The launcher writes each attempt's full vLLM output here (one folder per launch, since it
        # names the files after the attempt number).
        log_dir = self.folder / f"launch-{number}-vllm-logs"
        run = support.run_launcher(
            self.vllm_python, self.model_dir, support.free_port(), kv_cache_gib, log_dir=log_dir, **options
        )
        self.runs.append(run)
        self.save(run, number)
        return run

    def save(self, run: support.LauncherRun, number: int) -> None:
        """Keep the launcher's JSON, stdout and stderr, and each attempt's log tail, beside the vLLM logs."""
        self.folder.mkdir(parents=True, exist_ok=True)
        prefix = self.folder / f"launch-{number}"
        record = {"argv": run.argv, "exit_code": run.exit_code, "seconds": run.seconds, "result": run.result}
        prefix.with_suffix(".json").write_text(json.dumps(record, indent=2))
        prefix.with_suffix(".stdout.txt").write_text(run.stdout)
        prefix.with_suffix(".stderr.txt").write_text(run.stderr)
        for attempt in (run.result or {}).get("attempts", []):
            tail = self.folder / f"launch-{number}-attempt-{attempt.get('number')}-tail.txt"
            tail.write_text(support.log_tail(attempt))

    def pgids(self) -> list[int]:
        return [int(run.result["pgid"]) for run in self.runs if run.result and run.result.get("pgid")]

    def stop_all(self) -> None:
        for pgid in self.pgids():
            support.stop_group(pgid)


# vLLM names its processes in every log line: "(APIServer pid=123) INFO ...", "(EngineCore pid=130) ...".
LOGGED_PROCESS = re.compile(r"\((APIServer|EngineCore\w*|Worker\w*) pid=(\d+)\)")


def logged_processes(folder: Path) -> dict[int, str]:
    """The vLLM processes named in the attempt logs under `folder`: pid -> role."""
    found: dict[int, str] = {}
    for log in folder.glob("*/*.log"):
        for role, pid in LOGGED_PROCESS.findall(log.read_text(errors="replace")):
            found[int(pid)] = role
    return found


def assert_no_vllm_left(launches: Launches, before: set[int]) -> None:
    logged = logged_processes(launches.folder)
    # The launcher starts every attempt in a process group of its own led by the API server, so the
    # groups are the reported pgid and the API server of every attempt, refused ones included.
    groups = set(launches.pgids()) | {pid for pid, role in logged.items() if role == "APIServer"}
    for pgid in sorted(groups):
        assert not support.group_members(pgid), f"processes of group {pgid} are still running"
    running = support.vllm_server_pids(only_ours=False)
    left = {pid: role for pid, role in logged.items() if pid in running}
    assert not left, f"vLLM processes named in the logs are still running: {left}"
    # Other people's vLLM servers may share the machine: only this run's API servers count here
    # (see vllm_server_pids), and of those only the ones started since `before`.
    left_servers = support.vllm_server_pids() - before
    assert not left_servers, f"vLLM API servers left running: {sorted(left_servers)}"


@contextmanager
def recorded_launches(name: str, vllm_python: str, model_dir: Path) -> Iterator[Launches]:
    """Launches whose servers are all stopped at the end, checked to leave no vLLM process behind."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    shutil.rmtree(folder, ignore_errors=True)
    before = support.vllm_server_pids()
    launches = Launches(folder, vllm_python, model_dir)
    try:
        yield launches
    finally:
        launches.stop_all()
    assert_no_vllm_left(launches, before)
