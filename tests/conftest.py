"""Factories and personas shared by the suite (owner/admin, operator, viewer, outsider)."""

from __future__ import annotations

import atexit
import importlib
import itertools
import os
import shutil
import subprocess
import time
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from gpus.models import Gpu, GpuProfile, Host, ModelSpec
from launches.models import LaunchConfig
from launches.permissions import OPERATORS, VIEWERS

# The suite never reaches the Hugging Face Hub: a test must pass or fail the same with or without a
# network. Set before anything imports huggingface_hub (it reads this once); worker processes inherit it.
os.environ["HF_HUB_OFFLINE"] = "1"

_counter = itertools.count(1)
_private_redis: subprocess.Popen | None = None


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _ensure_test_redis() -> None:
    """Use the Redis on 127.0.0.1:6379 (or AIFRED_TEST_REDIS_URL); when none answers and redis-server is
    installed, start a private one for this run, so `make test` needs nothing running beforehand.

    Run when this file is imported: the conftest files below it read the URL when they are imported,
    which is before any pytest hook of this file runs.
    """
    global _private_redis
    url = os.environ.get("AIFRED_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    server = shutil.which("redis-server")
    if _redis_answers(url) or server is None:
        return
    from tests.ports import free_port

    port = free_port()
    _private_redis = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.environ["AIFRED_TEST_REDIS_URL"] = f"redis://127.0.0.1:{port}/13"
    os.environ["AIFRED_TEST_RUN_REDIS_URL"] = f"redis://127.0.0.1:{port}/12"
    for _ in range(100):
        if _redis_answers(os.environ["AIFRED_TEST_REDIS_URL"]):
            return
        time.sleep(0.05)


def _stop_private_redis() -> None:
    if _private_redis is not None:
        _private_redis.terminate()
        _private_redis.wait(10)


_ensure_test_redis()
atexit.register(_stop_private_redis)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A file for SQLite's test database, so that worker processes can share it with the test.

    Session-wide: whichever test first creates the database, the integration tests can hand the
    same file to the control worker they start.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and not database["TEST"].get("NAME"):
        database["TEST"]["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_hasher(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def ensure_roles() -> None:
    """Build the role groups as the data migrations do.

    Transactional tests (workers, browser) empty every table afterwards, these groups included; a
    database reused after them may lack the groups.
    """
    roles_migration = importlib.import_module("launches.migrations.0002_roles")
    view = [(app, f"view_{model}") for app, models in roles_migration.VIEW_MODELS.items() for model in models]
    view.append(("launches", "view_launchconfigchange"))
    view.append(("launches", "view_refusedevent"))

    def permissions(pairs: list[tuple[str, str]]) -> list[Permission]:
        return [Permission.objects.get(content_type__app_label=app, codename=code) for app, code in pairs]

    Group.objects.get_or_create(name=VIEWERS)[0].permissions.set(permissions(view))
    operators = Group.objects.get_or_create(name=OPERATORS)[0]
    operators.permissions.set(permissions(view + roles_migration.OPERATOR_EXTRA))


def make_user(
    username: str, group: str | None = None, *, staff: bool = True, superuser: bool = False
) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=staff)
    if superuser:
        user.is_superuser = True
        user.save(update_fields=["is_superuser"])
    if group:
        if not Group.objects.filter(name=group).exists():
            ensure_roles()
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def operator(db) -> User:
    return make_user("olivia-operator", OPERATORS)


@pytest.fixture
def viewer(db) -> User:
    return make_user("victor-viewer", VIEWERS)


@pytest.fixture
def outsider(db) -> User:
    """Staff, but in no role group: may log in, may see nothing."""
    return make_user("oscar-outsider")


@pytest.fixture
def admin_user(db) -> User:
    return make_user("ada-admin", superuser=True)


def make_host(name: str | None = None, **fields) -> Host:
    fields.setdefault("last_heartbeat", timezone.now())
    fields.setdefault("vllm_version", "0.32.0")
    return Host.objects.create(name=name or f"host-{next(_counter)}", **fields)


def make_profile(name: str = "NVIDIA GeForce RTX 3060", memory_total_mib: int = 12288) -> GpuProfile:
    return GpuProfile.objects.get_or_create(name=name, memory_total_mib=memory_total_mib)[0]


def make_gpu(host: Host, index: int = 0, profile: GpuProfile | None = None, **fields) -> Gpu:
    fields.setdefault("uuid", f"GPU-{host.name}-{index}-{next(_counter)}")
    fields.setdefault("driver_version", "550.54.15")
    return Gpu.objects.create(host=host, index=index, profile=profile or make_profile(), **fields)


def make_model(source: str = "Qwen/Qwen3-8B-AWQ", native_context: int | None = 40960, **fields) -> ModelSpec:
    fields.setdefault("num_layers", 36)
    fields.setdefault("num_kv_heads", 8)
    fields.setdefault("head_dim", 128)
    return ModelSpec.objects.create(source=source, native_context=native_context, **fields)


def make_config(name: str | None = None, **fields) -> LaunchConfig:
    if "host" not in fields:
        fields["host"] = make_host()
    if "model" not in fields:
        fields["model"] = make_model(source=f"org/model-{next(_counter)}")
    fields.setdefault("yarn_factor", Decimal("1.0"))
    return LaunchConfig.objects.create(name=name or f"config-{next(_counter)}", **fields)
