"""`make run`'s script serves the admin, creates a working admin login, and Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


class RunScript:
    """scripts/run.py as `make run` starts it, with its own var/ folder, port and Redis URL."""

    def __init__(self, tmp_path: Path, redis_url: str, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "run.log"
        self.env = env = {
            **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "AIFRED_ADMIN_PASSWORD"}},
            "AIFRED_VAR_DIR": str(tmp_path),
            "REDIS_URL": redis_url,
            "AIFRED_CONTROL_QUEUE": f"control-run-test-{self.port}",
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "scripts/run.py", "--bind", f"127.0.0.1:{self.port}", *extra],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_for_the_site(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/admin/login/", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.5)
        pytest.fail(f"the site did not answer within 90 s:\n{self.log.read_text()[-3000:]}")

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args, "--verbosity=0"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=60)


def test_the_run_script_serves_the_admin_to_the_generated_admin_and_stops_everything(tmp_path):
    run = RunScript(tmp_path, os.environ.get("AIFRED_TEST_RUN_REDIS_URL", "redis://127.0.0.1:6379/12"))
    base = run.base
    try:
        run.wait_for_the_site()
        password = re.search(
            r"Created administrator 'admin' with password: (\S+)", run.log.read_text()
        ).group(1)
        session = requests.Session()
        session.get(f"{base}/admin/login/", timeout=5)
        response = session.post(
            f"{base}/admin/login/?next=/admin/",
            data={
                "username": "admin",
                "password": password,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": f"{base}/admin/login/"},
            timeout=10,
        )
        assert response.url.endswith("/admin/"), "the generated password did not log in"
        for path in [
            "gpus/host",
            "gpus/gpuprofile",
            "gpus/gpu",
            "gpus/modelspec",
            "gpus/detectedlimit",
            "launches/launchconfig",
            "launches/launch",
            "launches/launchattempt",
            "launches/launchevent",
        ]:
            assert f'href="/admin/{path}/"' in response.text, f"{path} missing from the admin index"
        assert password not in response.text
        workers = _children_of(run.process.pid)
        assert len(workers) >= 3, "web, control worker and GPU worker should all be running"
        if not Path("/dev/nvidia0").exists():
            assert "`make demo` shows the whole flow with two simulated GPU hosts" in run.log.read_text()
    finally:
        run.ctrl_c()
    time.sleep(0.5)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), pid


def test_without_a_redis_answering_the_run_script_starts_a_private_one_and_stops_it(tmp_path):
    import redis

    url = f"redis://127.0.0.1:{free_port()}/0"
    run = RunScript(tmp_path, url)
    try:
        run.wait_for_the_site()
        assert redis.Redis.from_url(url).ping()
        assert (tmp_path / "redis").is_dir(), "the private Redis keeps its files under var/redis"
    finally:
        run.ctrl_c()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


LAUNCH_ON_THE_H100 = """
from launches.models import Launch, LaunchConfig
config = LaunchConfig.objects.get(host__name="lab-h100")
config.port = {port}
config.save()
print(Launch.objects.start(config, None).pk)
"""

LAUNCH_STATE = """
from gpus.models import Host
from launches.models import Launch
launch = Launch.objects.get(pk={pk})
print(launch.status, Host.objects.get(name="lab-h100").running_servers == [], launch.reason, sep="|")
"""


def test_stopping_the_demo_records_its_running_server_as_stopped_by_the_run_script(tmp_path):
    # A private Redis: the demo's host queues have fixed names.
    run = RunScript(tmp_path, f"redis://127.0.0.1:{free_port()}/0", "--demo")
    try:
        run.wait_for_the_site()
        deadline = time.monotonic() + 60
        # Refused until the simulated host's first report arrives.
        while (started := run.manage("shell", "-c", LAUNCH_ON_THE_H100.format(port=free_port()))).returncode:
            assert time.monotonic() < deadline, started.stderr[-3000:]
            time.sleep(1)
        pk = int(started.stdout.strip())
        deadline = time.monotonic() + 90
        while run.manage("shell", "-c", LAUNCH_STATE.format(pk=pk)).stdout.split("|")[0] != "ready":
            assert time.monotonic() < deadline, run.log.read_text()[-3000:]
            time.sleep(1)
    finally:
        run.ctrl_c()
    state = run.manage("shell", "-c", LAUNCH_STATE.format(pk=pk)).stdout
    status, no_servers, reason = state.strip().split("|")
    assert (status, no_servers) == ("stopped", "True"), reason
    assert reason.startswith("Stopped by the run script")
    assert "recorded 1 launch as stopped" in run.log.read_text()


@pytest.mark.parametrize("target", ["run", "demo"])
def test_make_run_and_demo_take_the_address_and_port_from_bind(target):
    planned = subprocess.run(
        ["make", "-n", target, "BIND=127.0.0.1:8080"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "scripts/run.py" in planned.stdout and "--bind 127.0.0.1:8080" in planned.stdout
    assert "make run BIND=" in (ROOT / "README.md").read_text()


def test_a_second_run_on_a_port_already_in_use_stops_at_once_and_says_how_to_choose_another(tmp_path):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            "AIFRED_VAR_DIR": str(tmp_path),
        }
        done = subprocess.run(
            [sys.executable, "scripts/run.py", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"127.0.0.1:{port} is already in use" in done.stdout + done.stderr
    assert "make run BIND=" in done.stdout + done.stderr
    # Nothing was started: no database was made.
    assert not (tmp_path / "aifred.sqlite3").exists()
