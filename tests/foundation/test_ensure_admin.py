import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_a_generated_admin_password_is_printed_once_and_works(capsys, monkeypatch):
    monkeypatch.delenv("AIFRED_ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.split("password: ", 1)[1].split()[0]
    assert User.objects.get(username="admin").check_password(password)
    call_command("ensure_admin")
    assert "exists already" in capsys.readouterr().out
    assert User.objects.filter(is_superuser=True).count() == 1


def test_the_admin_password_comes_from_the_environment_and_is_not_printed(capsys, monkeypatch):
    monkeypatch.setenv("AIFRED_ADMIN_PASSWORD", "correct-horse-battery")
    call_command("ensure_admin")
    assert "correct-horse-battery" not in capsys.readouterr().out
    assert User.objects.get(username="admin").check_password("correct-horse-battery")
