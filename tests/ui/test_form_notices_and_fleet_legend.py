"""In Chromium: the config form's "save your changes first" and YaRN 1.0 warning, which its script
shows, and the fleet chart's legend at a phone's and a desktop's width."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import learn_limit, make_launch
from tests.ui.test_browser import browser, log_in, page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REFUSED = "With YaRN on, choose a factor above 1.0 (1.0 scales nothing)."


@pytest.fixture
def config_form(page, live_server, operator, config):  # noqa: F811
    """The config's change page, open for an operator."""
    log_in(page, live_server, operator)
    page.goto(live_server.url + reverse("admin:launches_launchconfig_change", args=[config.pk]))
    return page


def test_save_first_shows_only_while_a_field_differs_from_its_saved_value(config_form, config):
    from playwright.sync_api import expect

    form = config_form
    notice = form.locator('[data-role="save-first"]')
    expect(form.get_by_text("use the saved config")).to_be_visible()
    expect(notice).to_be_hidden()
    saved_name = form.input_value("#id_name")
    form.fill("#id_name", saved_name + " (edited)")
    expect(notice).to_be_visible()
    form.fill("#id_name", saved_name)
    expect(notice).to_be_hidden()
    form.fill("#id_gpu_memory_utilization", "0.8")
    form.click("#id_enforce_eager")
    expect(notice).to_be_visible()
    form.fill("#id_gpu_memory_utilization", str(config.gpu_memory_utilization))
    expect(notice).to_be_visible()  # the checkbox still differs
    form.click("#id_enforce_eager")
    expect(notice).to_be_hidden()


def test_the_launch_buttons_wait_for_unsaved_changes_to_be_saved(config_form):
    from playwright.sync_api import expect

    form = config_form
    buttons = form.locator("button.launch-action")
    expect(buttons).to_have_count(3)
    launch = form.get_by_role("button", name="Launch", exact=True)
    expect(launch).to_have_attribute("title", "Start a server with the saved config")
    saved_name = form.input_value("#id_name")
    form.fill("#id_name", saved_name + " (edited)")
    for name in ("Launch", "Test YaRN", "Re-detect limit"):
        button = form.get_by_role("button", name=name, exact=True)
        expect(button).to_be_disabled()
        expect(button).to_have_attribute("title", "Save your changes first")
    form.fill("#id_name", saved_name)
    for name in ("Launch", "Test YaRN", "Re-detect limit"):
        expect(form.get_by_role("button", name=name, exact=True)).to_be_enabled()
    expect(launch).to_have_attribute("title", "Start a server with the saved config")


def test_the_preview_warns_of_yarn_on_with_factor_one_as_saving_would_refuse_it(config_form):
    from playwright.sync_api import expect

    form = config_form
    warning = form.locator('#context-preview [data-role="warning"]')
    expect(warning).to_be_hidden()
    form.fill("#id_yarn_factor", "1.0")
    form.check("#id_enable_yarn")
    expect(warning).to_have_text(REFUSED)
    form.fill("#id_yarn_factor", "2.0")
    expect(warning).to_be_hidden()
    form.fill("#id_yarn_factor", "1")
    expect(warning).to_have_text(REFUSED)
    form.click("input[name=_continue]")
    expect(form.locator(".field-yarn_factor .errorlist")).to_have_text(REFUSED)


@pytest.mark.parametrize("width", [390, 1280])
def test_the_fleet_charts_legend_wraps_item_by_item(
    page,  # noqa: F811
    live_server,
    viewer,
    launch,
    config,
    profile,
    width,
    tmp_path,
):
    learn_limit(config, profile, 26624)
    make_launch(config, None, known_limit=26624, ready_at=timezone.now() + dt.timedelta(seconds=40))
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, live_server, viewer)
    page.goto(live_server.url + reverse("launches:fleet"))
    legend = page.locator(".ttr-legend")
    legend.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / f"fleet-legend-{width}.png"), full_page=True)
    box = legend.bounding_box()
    items = [item.bounding_box() for item in legend.locator("li").all()]
    assert len(items) == 4
    line = min(item["height"] for item in items)
    for item in items:
        # Each item on one line, inside the legend and the window: wrapping moves whole items.
        assert item["height"] < line * 1.5, item
        assert box["x"] - 1 <= item["x"] and item["x"] + item["width"] <= box["x"] + box["width"] + 1
        assert item["x"] + item["width"] <= width
    if width >= 1280:  # on a phone the learned-limits table, not the legend, is wider than the window
        assert page.evaluate("document.documentElement.scrollWidth") <= width
