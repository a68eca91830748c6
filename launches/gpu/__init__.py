"""The GPU worker: a Celery worker on a GPU host that launches, watches and reports vLLM servers.

It needs only the broker (``REDIS_URL``). Nothing here may import Django or touch the database: the
host holds no database credentials, and every fact it knows travels to the control worker as a
report or a numbered launch event. ``forbid_django`` makes an accidental import fail loudly.
"""

from __future__ import annotations

import importlib.abc
import sys


class DjangoImportBlocked(ImportError):
    """Raised when code running on a GPU host tries to import Django."""


class _BlockDjango(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname == "django" or fullname.startswith("django."):
            raise DjangoImportBlocked(
                f"{fullname} was imported in the GPU worker; GPU hosts must not use Django or the database."
            )
        return None


def forbid_django() -> None:
    """Make any later ``import django`` in this process fail (the GPU worker calls this first)."""
    if "django" in sys.modules:
        raise DjangoImportBlocked("Django was already imported before the GPU worker started.")
    if not any(isinstance(finder, _BlockDjango) for finder in sys.meta_path):
        sys.meta_path.insert(0, _BlockDjango())
