"""Every ended launch has a known outcome code: its last attempt's verdict, or how it ended.

The launches end through the events a GPU worker sends (``Launch.apply_event``) and the site's own
transitions, as real ones do; the history filter, the API and /metrics then find them by that code.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.html import escape
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from launches.models import Launch
from launches.verdicts import OUTCOME_LABELS
from tests.factories import make_launch

PORT_MESSAGE = (
    "Port 8101 on 127.0.0.1 is held by another process (not a launch of this site); choose another port "
    "in the config, or leave it empty so the host picks one."
)


def send(launch: Launch, *events: tuple[str, dict]) -> Launch:
    for seq, (kind, data) in enumerate(events, start=launch.last_seq + 1):
        launch.apply_event(seq, kind, data)
    launch.refresh_from_db()
    return launch


def end_on_a_port_refusal(launch: Launch) -> Launch:
    return send(
        launch,
        ("accepted", {"host": launch.host.name}),
        ("attempt_started", {"attempt": 1, "requested_len": 40960, "argv": ["vllm", "serve"]}),
        ("attempt_finished", {"attempt": 1, "outcome": "port_in_use", "message": PORT_MESSAGE}),
        ("failed", {"outcome": "failed", "reason": PORT_MESSAGE}),
    )


def cancel_while_queued(launch: Launch) -> Launch:
    launch.request_stop()
    return launch


def crash_after_ready(launch: Launch) -> Launch:
    return send(
        launch,
        ("accepted", {"host": launch.host.name}),
        ("attempt_started", {"attempt": 1, "requested_len": 40960, "argv": ["vllm", "serve"]}),
        ("attempt_finished", {"attempt": 1, "outcome": "ready", "parsed_len": 40960}),
        ("ready", {"url": "http://127.0.0.1:8101", "max_model_len": 40960}),
        ("crashed", {"reason": "The server exited (exit code 1)."}),
    )


def stop_before_any_attempt(launch: Launch) -> Launch:
    send(launch, ("accepted", {"host": launch.host.name}))
    launch.request_stop()
    return send(launch, ("stopped", {"reason": "Stopped on request."}))


def lose_while_ready(launch: Launch) -> Launch:
    ready = send(
        launch,
        ("accepted", {"host": launch.host.name}),
        ("attempt_started", {"attempt": 1, "requested_len": 40960, "argv": ["vllm", "serve"]}),
        ("attempt_finished", {"attempt": 1, "outcome": "ready", "parsed_len": 40960}),
        ("ready", {"url": "http://127.0.0.1:8101", "max_model_len": 40960}),
    )
    ready.transition(Launch.Status.LOST, reason="The GPU worker on desk has not reported.")
    return ready


@pytest.mark.parametrize(
    ("ending", "outcome"),
    [
        (end_on_a_port_refusal, "port_in_use"),
        (cancel_while_queued, "cancelled"),
        (crash_after_ready, "crashed"),
        (stop_before_any_attempt, "stopped"),
        (lose_while_ready, "lost"),
    ],
)
def test_an_ended_launch_has_the_outcome_code_of_how_it_ended(
    client, viewer, config, operator, django_capture_on_commit_callbacks, ending, outcome
):
    with django_capture_on_commit_callbacks():
        launch = ending(make_launch(config, operator))
    launch.refresh_from_db()
    assert launch.is_terminal
    assert launch.outcome == outcome
    assert outcome in OUTCOME_LABELS, "the history filter and the labels cover every code"

    client.force_login(viewer)
    listed = client.get(reverse("admin:launches_launch_changelist"), {"outcome": outcome})
    assert [row.pk for row in listed.context["cl"].result_list] == [launch.pk]
    assert OUTCOME_LABELS[outcome] in listed.content.decode()

    token = Token.objects.get_or_create(user=viewer)[0].key
    api = client.get("/api/v1/launches/", {"outcome": outcome}, HTTP_AUTHORIZATION=f"Token {token}").json()
    assert [row["id"] for row in api["results"]] == [launch.pk]

    metrics = client.get("/metrics", HTTP_AUTHORIZATION=f"Token {token}").content.decode()
    labels = {
        sample.labels.get("outcome")
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "aifred_launches_total"
    }
    assert labels == {outcome}


def test_the_api_gives_the_pages_words_beside_the_status_and_outcome_codes(viewer, config, operator):
    from tests.api.conftest import token_client

    launch = make_launch(config, operator, status=Launch.Status.READY, outcome="ready")
    row = token_client(viewer).get(f"/api/v1/launches/{launch.pk}/").json()
    assert (row["status"], row["status_display"]) == ("ready", "Running")
    assert (row["outcome"], row["outcome_display"]) == ("ready", "Ready")


def test_a_port_refusal_is_shown_in_the_workers_words_for_its_case(
    client, viewer, config, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        launch = end_on_a_port_refusal(make_launch(config, operator))
    client.force_login(viewer)
    page = client.get(reverse("admin:launches_launch_change", args=[launch.pk])).content.decode()
    assert escape(PORT_MESSAGE) in page
    assert "A port fixed in the config" not in page and "a port the host picks" not in page
    # The live page and the API say the same sentence.
    events = client.get(reverse("launches:events", args=[launch.pk])).json()["events"]
    [finished] = [event for event in events if event["kind"] == "attempt_finished"]
    assert finished["verdict"] == PORT_MESSAGE
    from tests.api.conftest import token_client

    [attempt] = token_client(viewer).get(f"/api/v1/launches/{launch.pk}/").json()["attempts"]
    assert attempt["verdict"] == PORT_MESSAGE
