"""A heartbeat's view against the database: what the control side concludes, without processes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from launches.models import Launch
from tests.factories import make_config, make_gpu, make_host

pytestmark = pytest.mark.django_db


def starting_launch() -> Launch:
    host = make_host()
    make_gpu(host, 0)
    launch = Launch.objects.start(make_config(host=host), user=None)
    launch.apply_event(1, "accepted", {"host": host.name})
    launch.refresh_from_db()
    return launch


def report(launch: Launch, sent_at, launches: list[dict]) -> dict:
    return {"host": launch.host.name, "sent_at": sent_at.isoformat(), "launches": launches, "received": []}


def test_a_view_taken_before_the_host_accepted_the_launch_ends_nothing(settings) -> None:
    launch = starting_launch()
    # A heartbeat that waited in the queue: taken before the launch reached the worker.
    stale = report(launch, launch.started_at - timedelta(seconds=30), [])
    Launch.objects.reconcile(launch.host, stale)
    launch.refresh_from_db()
    assert launch.status == Launch.Status.STARTING


def test_a_launch_missing_from_a_later_view_is_lost_and_frees_its_card(settings) -> None:
    launch = starting_launch()
    later = report(launch, launch.started_at + timedelta(seconds=settings.RECONCILE_GRACE_SECONDS + 1), [])
    Launch.objects.reconcile(launch.host, later)
    launch.refresh_from_db()
    assert launch.status == Launch.Status.LOST and "no longer holds" in launch.reason
    assert not launch.leases.exists()


def test_events_the_site_lacks_are_asked_for_again_and_applied_ones_confirmed(settings) -> None:
    launch = starting_launch()
    Launch.objects.filter(pk=launch.pk).update(last_event_at=timezone.now() - timedelta(minutes=1))
    view = [{"launch_id": launch.pk, "status": "starting", "last_seq": 4, "unconfirmed": 3}]
    directive = Launch.objects.reconcile(launch.host, report(launch, timezone.now(), view))
    assert directive["confirmed"] == {launch.pk: 1} and directive["resend"] == {launch.pk: 2}


def test_a_server_running_for_a_launch_the_site_ended_is_stopped(settings) -> None:
    launch = starting_launch()
    launch.transition(Launch.Status.FAILED, reason="ended here")
    view = [{"launch_id": launch.pk, "status": "ready", "last_seq": 1, "unconfirmed": 0}]
    directive = Launch.objects.reconcile(launch.host, report(launch, timezone.now(), view))
    assert directive["stop"] == [launch.pk]
