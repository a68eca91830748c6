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


def test_the_run_script_serves_the_admin_to_the_generated_admin_and_stops_everything(tmp_path):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "AIFRED_ADMIN_PASSWORD"}},
        "AIFRED_VAR_DIR": str(tmp_path),
        "REDIS_URL": os.environ.get("AIFRED_TEST_RUN_REDIS_URL", "redis://127.0.0.1:6379/12"),
        "AIFRED_CONTROL_QUEUE": f"control-run-test-{port}",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "scripts/run.py", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/admin/login/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the site did not answer within 90 s:\n{log.read_text()[-3000:]}")
        password = re.search(r"Created administrator 'admin' with password: (\S+)", log.read_text()).group(1)
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
        workers = _children_of(process.pid)
        assert len(workers) >= 3, "web, control worker and GPU worker should all be running"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    time.sleep(0.5)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), pid
