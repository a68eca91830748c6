"""The fleet dashboard: hosts, running servers, learned limits and time to ready."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import learn_limit, make_gpu, make_host, make_launch


def test_the_dashboard_shows_hosts_running_servers_limits_and_times(client, viewer, launch, config, profile):
    learn_limit(config, profile, 26624)
    make_host("sim-a100", simulated=True, last_heartbeat=timezone.now() - dt.timedelta(hours=1))
    make_launch(
        config, None, known_limit=26624, ready_at=timezone.now() + dt.timedelta(seconds=40), status="stopped"
    )
    client.force_login(viewer)
    html = client.get(reverse("launches:fleet")).content.decode()
    assert "desk-3060" in html and "sim-a100" in html
    assert 'class="badge online"' in html
    assert 'class="badge offline"' in html
    assert 'class="badge simulated"' in html
    assert "http://desk-3060:8000/v1" in html
    assert "26,624" in html
    # 26,624 of a 40,960 native context: no YaRN factor fits, and the page says so instead of "0.65×".
    assert "YaRN gains nothing here" in html and "0.65×" not in html
    assert "<svg" in html and html.count("<rect") == 2
    assert "first detection: median 70 s over 1" in html
    assert "saved limit: median 40 s over 1" in html


def test_an_offline_host_silent_for_less_than_a_minute_says_how_many_seconds(client, viewer, config):
    make_host("sim-a100", simulated=True, last_heartbeat=timezone.now() - dt.timedelta(seconds=45))
    client.force_login(viewer)
    html = client.get(reverse("launches:fleet")).content.decode()
    assert 'class="badge offline"' in html
    assert "Last heartbeat: 45 s ago" in html or "Last heartbeat: 46 s ago" in html
    assert "0 minutes ago" not in html


def test_a_length_that_only_fitted_is_shown_as_at_least(client, viewer, config, profile):
    learn_limit(config, profile, 40960, learned_from="fits")
    client.force_login(viewer)
    html = client.get(reverse("launches:fleet")).content.decode()
    assert "≥ 40,960" in html
    # A floor at the native context says nothing about YaRN headroom: no "≥ 1.00×", a dash that says why.
    assert "1.00×" not in html
    assert 'title="No headroom known above the native context' in html


def test_a_floor_above_the_native_context_is_an_at_least_factor(client, viewer, config, profile):
    learn_limit(config, profile, 81920, learned_from="fits")
    client.force_login(viewer)
    html = client.get(reverse("launches:fleet")).content.decode()
    assert "≥ 2.00×" in html and "No headroom known" not in html


def test_the_chart_legend_is_one_item_per_colour_and_per_median(client, viewer, launch, config):
    make_launch(config, None, known_limit=26624, ready_at=timezone.now() + dt.timedelta(seconds=40))
    client.force_login(viewer)
    html = client.get(reverse("launches:fleet")).content.decode()
    legend = html[html.index('<ul class="ttr-legend">') :]
    legend = legend[: legend.index("</ul>")]
    # Each item wraps as a whole on a narrow screen (launches.css keeps an item's words together).
    assert legend.count("<li") == 4
    assert '<li class="ttr-median">saved limit: median 40 s over 1</li>' in legend


def test_the_admin_index_leads_to_the_dashboard(client, viewer):
    client.force_login(viewer)
    assert reverse("launches:fleet") in client.get(reverse("admin:index")).content.decode()


def test_the_dashboard_costs_the_same_queries_for_one_host_or_many(client, viewer, launch, profile):
    client.force_login(viewer)
    client.get(reverse("launches:fleet"))  # warm the session and permission caches alike
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("launches:fleet"))
    for number in range(10):
        make_gpu(make_host(f"node-{number}"), 0, profile, uuid=f"GPU-{number}")
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("launches:fleet"))
    assert len(many) == len(few)


def test_the_admin_names_learned_limits_as_the_readme_does(client, viewer):
    client.force_login(viewer)
    html = client.get(reverse("admin:index")).content.decode()
    assert "Learned limits" in html and "Detected limits" not in html


def test_every_page_declares_its_icon_so_browsers_do_not_ask_for_a_missing_favicon(client, viewer, launch):
    # Headless Chromium fetches no favicon; a desktop browser asks for /favicon.ico unless a page names one.
    client.force_login(viewer)
    for url in (
        reverse("admin:index"),
        reverse("launches:fleet"),
        reverse("launches:live", args=[launch.pk]),
        reverse("admin:launches_launch_changelist"),
    ):
        assert '<link rel="icon" href="data:,">' in client.get(url).content.decode(), url


def test_two_limits_of_one_profile_and_model_say_which_memory_options_tell_them_apart(
    client, viewer, config, profile
):
    learn_limit(config, profile, 26624)  # the fixture's config quantizes with AWQ
    config.quantization = ""
    learn_limit(config, profile, 30720)
    client.force_login(viewer)
    html = client.get(reverse("launches:fleet")).content.decode()
    assert "<th>Memory options</th>" in html
    assert html.count("<td>default options</td>") == 1
    assert html.count("<td>quantization awq</td>") == 1


def test_an_offline_hosts_cards_show_their_free_memory_as_unknown_not_as_last_reported(client, viewer):
    online = make_host("desk-online", last_heartbeat=timezone.now())
    offline = make_host("desk-gone", last_heartbeat=timezone.now() - dt.timedelta(hours=1))
    make_gpu(online, 0, memory_free_mib=1111)
    make_gpu(offline, 0, memory_free_mib=9876)
    client.force_login(viewer)
    html = client.get(reverse("launches:fleet")).content.decode()
    assert "1,111 / 12,288 MiB" in html
    assert "9,876" not in html
    assert "unknown</span> / 12,288 MiB" in html
