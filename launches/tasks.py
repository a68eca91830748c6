"""Control-side tasks (queue ``control``): thin adapters from GPU-worker reports to the database.

They take ids or plain JSON, re-fetch rows, and return quietly when a row is gone. Applying is
idempotent (unique event numbers, conditional updates), so a redelivered message changes nothing
and a transient database error is simply retried.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from gpus.models import Host, ModelSpec
from launches.contract import (
    APPLY_EVENT_TASK,
    HOST_REPORT_TASK,
    LAUNCH_UNKNOWN_TASK,
    MARK_LOST_LAUNCHES_TASK,
    READ_MODEL_FACTS_TASK,
    RECONCILE_TASK,
)
from launches.models import Launch, RefusedEvent, send_to_host

log = logging.getLogger(__name__)

RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": 1, "retry_backoff_max": 30, "max_retries": 8}


@shared_task(name=HOST_REPORT_TASK, **RETRY)
def host_report(report: dict[str, Any]) -> None:
    host = Host.objects.apply_report(report)
    if host is None:
        # Sent before the last report applied: its view of the launches is older too.
        log.info(
            "report of %s sent at %s ignored: a newer one is applied",
            report.get("host"),
            report.get("sent_at"),
        )
        return
    # Converge: the worker's view of its launches against the database (see LaunchQuerySet.reconcile).
    directive = Launch.objects.reconcile(host, report)
    if "launches" in report and (directive["confirmed"] or directive["resend"] or directive["stop"]):
        # A directive taken later than the online window is of a stale view; the next report brings one.
        send_to_host(RECONCILE_TASK, host.queue, [directive], expires=float(settings.HOST_ONLINE_SECONDS))
    # Every heartbeat batch is also a moment to notice launches whose worker went silent.
    Launch.objects.mark_lost()


@shared_task(name=APPLY_EVENT_TASK, **RETRY)
def apply_event(
    launch_id: Any, seq: Any, kind: Any, data: Any, emitted_at: Any = None, spec_id: Any = None
) -> None:
    """Apply one worker event; ``spec_id`` must be the launch's (its ``task_id``), else the event is
    another launch's of the same number (another database sharing the broker) and is kept refused."""
    if isinstance(launch_id, bool) or not isinstance(launch_id, int):
        log.warning("event for launch %r refused: the launch id is not a whole number", launch_id)
        return
    launch = Launch.objects.filter(pk=launch_id).first()
    if launch is None:
        return
    if spec_id != launch.task_id:
        # Takes no number (seq stays empty): the launch's own event with that number still applies.
        RefusedEvent.objects.create(
            launch=launch,
            kind=str(kind)[:40],
            data=data if isinstance(data, dict) else {"value": repr(data)[:2000]},
            reason=f"Event {seq!r} is of another launch (spec {spec_id!r}, this launch's is "
            f"{launch.task_id!r}), e.g. of another database sharing the broker; not applied.",
        )
        log.warning("launch %s: event %r of spec %r refused", launch_id, seq, spec_id)
        return
    launch.apply_event(seq, kind, data, emitted_at)


@shared_task(name=LAUNCH_UNKNOWN_TASK, **RETRY)
def launch_unknown(launch_id: int, host: str, reason: str, spec_id: Any = None) -> None:
    """A stop reached a host that runs nothing for the launch (of spec ``spec_id``): the stop is done."""
    launch = Launch.objects.filter(pk=launch_id, host__name=host, task_id=spec_id or "-").first()
    if launch is not None and launch.status == Launch.Status.STOPPING:
        launch.transition(Launch.Status.STOPPED, reason=f"Stopped: {reason}")


@shared_task(name=MARK_LOST_LAUNCHES_TASK, **RETRY)
def mark_lost_launches() -> int:
    return Launch.objects.mark_lost()


@shared_task(name=READ_MODEL_FACTS_TASK, **RETRY)
def read_model_facts(model_spec_id: int) -> bool:
    spec = ModelSpec.objects.filter(pk=model_spec_id).first()
    if spec is None:
        return False
    return spec.refresh_facts()
