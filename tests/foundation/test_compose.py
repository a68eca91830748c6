"""docker-compose.yml parses, and every command it runs exists in the project."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _commands(compose: dict) -> list[tuple[str, list[str]]]:
    found = []
    for name, service in compose["services"].items():
        command = service.get("command")
        if command is None:
            continue
        if command[:2] == ["sh", "-c"]:
            found.extend((name, part.split()) for part in command[2].split("&&"))
        else:
            found.append((name, command))
    return found


def test_the_compose_file_has_every_role_and_a_database_healthcheck(compose):
    services = compose["services"]
    assert {"db", "redis", "web", "worker", "gpu-worker"} <= set(services)
    assert "healthcheck" in services["db"]
    assert services["gpu-worker"]["profiles"] == ["gpu"]
    reservation = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert reservation["driver"] == "nvidia"


def test_the_gpu_worker_service_gets_no_database_settings(compose):
    gpu = compose["services"]["gpu-worker"]
    assert "env_file" not in gpu
    assert not any("DATABASE" in key for key in gpu.get("environment", {}))


def test_every_command_the_compose_file_runs_exists(compose):
    management_commands = get_commands()
    for service, argv in _commands(compose):
        argv = [arg for arg in argv if arg]
        if argv[:2] == ["python", "manage.py"]:
            assert argv[2] in management_commands, f"{service}: no management command {argv[2]}"
        elif argv[:2] == ["python", "-m"]:
            module = argv[2]
            assert importlib.util.find_spec(module) is not None, f"{service}: no module {module}"
            assert importlib.util.find_spec(f"{module}.__main__") is not None, (
                f"{service}: {module} is not runnable"
            )
        elif argv[0] == "celery":
            app_module = argv[argv.index("-A") + 1]
            assert hasattr(importlib.import_module(app_module), "celery_app"), f"{service}: no Celery app"
        elif argv[0] == "gunicorn":
            module, attribute = next(arg for arg in argv[1:] if ":" in arg).split(":")
            assert hasattr(importlib.import_module(module), attribute), f"{service}: no WSGI app {module}"
        else:
            pytest.fail(f"{service} runs {argv[0]!r}, which this test does not know how to check")
