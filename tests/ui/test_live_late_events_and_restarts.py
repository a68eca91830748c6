"""The live page after the end and across restarts: a late event is history, not a verdict; a
kept-up server's crash and restart is said in words.

Events are applied as the control worker applies a GPU worker's reports (``Launch.apply_event``).
"""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from launches.models import Launch, LaunchAttempt
from tests.factories import feed, finished, make_launch, ready_at, started
from tests.ui.test_browser import browser, log_in, page  # noqa: F401  (fixtures)

LATE = "arrived after the launch had ended; kept in the history, not applied"
RESTART = "The server exited (killed by signal 9 (SIGKILL)); restarting 1 of 3 in 0.5 s."


def cancelled_then_late(config, operator) -> Launch:
    """A launch cancelled from the control side during attempt 1, whose worker reported later that
    attempt 1 became ready."""
    launch = make_launch(config, operator)
    feed(launch, ("accepted", {"host": config.host.name}), started(1, 40960))
    assert launch.transition(Launch.Status.CANCELLED, reason="Cancelled by the run script.")
    feed(launch, finished(1, "ready", time.time(), parsed_len=40960), ready_at(40960))
    return launch


def restarted(config, operator) -> Launch:
    launch = make_launch(config, operator)
    feed(
        launch,
        ("accepted", {"host": config.host.name}),
        started(1, 40960),
        finished(1, "ready", time.time()),
        ready_at(40960),
        (
            "restarting",
            {
                "restarts": 1,
                "restart_limit": 3,
                "next_try_in": 0.5,
                "exit_code": -9,
                "reason": "vLLM exited with code -9",
            },
        ),
        started(2, 40960),
    )
    return launch


@pytest.mark.django_db
def test_events_after_the_end_are_late_lines_not_verdicts(client, viewer, config, operator):
    launch = cancelled_then_late(config, operator)
    assert LaunchAttempt.objects.get(launch=launch, number=1).outcome == "interrupted"
    client.force_login(viewer)
    answer = client.get(reverse("launches:events", args=[launch.pk])).json()
    by_kind = {event["kind"]: event for event in answer["events"]}
    assert by_kind["attempt_finished"]["late"] == LATE
    assert "verdict" not in by_kind["attempt_finished"]
    assert by_kind["ready"]["late"] == LATE
    assert "late" not in by_kind["attempt_started"]
    assert answer["status"] == "cancelled"


@pytest.mark.django_db
def test_a_restart_is_said_with_the_signal_and_the_wait(client, viewer, config, operator):
    launch = restarted(config, operator)
    client.force_login(viewer)
    answer = client.get(reverse("launches:events", args=[launch.pk])).json()
    [restart] = [event for event in answer["events"] if event["kind"] == "restarting"]
    assert restart["restart"] == RESTART
    assert "late" not in restart


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_live_page_shows_late_events_as_history_and_the_restart_between_attempts(
    page,  # noqa: F811
    live_server,
    config,
    operator,
):
    from playwright.sync_api import expect

    late = cancelled_then_late(config, operator)
    log_in(page, live_server, operator)
    page.goto(live_server.url + reverse("launches:live", args=[late.pk]))
    attempt = page.locator('section.attempt[data-attempt="1"]')
    expect(page.locator(".late-event").first).to_contain_text(LATE)
    expect(attempt.locator(".verdict")).not_to_contain_text("ready")
    expect(attempt).not_to_have_class("module attempt ok")

    kept = restarted(config, operator)
    page.goto(live_server.url + reverse("launches:live", args=[kept.pk]))
    expect(page.locator("p.restarting")).to_have_text(RESTART)
    order = page.locator('[data-role="attempts"] > *').evaluate_all(
        "nodes => nodes.map(n => n.dataset.attempt || n.className)"
    )
    assert order.index("1") < order.index("restarting") < order.index("2"), order
