"""Every way a launch ends, on the live page in Chromium: one consistent state, the reason, no Stop.

The events are applied the way the control worker applies a GPU worker's reports
(``Launch.apply_event``), so the rows are those a real launch leaves.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from gpus.models import Host
from launches.models import Launch
from tests.factories import accepted, feed, finished, make_launch, ready_at, started
from tests.ui.test_browser import browser, log_in, page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BROKEN = re.compile(r"\bNaN\b|\bundefined\b")


def ask_to_stop(launch: Launch, user) -> None:
    """What Launch.request_stop writes, without sending the stop to a host: these tests have no
    broker, and a message sent now would tie the site's broker connection to the wrong Redis."""
    assert launch.transition(Launch.Status.STOPPING, stopped_by=user)


def open_live(page, live_server, operator, launch: Launch):  # noqa: F811
    log_in(page, live_server, operator)
    page.goto(live_server.url + reverse("launches:live", args=[launch.pk]))
    return page.locator('[data-role="result"]')


def assert_ended(page, result, status: str, *sentences: str) -> None:  # noqa: F811
    from playwright.sync_api import expect

    expect(page.locator('[data-role="status"]')).to_have_text(status)
    for sentence in sentences:
        expect(result).to_contain_text(sentence)
    expect(result).not_to_contain_text("Serving at")
    expect(page.get_by_role("link", name=re.compile("^Stop"))).to_have_count(0)
    time.sleep(1.2)  # one more poll and a tick of the timer
    text = page.locator("body").inner_text()
    assert BROKEN.search(text) is None, text
    assert "running…" not in text


def test_a_stopped_server_ends_stopped_by_whom_with_its_auto_fit_attempt_in_seconds(
    page,  # noqa: F811
    live_server,
    config,
    operator,
):
    from playwright.sync_api import expect

    now = time.time()
    launch = make_launch(config, operator)
    feed(
        launch,
        ("accepted", {"host": config.host.name}),
        started(1, "auto"),
        finished(1, "ready", now, parsed_len=40960),
    )
    feed(launch, ready_at(40960))
    ask_to_stop(launch, operator)
    feed(launch, ("stopped", {"reason": "Stopped on request."}))
    result = open_live(page, live_server, operator, launch)
    assert_ended(page, result, "Stopped", "Stopped by olivia-operator.")
    attempt = page.locator('section.attempt[data-attempt="1"]')
    expect(attempt.locator("h2")).to_have_text("Attempt 1 — automatic length (vLLM fits it to the GPU)")
    expect(attempt.locator(".verdict")).to_have_text("vLLM is ready with 40,960 tokens of context. (12.5 s)")


def test_a_failed_start_ends_failed_with_the_reason(page, live_server, config, operator):  # noqa: F811
    now = time.time()
    launch = make_launch(config, operator)
    reason = "The model's weights do not fit in this GPU's memory; no context length can help."
    feed(
        launch,
        ("accepted", {"host": config.host.name}),
        started(1, 40960),
        finished(1, "weights_do_not_fit", now, exit_code=1),
        ("failed", {"outcome": "weights_do_not_fit", "reason": reason}),
    )
    result = open_live(page, live_server, operator, launch)
    assert_ended(page, result, "Failed", f"Failed: {reason}")
    from playwright.sync_api import expect

    expect(page.locator('section.attempt[data-attempt="1"] .verdict')).to_contain_text(
        "(12.5 s) · exited with code 1"
    )


def test_a_start_the_operator_stopped_ends_cancelled_not_failed(
    page,  # noqa: F811
    live_server,
    config,
    operator,
):
    now = time.time()
    launch = make_launch(config, operator)
    feed(launch, ("accepted", {"host": config.host.name}), started(1, 40960))
    ask_to_stop(launch, operator)
    feed(launch, finished(1, "cancelled", now), ("failed", {"outcome": "cancelled", "reason": "stopped"}))
    result = open_live(page, live_server, operator, launch)
    assert_ended(page, result, "Cancelled", "Cancelled by olivia-operator during the start.")
    assert "failed" not in result.get_attribute("class")


