"""``python manage.py gpu_worker --host NAME``: run this host's GPU worker.

The worker itself has no Django in it (``python -m launches.gpu``). ``manage.py`` hands over to it
before Django starts (see ``launches.gpu.main.hand_over``), so the command works without a database
URL, or with one that does not parse; this class lists the command in ``manage.py help`` and hands
over the same way when called from Django (``call_command``).
"""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from launches.gpu.main import DROPPED_ENV as DROPPED


class Command(BaseCommand):
    help = "Run the GPU worker of this host: consumes gpu.NAME, reports its GPUs, runs vLLM. Needs REDIS_URL."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", required=True, help="this host's name in the site (queue gpu.NAME)")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args, host: str, loglevel: str, **options) -> None:
        env = {name: value for name, value in os.environ.items() if name not in DROPPED}
        env.setdefault("REDIS_URL", settings.REDIS_URL)
        env.setdefault("AIFRED_CONTROL_QUEUE", settings.CONTROL_QUEUE)
        argv = [sys.executable, "-m", "launches.gpu", "--host", host, "--loglevel", loglevel]
        sys.stdout.flush()
        os.execve(sys.executable, argv, env)  # noqa: S606  (an argv list, replacing this process)
