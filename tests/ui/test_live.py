"""The live launch page and the event feed it polls, fed with the rows the control worker writes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from launches.models import Launch
from launches.verdicts import describe_attempt
from tests.factories import learn_limit, make_event, make_launch


def test_the_feed_returns_the_events_after_a_sequence_number_and_the_status(client, viewer, launch):
    client.force_login(viewer)
    url = reverse("launches:events", args=[launch.pk])
    everything = client.get(url, {"after": 0}).json()
    assert [e["seq"] for e in everything["events"]] == list(range(1, 9))
    assert everything["last_seq"] == 8
    assert everything["status"] == "ready"
    assert everything["server_url"] == "http://desk-3060:8000/v1"
    assert everything["context_length"] == 26624

    rest = client.get(url, {"after": 5}).json()
    assert [e["kind"] for e in rest["events"]] == ["attempt_finished", "limit_learned", "ready"]
    nothing_new = client.get(url, {"after": 8}).json()
    assert nothing_new["events"] == []
    assert nothing_new["last_seq"] == 8


def test_each_finished_attempt_carries_its_verdict_in_plain_words(client, viewer, launch):
    client.force_login(viewer)
    events = client.get(reverse("launches:events", args=[launch.pk])).json()["events"]
    verdicts = [e["verdict"] for e in events if e["kind"] == "attempt_finished"]
    assert verdicts == [
        "KV cache too small for 40,960 tokens; vLLM says 26,624 fit — restarting with 26,624",
        "vLLM is ready with 26,624 tokens of context.",
    ]


def test_a_launch_in_progress_shows_its_first_attempt_before_it_ends(client, viewer, config, operator):
    starting = make_launch(config, operator, status=Launch.Status.STARTING)
    make_event(
        starting, 1, "attempt_started", {"attempt": 1, "requested_len": 40960, "argv": ["vllm", "serve"]}
    )
    client.force_login(viewer)
    answer = client.get(reverse("launches:events", args=[starting.pk]), {"after": "not a number"}).json()
    assert answer["terminal"] is False
    assert answer["events"][0]["kind"] == "attempt_started"
    make_event(starting, 2, "log", {"attempt": 1, "lines": ["INFO starting"]})
    later = client.get(reverse("launches:events", args=[starting.pk]), {"after": answer["last_seq"]}).json()
    assert [e["data"]["lines"] for e in later["events"]] == [["INFO starting"]]


def test_the_live_page_links_back_to_the_history_and_polls_the_feed(client, viewer, launch):
    client.force_login(viewer)
    html = client.get(reverse("launches:live", args=[launch.pk])).content.decode()
    assert reverse("launches:events", args=[launch.pk]) in html
    assert reverse("admin:launches_launch_change", args=[launch.pk]) in html
    assert "launches/live.js" in html
    assert "40,960" in html


def test_verdicts_name_the_failures_that_teach_no_limit():
    assert "busy" in describe_attempt("gpu_busy", 40960)
    assert "no limit was learned" in describe_attempt("gpu_busy", 40960)
    assert "weights do not fit" in describe_attempt("weights_do_not_fit", 40960)
    assert "exited with code 137" in describe_attempt("crashed", 40960, exit_code=137)
    assert describe_attempt("context_too_long", 40960, 26624) == (
        "KV cache too small for 40,960 tokens; vLLM says 26,624 fit"
    )
    assert "auto-fit reduced the length to 26,624" in describe_attempt("auto_fit", None, 26624)


def test_stdout_and_stderr_lines_of_a_batch_come_in_the_order_vllm_stamped_them():
    from launches.views import in_written_order

    read = [
        "INFO 11-30 02:38:33 [api_server.py:1] Starting vLLM API server",
        "(EngineCore_DP0 pid=7) ERROR 11-30 02:38:32 [core.py:708] EngineCore failed to start.",
        "Traceback (most recent call last):",
        '  File "core.py", line 708',
        "INFO 11-30 02:38:34 [launcher.py:2] Route: /health",
    ]
    assert in_written_order(read) == [read[1], read[2], read[3], read[0], read[4]]
    assert in_written_order(["no stamp", *read[:1]]) == ["no stamp", read[0]]


def test_stop_is_offered_only_while_something_can_be_stopped(client, operator, config):
    client.force_login(operator)
    offered = {}
    for status in Launch.Status.values:
        launch = make_launch(config, operator, status=status)
        offered[status] = client.get(reverse("launches:events", args=[launch.pk])).json()["can_stop"]
    assert {status for status, can in offered.items() if can} == {"queued", "starting", "ready"}


@pytest.mark.parametrize(
    ("kind", "tokens", "learned_from", "said"),
    [
        ("redetect", 27168, "refusal", "re-detects; replaces the saved limit of 27,168 tokens"),
        ("redetect", 40960, "fits", "re-detects; replaces the saved floor: at least 40,960 tokens fit"),
        ("test_yarn", 40960, "fits", "floor: at least 40,960 tokens fit; the launch measures how much more"),
        ("launch", 27168, "refusal", "saved limit 27,168 tokens"),
    ],
)
def test_the_live_page_says_which_saved_limit_a_launch_starts_from_replaces_or_measures_above(
    client, operator, config, profile, django_capture_on_commit_callbacks, kind, tokens, learned_from, said
):
    learn_limit(config, profile, tokens, learned_from=learned_from)
    if kind == "test_yarn":
        config.enable_yarn, config.yarn_factor = True, Decimal("2.0")
        config.save()
    with django_capture_on_commit_callbacks():
        launch = Launch.objects.start(config, operator, kind=kind)
    client.force_login(operator)
    html = client.get(reverse("launches:live", args=[launch.pk])).content.decode()
    assert said in html
    assert "no saved limit (first detection)" not in html


def test_the_live_page_of_a_first_detection_says_no_limit_was_saved(
    client, operator, config, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        launch = Launch.objects.start(config, operator, kind="redetect")
    client.force_login(operator)
    assert (
        "no saved limit (first detection)"
        in client.get(reverse("launches:live", args=[launch.pk])).content.decode()
    )
