"""The suite's setup: no network, a Redis to test against, a database file the workers share, and the
personas (admin, operator, viewer, outsider). The rows themselves come from ``tests.factories``."""

from __future__ import annotations

import atexit
import os

import pytest
from django.contrib.auth.models import User

from launches.permissions import OPERATORS, VIEWERS
from tests.factories import make_user
from tests.redis_server import PrivateRedis, RedisServerMissing, redis_answers

# The suite never reaches the Hugging Face Hub: a test must pass or fail the same with or without a
# network. Set before anything imports huggingface_hub (it reads this once); worker processes inherit it.
os.environ["HF_HUB_OFFLINE"] = "1"

_private_redis: PrivateRedis | None = None


def _ensure_test_redis() -> None:
    """Use the Redis on 127.0.0.1:6379 (or AIFRED_TEST_REDIS_URL); when none answers and redis-server is
    installed, start a private one for this run, so `make test` needs nothing running beforehand.

    Run when this file is imported: the conftest files below it read the URL when they are imported,
    which is before any pytest hook of this file runs.
    """
    global _private_redis
    if redis_answers(os.environ.get("AIFRED_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")):
        return
    private = PrivateRedis()
    try:
        private.start()
    except RedisServerMissing:
        return
    _private_redis = private
    os.environ["AIFRED_TEST_REDIS_URL"] = private.url_for(13)
    os.environ["AIFRED_TEST_RUN_REDIS_URL"] = private.url_for(12)


def _stop_private_redis() -> None:
    if _private_redis is not None:
        _private_redis.stop()


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


@pytest.fixture(autouse=True)
def fast_hasher(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
