"""The GPU worker's Celery app: broker only, no Django fixup, no result backend."""

from __future__ import annotations

import os

from celery import Celery

# fixups=[]: Celery would otherwise set up Django when DJANGO_SETTINGS_MODULE happens to be set.
app = Celery("aifred_gpu", fixups=[], include=["launches.gpu.tasks"])
app.conf.update(
    broker_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    result_backend=None,
    task_ignore_result=True,
    # A launch is acknowledged when it starts: a worker that dies must not re-run it on restart; the
    # state file and the control side's lost-launch check deal with what was under way.
    task_acks_late=False,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
    # Keep trying to reach the broker after losing it, however long it is away.
    broker_connection_max_retries=None,
    # Nothing here is acknowledged late, so this only bounds a message a dead consumer had fetched.
    broker_transport_options={"visibility_timeout": int(os.environ.get("AIFRED_VISIBILITY_TIMEOUT", "300"))},
)


def control_queue() -> str:
    return os.environ.get("AIFRED_CONTROL_QUEUE", "control")
