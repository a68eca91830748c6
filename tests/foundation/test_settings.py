"""Settings come from the environment and refuse unsafe production set-ups loudly."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The settings a production deployment sets (compose and .env.example do).
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 30 + "-production-secret-with-enough-entropy-1234567890",
    "ALLOWED_HOSTS": "aifred.example.org",
}


def _run(args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_production_mode_without_a_secret_key_refuses_to_start_and_says_what_to_set(tmp_path):
    result = _run(["manage.py", "check"], DEBUG="0", AIFRED_VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY is not set and DEBUG is off" in result.stderr


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        **PRODUCTION,
        DATABASE_URL="postgres://aifred@127.0.0.1:5432/aifred",
        AIFRED_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_development_mode_generates_a_secret_key_once_and_keeps_it(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    env = {"DEBUG": "1", "AIFRED_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "aifred_site.settings"}
    first = _run(["-c", f"import django; django.setup(); {code}"], **env)
    second = _run(["-c", f"import django; django.setup(); {code}"], **env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert (tmp_path / "secret_key").read_text().strip() == first.stdout.strip()


def test_a_malformed_boolean_setting_is_named_in_the_error(tmp_path):
    result = _run(["manage.py", "check"], DEBUG="maybe", AIFRED_VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_every_variable_the_settings_read_is_listed_in_env_example():
    import re

    source = (ROOT / "aifred_site" / "settings.py").read_text()
    read = set(re.findall(r'env_(?:str|bool|int|list)\("([A-Z_]+)"', source))
    listed = {
        line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line
    }
    assert read, "no settings variables found; the pattern is out of date"
    assert read <= listed, f"missing from .env.example: {sorted(read - listed)}"


def test_check_deploy_warns_about_sqlite_in_production(tmp_path):
    result = _run(
        ["manage.py", "check", "--deploy", "--database", "default"],
        **PRODUCTION,
        AIFRED_VAR_DIR=str(tmp_path),
    )
    assert "aifred.W001" in result.stderr + result.stdout


def test_a_broker_url_that_is_not_redis_stops_the_checks(tmp_path):
    result = _run(
        ["manage.py", "check"], DEBUG="1", REDIS_URL="amqp://guest@localhost//", AIFRED_VAR_DIR=str(tmp_path)
    )
    assert result.returncode != 0
    assert "aifred.E001" in result.stderr