def test_a_crashed_server_ends_crashed_with_its_last_log_lines(page, live_server, config, operator):  # noqa: F811
    now = time.time()
    launch = make_launch(config, operator)
    feed(
        launch,
        ("accepted", {"host": config.host.name}),
        started(1, 40960),
        finished(1, "ready", now, parsed_len=40960),
    )
    feed(launch, ready_at(40960))
    feed(
        launch,
        (
            "crashed",
            {"reason": "The vLLM server exited with code -9.", "log_tail": ["RuntimeError: CUDA error"]},
        ),
    )
    result = open_live(page, live_server, operator, launch)
    assert_ended(
        page,
        result,
        "Crashed",
        "The vLLM server was killed by signal 9 (SIGKILL).",
        "RuntimeError: CUDA error",
    )
    # vLLM's lines are a log: monospace and plain, not the result's bold sentence type.
    tail = result.locator("pre.log-tail")
    from playwright.sync_api import expect

    expect(tail).to_have_text("RuntimeError: CUDA error")
    style = tail.evaluate("node => [getComputedStyle(node).fontFamily, getComputedStyle(node).fontWeight]")
    assert "mono" in style[0].lower() and style[1] == "400", style
    assert "code -9" not in result.inner_text()


def test_a_launch_whose_worker_went_silent_ends_lost(page, live_server, config, operator):  # noqa: F811
    launch = make_launch(config, operator)
    feed(launch, ("accepted", {"host": config.host.name}), started(1, 40960))
    Host.objects.filter(pk=config.host_id).update(last_heartbeat=timezone.now() - dt.timedelta(hours=1))
    assert Launch.objects.mark_lost() == 1
    result = open_live(page, live_server, operator, launch)
    assert_ended(page, result, "Lost", "has not reported since")


def test_a_yarn_test_that_gains_nothing_says_so_in_words(page, live_server, config, operator, profile):  # noqa: F811
    from playwright.sync_api import expect

    config.enable_yarn, config.yarn_factor = True, Decimal("2.0")
    config.save()
    now = time.time()
    launch = make_launch(
        config, operator, kind=Launch.Kind.TEST_YARN, spec={"yarn_factor": 2.0, "native_context": 40960}
    )
    feed(
        launch,
        ("accepted", {"host": config.host.name}),
        started(1, 81920),
        finished(1, "context_too_long", now, parsed_len=27168, exit_code=-9),
        started(2, 27168),
        finished(2, "ready", now + 13, parsed_len=27168),
        ready_at(27168),
        (
            "stopped",
            {"reason": "YaRN test done.", "test_passed": True, "max_model_len": 27168},
        ),
    )
    result = open_live(page, live_server, operator, launch)
    assert_ended(
        page,
        result,
        "Stopped",
        "YaRN ×2.0 on NVIDIA GeForce RTX 3060 (12 GiB): vLLM came up with 27,168 tokens; "
        "the factor gains nothing here",
    )
    expect(page.locator('section.attempt[data-attempt="1"] .verdict')).to_contain_text(
        "KV cache too small for 81,920 tokens; vLLM says 27,168 fit — restarting with 27,168 (12.5 s) · "
        "killed by signal 9 (SIGKILL)"
    )


def test_an_attempt_the_launcher_stopped_on_its_refusal_line_says_so_on_the_live_page_and_in_the_history(
    page,  # noqa: F811
    live_server,
    config,
    operator,
):
    from playwright.sync_api import expect

    now = time.time()
    launch = make_launch(config, operator)
    feed(
        launch,
        ("accepted", {"host": config.host.name}),
        started(1, 40960),
        finished(1, "context_too_long", now, parsed_len=27168, exit_code=0, stopped_by_launcher=True),
        started(2, 27168),
        finished(2, "ready", now + 13, parsed_len=27168),
        ready_at(27168),
    )
    open_live(page, live_server, operator, launch)
    verdict = page.locator('section.attempt[data-attempt="1"] .verdict')
    expect(verdict).to_contain_text(
        "(12.5 s) · stopped by the launcher after vLLM's refusal (SIGTERM; vLLM exited with code 0)"
    )
    page.goto(live_server.url + reverse("admin:launches_launch_change", args=[launch.pk]))
    row = page.locator("tr", has_text="KV cache too small for 40,960 tokens")
    expect(row).to_contain_text(
        "stopped by the launcher after vLLM's refusal (SIGTERM; vLLM exited with code 0)"
    )


def test_an_attempt_cut_short_by_a_gpu_worker_restart_says_so_in_words(page, live_server, config, operator):  # noqa: F811
    from playwright.sync_api import expect

    launch = make_launch(config, operator)
    reason = "The GPU worker restarted during the start."
    feed(
        launch,
        accepted(launch),
        started(1, 40960),
        ("failed", {"outcome": "worker_restarted", "reason": reason}),
    )
    result = open_live(page, live_server, operator, launch)
    assert_ended(page, result, "Failed", reason)
    verdict = page.locator('section.attempt[data-attempt="1"] .verdict')
    expect(verdict).to_have_text("Interrupted: the GPU worker restarted, before vLLM gave a verdict.")
    assert "without a verdict" not in page.locator("#launch-live").inner_text()
