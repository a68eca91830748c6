"""System checks for settings combinations that cannot work."""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register()
def broker_and_timeouts(app_configs, **kwargs) -> list:
    problems = []
    scheme = urlparse(settings.REDIS_URL).scheme
    if scheme not in {"redis", "rediss", "unix"}:
        problems.append(
            Error(
                f"REDIS_URL must be a Redis URL (redis://, rediss:// or unix://), not {scheme or 'empty'}://.",
                hint="For example REDIS_URL=redis://127.0.0.1:6379/0",
                id="aifred.E001",
            )
        )
    if settings.HOST_ONLINE_SECONDS <= 0:
        problems.append(Error("AIFRED_HOST_ONLINE_SECONDS must be positive.", id="aifred.E002"))
    elif settings.LAUNCH_LOST_SECONDS < settings.HOST_ONLINE_SECONDS:
        problems.append(
            Warning(
                "AIFRED_LAUNCH_LOST_SECONDS is shorter than AIFRED_HOST_ONLINE_SECONDS: launches on a "
                "host that "
                "is still counted online would be marked lost.",
                hint="Make the lost timeout at least as long as the online window.",
                id="aifred.W002",
            )
        )
    return problems


@register(Tags.database, deploy=True)
def production_database(app_configs, **kwargs) -> list:
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        return [
            Warning(
                "The production site runs on SQLite: the web, the control worker and beat all write "
                "to one file.",
                hint="Set DATABASE_URL to a PostgreSQL database.",
                id="aifred.W001",
            )
        ]
    return []
