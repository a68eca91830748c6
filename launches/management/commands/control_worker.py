"""``python manage.py control_worker``: the Celery worker of queue ``control``, with beat.

It applies the GPU workers' reports and events and, through beat, marks launches lost whose worker
went silent. It runs ``celery -A aifred_site worker -Q control -B`` as a child and starts it again
when it exits on its own (Celery can exit on an error while the broker restarts), waiting 1, 2, 4 ...
up to 30 s; a SIGTERM or SIGINT is passed on and ends both.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

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
        stopping = False
        child: subprocess.Popen | None = None

        def pass_on(signum, frame) -> None:
            nonlocal stopping
            stopping = True
            if child is not None and child.poll() is None:
                child.send_signal(signum)

        signal.signal(signal.SIGTERM, pass_on)
        signal.signal(signal.SIGINT, pass_on)
        exits: list[float] = []
        while True:
            child = subprocess.Popen(argv)
            code = child.wait()
            if stopping or code == 0:
                return
            now = time.monotonic()
            exits = [when for when in exits if now - when < 300] + [now]
            wait = min(2 ** (len(exits) - 1), 30)
            self.stderr.write(f"The control worker exited with code {code}; starting it again in {wait} s.")
            time.sleep(wait)
