"""The admin UI in headless Chromium, against pytest-django's live server.

Run with ``pytest -m browser tests/ui``. Chromium comes from the system's package (``chromium`` on
PATH); Playwright drives it, it never downloads a browser. Data written by a test must be visible to
the live server's thread, hence transactional tests; ``serialized_rollback`` restores the role groups
that the data migrations created.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Iterator

import pytest
from django.urls import reverse
from django.utils import timezone

from launches.models import Launch, LaunchConfigChange
from tests.factories import PASSWORD, learn_limit, make_event, make_launch

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("No chromium on PATH: install the system package (apt-get install chromium).")
    # Playwright's sync API keeps an event loop in this thread, and Django refuses ORM calls from a
    # thread with a running loop; the tests' own ORM calls are plain synchronous code, so allow them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(5000)
    opened = context.new_page()
    yield opened
    context.close()


def log_in(page, live_server, user) -> None:
    page.goto(live_server.url + reverse("admin:login"))
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


def preview_text(page, role: str) -> str:
    return page.locator(f'#context-preview [data-role="{role}"]').inner_text()


def test_an_operator_sees_the_yarn_preview_change_without_a_reload_and_the_form_refuses_9(
    page, live_server, operator, config, profile
):
    from playwright.sync_api import expect

    learn_limit(config, profile, 26624)
    log_in(page, live_server, operator)
    page.goto(live_server.url + reverse("admin:launches_launchconfig_change", args=[config.pk]))
    info = page.locator('#context-preview [data-role="info"]')
    expect(info).to_contain_text("Model: 40K native | HW limit: 26K")
    # Untouched, the config simply starts at the learned limit: no warning box, a plain note.
    expect(page.locator('#context-preview [data-role="cap"]')).to_be_hidden()
    expect(page.locator('#context-preview [data-role="note"]')).to_contain_text(
        "The launch starts at what NVIDIA GeForce RTX 3060 (12 GiB) holds of this model: 26,624 tokens."
    )
    page.evaluate("window.notReloaded = true")

    page.check("#id_enable_yarn")
    page.fill("#id_yarn_factor", "2.0")
    expect(page.locator('#context-preview [data-role="requested"]')).to_contain_text("40,960 × 2.0 = 81,920")
    expect(page.locator('#context-preview [data-role="seed"]')).to_contain_text(
        "YaRN ×2.0 asks for 81,920 tokens; NVIDIA GeForce RTX 3060 (12 GiB) holds 26,624 of this model, "
        "so the launch serves 26,624."
    )
    expect(page.locator('#context-preview [data-role="warning"]')).to_be_hidden()
    expect(page.locator('#context-preview [data-role="cap"]')).to_contain_text(
        "the launch serves 26,624 tokens, not 81,920"
    )

    page.fill("#id_yarn_factor", "3.0")
    expect(page.locator('#context-preview [data-role="warning"]')).to_be_visible()
    expect(page.locator('#context-preview [data-role="warning"]')).to_contain_text("above 2.0")

    page.fill("#id_context_cap", "20000")
    expect(page.locator('#context-preview [data-role="requested"]')).to_contain_text(
        "40,960 × 3.0 = 122,880 tokens, lowered to the cap: 20,000 tokens"
    )
    expect(page.locator('#context-preview [data-role="cap"]')).to_be_hidden()
    page.fill("#id_context_cap", "")

    page.fill("#id_gpu_memory_utilization", "0.8")
    expect(info).to_contain_text("HW limit: not yet measured")
    assert page.evaluate("window.notReloaded") is True, "the preview must update without a reload"

    page.fill("#id_gpu_memory_utilization", "0.9")
    expect(info).to_contain_text("HW limit: 26K")
    for invalid in ("9", "1.3"):
        # An invalid factor asks for nothing: only the note saying what a factor may be.
        page.fill("#id_yarn_factor", invalid)
        expect(page.locator('#context-preview [data-role="note"]')).to_contain_text("between 1.0 and 8.0")
        expect(page.locator('#context-preview [data-role="cap"]')).to_be_hidden()
        expect(page.locator('#context-preview [data-role="seed"]')).to_have_text("")
    page.fill("#id_yarn_factor", "9.0")
    page.click("input[name=_continue]")
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-yarn_factor .errorlist")).to_contain_text("between 1.0 and 8.0")

    page.fill("#id_yarn_factor", "2.0")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    assert LaunchConfigChange.objects.filter(config=config, field="yarn_factor", new_value="2.0").exists()
    page.get_by_text("Change history").first.click()
    expect(page.locator("#changes-group")).to_contain_text("yarn_factor")
    expect(page.locator("#changes-group")).to_contain_text(operator.username)


def test_above_a_length_that_only_fitted_the_preview_promises_no_cap(
    page, live_server, operator, config, profile
):
    from playwright.sync_api import expect

    learn_limit(config, profile, 40960, learned_from="fits")
    log_in(page, live_server, operator)
    page.goto(live_server.url + reverse("admin:launches_launchconfig_change", args=[config.pk]))
    expect(page.locator('#context-preview [data-role="info"]')).to_contain_text("HW limit: at least 40K fits")
    page.check("#id_enable_yarn")
    page.fill("#id_yarn_factor", "2.0")
    expect(page.locator('#context-preview [data-role="note"]')).to_contain_text(
        "Above the 40,960 tokens known to fit, the launch measures this GPU's limit."
    )
    expect(page.locator('#context-preview [data-role="cap"]')).to_be_hidden()


def test_the_factor_is_applied_once_to_the_native_context_not_to_a_length_a_yarn_run_learned(
    page, live_server, operator, config, profile
):
    from playwright.sync_api import expect

    # A ×2 run found that 81,920 tokens fit: that length already includes a factor.
    learn_limit(config, profile, 81920, learned_from="fits")
    log_in(page, live_server, operator)
    page.goto(live_server.url + reverse("admin:launches_launchconfig_change", args=[config.pk]))
    expect(page.locator('#context-preview [data-role="info"]')).to_contain_text("HW limit: at least 80K fits")
    page.check("#id_enable_yarn")
    page.fill("#id_yarn_factor", "8.0")
    expect(page.locator('#context-preview [data-role="requested"]')).to_contain_text("40,960 × 8.0 = 327,680")
    expect(page.locator('#context-preview [data-role="seed"]')).to_contain_text(
        "YaRN ×8.0 asks for 327,680 tokens; at least 81,920 fit on"
    )


def test_the_preview_of_a_model_whose_config_could_not_be_read_says_why(page, live_server, operator, config):
    from playwright.sync_api import expect

    from gpus.models import ModelSpec

    error = (
        "config.json is not valid JSON (Expecting value at line 1, column 1); fix or re-download the file."
    )
    ModelSpec.objects.filter(pk=config.model_id).update(
        native_context=None, facts_status=ModelSpec.FactsStatus.ERROR, facts_error=error
    )
    log_in(page, live_server, operator)
    page.goto(live_server.url + reverse("admin:launches_launchconfig_change", args=[config.pk]))
    expect(page.locator('#context-preview [data-role="requested"]')).to_have_text(
        f"Requested context: unknown, the model's config.json could not be read: {error}"
    )


def test_a_viewer_sees_no_action_buttons_and_a_forged_post_is_refused(page, live_server, viewer, config):
    from playwright.sync_api import expect

    log_in(page, live_server, viewer)
    page.goto(live_server.url + reverse("admin:launches_launchconfig_change", args=[config.pk]))
    expect(page.locator("#context-preview")).to_be_visible()
    assert page.locator("button.launch-action").count() == 0
    assert page.locator("input[name=_save]").count() == 0
    status = page.evaluate(
        """async (url) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const response = await fetch(url, {method: "POST", headers: {"X-CSRFToken": token}});
            return response.status;
        }""",
        reverse("admin:launches_launchconfig_launch", args=[config.pk]),
    )
    assert status == 403
    assert Launch.objects.count() == 0


def test_the_live_page_shows_events_within_a_second_of_their_arrival(
    page, live_server, viewer, config, operator
):
    from playwright.sync_api import expect

    launch = make_launch(config, operator, status=Launch.Status.STARTING)
    log_in(page, live_server, viewer)
    page.goto(live_server.url + reverse("launches:live", args=[launch.pk]))
    expect(page.locator('[data-role="status"]')).to_have_text("Starting")

    make_event(launch, 1, "attempt_started", {"attempt": 1, "requested_len": 40960, "argv": ["vllm"]})
    make_event(launch, 2, "log", {"attempt": 1, "lines": ["INFO loading"]})
    expect(page.locator("section.attempt h2")).to_have_text("Attempt 1 — 40,960 tokens", timeout=1500)
    expect(page.locator("section.attempt pre.log")).to_contain_text("INFO loading", timeout=1500)

    now = timezone.now()
    make_event(
        launch,
        3,
        "attempt_finished",
        {
            "attempt": 1,
            "outcome": "context_too_long",
            "parsed_len": 26624,
            "exit_code": 1,
            "started_at": (now - dt.timedelta(seconds=31)).isoformat(),
            "ended_at": now.isoformat(),
        },
    )
    make_event(launch, 4, "attempt_started", {"attempt": 2, "requested_len": 26624, "argv": ["vllm"]})
    expect(page.locator("section.attempt .verdict").first).to_have_text(
        re.compile(
            r"KV cache too small for 40,960 tokens; vLLM says 26,624 fit — restarting with 26,624 \(31\.0 s\)"
        ),
        timeout=1500,
    )
    make_event(launch, 5, "ready", {"url": "http://desk-3060:8000/v1", "max_model_len": 26624})
    Launch.objects.filter(pk=launch.pk).update(
        status=Launch.Status.READY, server_url="http://desk-3060:8000/v1", context_length=26624
    )
    expect(page.locator('[data-role="result"]')).to_contain_text(
        "Serving at http://desk-3060:8000/v1 with a context of 26,624 tokens", timeout=1500
    )
    expect(page.locator('[data-role="status"]')).to_have_text("Running")


def test_launching_against_the_stand_in_shows_the_attempts_live(request, page, live_server, operator):
    """The whole path: button, control worker, GPU worker, the vLLM stand-in, events, this page.

    Needs the ``live_stack`` fixture (Redis, the control worker and a GPU worker running the vLLM
    stand-in against this test's database), which comes with the workers. It must provide
    ``live_stack.config``: a LaunchConfig whose host's GPU worker is running, for a model whose native
    context the stand-in refuses once (then fits the number it printed).
    """
    from playwright.sync_api import expect

    try:
        stack = request.getfixturevalue("live_stack")
    except pytest.FixtureLookupError:
        pytest.skip("needs the live_stack fixture (control worker + GPU worker + vLLM stand-in)")
    config = stack.config
    log_in(page, live_server, operator)
    page.goto(live_server.url + reverse("admin:launches_launchconfig_change", args=[config.pk]))
    page.click("button.launch-action:text('Launch')")
    page.wait_for_url(re.compile(r"/launches/\d+/live/$"))
    expect(page.locator('section.attempt[data-attempt="1"] h2')).to_contain_text("Attempt 1", timeout=30_000)
    expect(page.locator('section.attempt[data-attempt="1"] pre.log')).not_to_be_empty(timeout=30_000)
    expect(page.locator('section.attempt[data-attempt="1"] .verdict')).to_contain_text(
        "KV cache too small", timeout=60_000
    )
    expect(page.locator('section.attempt[data-attempt="2"] .verdict')).to_contain_text(
        "ready", timeout=60_000
    )
    expect(page.locator('[data-role="result"]')).to_contain_text("Serving at", timeout=60_000)
    launch = Launch.objects.latest("created_at")
    assert launch.status == Launch.Status.READY
    assert launch.attempts.count() == 2
    page.goto(live_server.url + reverse("admin:launches_launch_change", args=[launch.pk]))
    expect(page.locator("#attempts-group")).to_contain_text("--max-model-len")
    launch.request_stop(operator)
