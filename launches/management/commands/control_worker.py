"""``python manage.py control_worker``: the Celery worker of queue ``control``, with beat.

It applies the GPU workers' reports and events and, through beat, marks launches lost whose worker
went silent. Equivalent to ``celery -A aifred_site worker -Q control -B``.
"""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the control worker (queue 'control', with beat for the lost-launch check)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--loglevel", default="INFO")
        parser.add_argument(
            "--schedule",
            default=str(settings.VAR_DIR / "celerybeat-schedule"),
            help="where beat keeps its schedule state",
        )
        parser.add_argument("--without-beat", action="store_true", help="when beat runs elsewhere")

    def handle(self, *args, concurrency: int, loglevel: str, schedule: str, without_beat: bool, **options):
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "aifred_site",
            "worker",
            f"--queues={settings.CONTROL_QUEUE}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--hostname=control@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        if not without_beat:
            argv += ["--beat", f"--schedule={schedule}"]
        sys.stdout.flush()
        os.execv(sys.executable, argv)  # noqa: S606  (an argv list, replacing this process)
