"""The README's curl walk-through, run as written against the site, a control worker and a GPU worker.

The block is read from README.md and run by bash with curl and jq; only its first lines (where the
site is, who the operator is, which model, host and port) are set to this test's. It drives a whole
launch through the API: the model is added and its config.json read by the control worker, a config is
created, the launch refuses the native context once and comes up at the number vLLM printed (the
stand-in playing vLLM 0.11.0 on an RTX 3060), and the stop ends the server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpus.models import DetectedLimit, ModelSpec
from launches.models import Launch
from launches.permissions import OPERATORS
from tests.factories import make_user
from tests.ports import free_port
from tests.workers.conftest import (
    DEMO_MODEL,
    RTX_3060,
    database_url_for_subprocesses,
    host_name,
    running_fleet,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def readme_walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The API and metrics", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def with_values(script: str, **values: str) -> str:
    for name, value in values.items():
        script, replaced = re.subn(rf"^{name}=.*$", f"{name}={value}", script, count=1, flags=re.MULTILINE)
        assert replaced, f"the README's walk-through no longer sets {name}"
    return script


@pytest.fixture
def stack(live_server, tmp_path):
    with running_fleet(tmp_path) as fleet:
        fleet.gpu_worker("api-3060", RTX_3060, "0.11.0")
        yield fleet


def run_walkthrough(
    live_server, operator, source: str, host: str, port: int, timeout: int = 120
) -> subprocess.CompletedProcess:
    """The README's walk-through with its values set, run by bash (errexit, pipefail) against this
    test's site and database, killed after ``timeout`` seconds (exit code 124)."""
    script = with_values(
        readme_walkthrough(),
        AIFRED=live_server.url,
        OPERATOR=operator.username,
        SOURCE=source,
        HOST_NAME=host,
        PORT=str(port),
    )
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DATABASE_URL": database_url_for_subprocesses(),
        "DJANGO_SETTINGS_MODULE": "aifred_site.settings",
    }
    return subprocess.run(
        ["timeout", str(timeout), "bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_the_readme_walkthrough_adds_a_model_launches_it_and_stops_it(stack, live_server) -> None:
    operator = make_user("walk-operator", OPERATORS)
    host = host_name("api-3060")
    wait_for(lambda: _host_reported(host), 40, f"{host}'s first report")
    port = free_port()
    run = run_walkthrough(live_server, operator, str(DEMO_MODEL), host, port)
    assert run.returncode == 0, run.stdout + run.stderr

    launch = Launch.objects.get()
    model = ModelSpec.objects.get(source=str(DEMO_MODEL))
    learned = DetectedLimit.objects.get(model=model).max_model_len
    # What the walk-through printed: ready, the URL on the config's port, the learned context; then stopping.
    assert '"status": "ready"' in run.stdout
    assert f'"server_url": "{launch.server_url}"' in run.stdout and launch.server_url.endswith(f":{port}")
    assert f'"context_length": {learned}' in run.stdout and learned < model.native_context == 40960
    assert run.stdout.strip().endswith('"stopping"')
    assert launch.requested_by == operator and launch.config.name.startswith("qwen-eval-")
    assert [a.outcome for a in launch.attempts.order_by("number")] == ["context_too_long", "ready"]
    wait_for(lambda: Launch.objects.filter(pk=launch.pk, status="stopped").exists(), 30, "the stop")
    wait_for(lambda: not stack.servers_of(host), 10, "the server to be gone")


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_the_readme_walkthrough_stops_with_the_reason_when_the_models_config_cannot_be_read(
    stack, live_server, tmp_path
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen3",')
    operator = make_user("walk-operator", OPERATORS)
    run = run_walkthrough(live_server, operator, str(broken), host_name("api-3060"), free_port(), timeout=100)
    # Not the 100 s timeout (124): the wait ends on the model's error and says it.
    assert run.returncode == 1, run.stdout + run.stderr
    assert "config.json" in run.stderr and "not read within" not in run.stderr, run.stderr
    assert not Launch.objects.exists()


def _host_reported(name: str) -> bool:
    from gpus.models import Gpu

    return Gpu.objects.current().filter(host__name=name).exists()


def test_a_yarn_test_and_a_redetect_through_the_api_report_what_the_live_page_shows(
    stack, live_server
) -> None:
    """Test YaRN and re-detect started by POSTs, followed through the events feed until they end."""
    import requests
    from rest_framework.authtoken.models import Token

    from tests.factories import demo_model

    host = host_name("api-3060")
    wait_for(lambda: _host_reported(host), 40, f"{host}'s first report")
    session = requests.Session()
    session.headers["Authorization"] = (
        f"Token {Token.objects.create(user=make_user('api-op', OPERATORS)).key}"
    )
    api = f"{live_server.url}/api/v1"
    host_id = next(row["id"] for row in session.get(f"{api}/hosts/").json()["results"] if row["name"] == host)
    body = {"name": "yarn-eval", "model": demo_model().pk, "host": host_id, "port": free_port()}
    config = session.post(f"{api}/configs/", json={**body, "enable_yarn": True, "yarn_factor": "2.0"})
    assert config.status_code == 201, config.text

    def follow(kind: str, until: set[str]) -> tuple[dict, list[dict]]:
        started = session.post(f"{api}/configs/{config.json()['id']}/{kind}/")
        assert started.status_code == 201, started.text
        events, feed = [], {"after": 0, "state": {}}

        def ended() -> bool:
            state = session.get(
                f"{api}/launches/{started.json()['id']}/events/", params={"after": feed["after"]}
            ).json()
            events.extend(state["events"])
            feed.update(after=state["last_seq"], state=state)
            return state["status"] in until or state["terminal"]

        wait_for(ended, 60, f"the {kind} to be {'/'.join(sorted(until))}", every=0.3)
        state = feed["state"]
        return state, events

    state, events = follow("test-yarn", {"stopped"})
    assert state["status"] == "stopped" and "vLLM came up with" in state["reason"]
    finished = [event for event in events if event["kind"] == "attempt_finished"]
    assert finished and all(event["verdict"] for event in finished)
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))

    state, events = follow("redetect", {"ready"})
    launch = Launch.objects.get(kind="redetect")
    assert launch.known_limit is None  # a re-detect ignores what was learned
    assert state["status"] == "ready" and state["context_length"] == launch.learned_limit
    assert session.post(f"{api}/launches/{launch.pk}/stop/").json()["status"] == "stopping"
    wait_for(lambda: Launch.objects.filter(pk=launch.pk, status="stopped").exists(), 30, "the stop")
