"""All settings, read from the environment.

Defaults let a fresh checkout run (SQLite under var/, a development key kept under var/); production
mode (DEBUG off) refuses to start without the secrets it needs. Every variable read here is listed in
.env.example.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from launches.contract import MARK_LOST_LAUNCHES_TASK

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off.")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


VAR_DIR = Path(env_str("AIFRED_VAR_DIR", str(BASE_DIR / "var")))
# A fresh checkout is a development site; production sets DEBUG=0 (docker-compose.yml, .env.example).
DEBUG = env_bool("DEBUG", default=True)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set and DEBUG is off. Set SECRET_KEY to a long random string "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DEBUG=1 for local development."
        )
    # Development: generate one key and keep it, so sessions survive restarts.
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "gpus",
    "launches",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "aifred_site.urls"
WSGI_APPLICATION = "aifred_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "launches.permissions.allowed_pages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'aifred.sqlite3'}"
if DATABASE_URL.startswith("sqlite:///"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, control worker, tests) write to one file: wait instead of failing. A
    # transaction that reads and then writes would fail at once ("database is locked") when another
    # process wrote in between; IMMEDIATE takes the write lock at BEGIN, where the timeout applies.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME") or None}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
# Dates shown with their time zone everywhere (aifred_site/formats/en/formats.py).
FORMAT_MODULE_PATH = ["aifred_site.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
if DEBUG:
    # WhiteNoise warns about a missing folder on every start; in development it serves from the apps.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
LOGIN_URL = "admin:login"

# Production hardening; `manage.py check --deploy` is clean with DEBUG off.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Celery: a Redis broker; the control worker consumes "control", each GPU host "gpu.<host>".
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# The control worker's queue; tests give each run its own name so parallel runs do not collide.
CONTROL_QUEUE = env_str("AIFRED_CONTROL_QUEUE", "control")
# The port the site itself listens on (`make run` sets it from --bind): no vLLM server may take it.
SITE_PORT = env_int("AIFRED_SITE_PORT", 8000)
CELERY_TASK_DEFAULT_QUEUE = CONTROL_QUEUE
# Applying an event is idempotent, so a message whose worker died is safely delivered again: late
# acknowledgement, and redelivery after a visibility timeout sized to the work (an event applies in
# milliseconds), not Redis' default hour. It must stay above the longest retry countdown (30 s).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
BROKER_VISIBILITY_TIMEOUT = env_int("AIFRED_VISIBILITY_TIMEOUT", 60)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
# Keep reconnecting to a broker that went away, however long it takes.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
# The control worker runs beat (-B): launches whose host went silent are marked lost even when no
# host reports at all any more.
LOST_CHECK_SECONDS = env_int("AIFRED_LOST_CHECK_SECONDS", 15)
CELERY_BEAT_SCHEDULE = {
    "mark-lost-launches": {
        "task": MARK_LOST_LAUNCHES_TASK,
        "schedule": float(LOST_CHECK_SECONDS),
        "options": {"queue": CONTROL_QUEUE, "expires": float(LOST_CHECK_SECONDS)},
    }
}

# Hugging Face: the token is handed to huggingface_hub and never shown.
HF_TOKEN = env_str("HF_TOKEN") or None
HF_HUB_ALLOW_DOWNLOAD = env_bool("AIFRED_HF_ALLOW_DOWNLOAD", default=True)

# A host is online while its last heartbeat is younger than this many seconds.
HOST_ONLINE_SECONDS = env_int("AIFRED_HOST_ONLINE_SECONDS", 30)
# A launch whose worker has said nothing for this long is marked lost.
LAUNCH_LOST_SECONDS = env_int("AIFRED_LAUNCH_LOST_SECONDS", 120)
# The longest a launch may stay queued (its spec not taken by the host), starting, or stopping before
# it is ended with the reason, whatever was lost in between.
LAUNCH_QUEUED_SECONDS = env_int("AIFRED_LAUNCH_QUEUED_SECONDS", 120)
LAUNCH_STARTING_SECONDS = env_int("AIFRED_LAUNCH_STARTING_SECONDS", 3600)
LAUNCH_STOPPING_SECONDS = env_int("AIFRED_LAUNCH_STOPPING_SECONDS", 120)
# How long a difference between a heartbeat and the database may last before it is acted on (events
# may still be on their way): a missing event is asked for again, a launch the host lacks is ended.
RECONCILE_GRACE_SECONDS = env_int("AIFRED_RECONCILE_GRACE_SECONDS", 5)
# Auto-restart of servers whose config keeps them up: at most this many restarts within this many
# minutes, then the launch ends as a crash loop.
RESTART_LIMIT = env_int("AIFRED_RESTART_LIMIT", 3)
RESTART_WINDOW_MINUTES = env_int("AIFRED_RESTART_WINDOW_MINUTES", 10)

# The JSON API (/api/v1/): a token (DRF's token model) or the admin session; permissions come from
# launches/permissions.py through launches.api.permissions.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["launches.api.permissions.ReadForViewersActForOperators"],
    "DEFAULT_PAGINATION_CLASS": "launches.api.pagination.NewestFirstCursorPagination",
    "PAGE_SIZE": 50,
    # Decimal fields (a YaRN factor) are numbers in JSON, as the form and the schema say.
    "COERCE_DECIMAL_TO_STRING": False,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "launches.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AIfred Launch Control API",
    "DESCRIPTION": "Hosts, GPU profiles, models, learned limits, launch configs and launches. "
    "Viewers read, Operators act, nobody edits history.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's files come with the site (drf-spectacular-sidecar), not from a CDN: the page works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# /metrics for Prometheus: open when empty, otherwise "Authorization: Bearer <token>" is required.
METRICS_TOKEN = env_str("AIFRED_METRICS_TOKEN")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
