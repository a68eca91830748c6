"""What the live page, the history and the admin say about how attempts and launches ended: words for
every outcome, signals named, the launcher's stop said as a stop, outcome codes not shown bare.

The events are applied the way the control worker applies a GPU worker's reports
(``Launch.apply_event``), so the rows are those a real launch leaves.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from launches.contract import Outcome
from launches.verdicts import describe_attempt, describe_exit, with_signal_names
from tests.factories import feed, finished, make_launch, started
from tests.ui.test_config_form import preview

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_has_words_as_an_attempts_verdict(outcome):
    sentence = describe_attempt(str(outcome), 40960, 26624, 1, cause="worker_restarted")
    assert not sentence.startswith("Attempt ended: " + str(outcome))
    if "_" in outcome and outcome != Outcome.MAX_NUM_SEQS_TOO_HIGH:  # that one names vLLM's option
        assert str(outcome) not in sentence
    assert "without a verdict" not in sentence


@pytest.mark.parametrize("cause", list(Outcome))
def test_an_interrupted_attempt_says_why_for_every_way_a_launch_ends(cause):
    sentence = describe_attempt("interrupted", None, cause=str(cause))
    assert sentence.startswith("Interrupted: ") and "_" not in sentence


def test_exit_codes_are_said_as_what_happened():
    assert describe_exit(None) == "—"
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-9) == "killed by signal 9 (SIGKILL)"
    assert describe_exit(-99) == "killed by signal 99"  # no name Python knows
    assert describe_exit(0, stopped_by_launcher=True, outcome="context_too_long") == (
        "stopped by the launcher after vLLM's refusal (SIGTERM; vLLM exited with code 0)"
    )
    assert describe_exit(-9, stopped_by_launcher=True, outcome="timeout") == (
        "stopped by the launcher when the time to become ready ran out "
        "(SIGTERM, then SIGKILL; vLLM was killed)"
    )
    assert "killed by the launcher (SIGTERM, exit code" not in describe_exit(0, stopped_by_launcher=True)
    crashed = describe_attempt("crashed", 40960, exit_code=-9)
    assert crashed.startswith("vLLM was killed by signal 9 (SIGKILL) for a reason")
    assert "-9" not in crashed
    assert describe_attempt("crashed", 40960, exit_code=137).startswith("vLLM exited with code 137")


def test_a_reason_with_a_negative_code_names_the_signal_but_leaves_vllms_lines_alone():
    reason = "The vLLM server exited with code -9.\nLast log lines:\nWorker died, exit code -15"
    assert with_signal_names(reason) == (
        "The vLLM server was killed by signal 9 (SIGKILL).\nLast log lines:\nWorker died, exit code -15"
    )


def test_an_attempt_cut_short_by_a_worker_restart_says_so_on_the_live_feed_and_in_the_history(
    client, viewer, config, operator
):
    launch = make_launch(config, operator)
    reason = "The GPU worker restarted during the start."
    feed(
        launch,
        ("accepted", {"host": config.host.name}),
        started(1, 40960),
        ("failed", {"outcome": "worker_restarted", "reason": reason}),
    )
    assert launch.attempts.get().outcome == "interrupted"
    client.force_login(viewer)
    answer = client.get(reverse("launches:events", args=[launch.pk])).json()
    assert answer["interrupted"] == "Interrupted: the GPU worker restarted, before vLLM gave a verdict."
    html = client.get(reverse("admin:launches_launch_change", args=[launch.pk])).content.decode()
    assert "Interrupted: the GPU worker restarted, before vLLM gave a verdict." in html
    assert "Attempt ended: Interrupted" not in html


def test_a_launch_still_running_has_no_interruption_sentence(client, viewer, config, operator):
    launch = feed(make_launch(config, operator), ("accepted", {"host": config.host.name}), started(1, 40960))
    client.force_login(viewer)
    assert client.get(reverse("launches:events", args=[launch.pk])).json()["interrupted"] == ""


def test_the_launchers_stop_and_a_signal_read_as_such_on_the_feed_and_in_the_admin(
    client, viewer, config, operator
):
    launch = feed(
        make_launch(config, operator),
        ("accepted", {"host": config.host.name}),
        started(1, 40960),
        finished(1, "context_too_long", parsed_len=27168, exit_code=0, stopped_by_launcher=True),
        started(2, 27168),
        finished(2, "crashed", exit_code=-9),
        ("failed", {"outcome": "crashed", "reason": "vLLM exited with code -9 before it was ready"}),
    )
    client.force_login(viewer)
    events = client.get(reverse("launches:events", args=[launch.pk])).json()
    ends = [event["ended"] for event in events["events"] if event["kind"] == "attempt_finished"]
    assert ends == [
        "stopped by the launcher after vLLM's refusal (SIGTERM; vLLM exited with code 0)",
        "killed by signal 9 (SIGKILL)",
    ]
    assert events["summary"] == "Failed: vLLM was killed by signal 9 (SIGKILL) before it was ready"
    html = client.get(reverse("admin:launches_launch_change", args=[launch.pk])).content.decode()
    assert "killed by signal 9 (SIGKILL)" in html and "code -9" not in html
    attempts = client.get(reverse("admin:launches_launchattempt_changelist")).content.decode()
    assert "killed by signal 9 (SIGKILL)" in attempts and ">-9<" not in attempts


def test_the_launch_page_in_the_admin_shows_outcomes_in_words_with_the_code_small(
    client, viewer, config, operator
):
    launch = feed(
        make_launch(config, operator),
        ("accepted", {"host": config.host.name}),
        started(1, 40960),
        finished(1, "weights_do_not_fit", exit_code=1),
        ("failed", {"outcome": "weights_do_not_fit", "reason": "The weights do not fit."}),
    )
    client.force_login(viewer)
    html = client.get(reverse("admin:launches_launch_change", args=[launch.pk])).content.decode()
    assert 'Weights do not fit <small class="outcome-code">weights_do_not_fit</small>' in html
    # The code appears only in that small print, nowhere as the outcome's text.
    assert html.count("weights_do_not_fit") == html.count('class="outcome-code">weights_do_not_fit<')
    for listing in ("admin:launches_launchattempt_changelist", "admin:launches_launchevent_changelist"):
        page = client.get(reverse(listing)).content.decode()
        assert 'Weights do not fit <small class="outcome-code">weights_do_not_fit</small>' in page
        # Beside the small print, the code is only in the outcome filter's links (?outcome=…).
        shown = page.count('class="outcome-code">weights_do_not_fit<') + page.count(
            "outcome=weights_do_not_fit"
        )
        assert page.count("weights_do_not_fit") == shown


def test_a_crashs_last_log_lines_show_as_a_log_on_the_live_page(client, viewer, config, operator):
    launch = feed(
        make_launch(config, operator),
        ("accepted", {"host": config.host.name}),
        started(1, 40960),
        finished(1, "ready", parsed_len=40960),
        ("ready", {"url": "http://127.0.0.1:8101/v1", "max_model_len": 40960, "pid": 1, "pgid": 1}),
        (
            "crashed",
            {"reason": "The vLLM server exited with code -9.", "log_tail": ["RuntimeError: CUDA error"]},
        ),
    )
    client.force_login(viewer)
    html = client.get(reverse("launches:live", args=[launch.pk])).content.decode()
    assert "The vLLM server was killed by signal 9 (SIGKILL)." in html
    assert '<pre class="log-tail">RuntimeError: CUDA error</pre>' in html


def test_the_preview_warns_with_the_forms_own_sentence_for_yarn_on_with_factor_one(client, operator, config):
    client.force_login(operator)
    refused = "With YaRN on, choose a factor above 1.0 (1.0 scales nothing)."
    assert preview(client, config, enable_yarn="on", yarn_factor="1.0")["yarn_problem"] == refused
    assert preview(client, config, enable_yarn="on", yarn_factor="2.0")["yarn_problem"] == ""
    assert preview(client, config, yarn_factor="1.0")["yarn_problem"] == ""
    assert preview(client, config, enable_yarn="on", yarn_factor="1.3")["yarn_problem"] == ""


def test_save_your_changes_first_is_hidden_until_a_field_changes(client, operator, config):
    client.force_login(operator)
    html = client.get(reverse("admin:launches_launchconfig_change", args=[config.pk])).content.decode()
    assert '<span data-role="save-first" hidden>: save your changes first</span>' in html


def test_a_port_in_use_verdict_says_the_attempts_own_case_in_a_full_sentence() -> None:
    fixed = (
        "Port 8123 on 127.0.0.1 is held by another process (not a launch of this site); choose another port"
    )
    assert describe_attempt("port_in_use", 40960, message=fixed) == f"{fixed}."
    assert "next free port" in describe_attempt("port_in_use", 40960, next_len=40960)
    for words in (describe_attempt("port_in_use", 40960), describe_attempt("port_in_use", 40960, next_len=1)):
        assert words.endswith(".") and "A port fixed in the config" not in words
