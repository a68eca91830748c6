"""The launch history: filters, search, the launch page, CSV export, and staying fast when huge."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from launches.history import HistoryPaginator
from launches.models import Launch
from tests.factories import make_config, make_host, make_launch, make_model

CHANGELIST = "admin:launches_launch_changelist"


def fill_history(config, count: int, batch: int = 20_000) -> None:
    """Minimal launch rows in large batches: what a long-lived site accumulates.

    Inserted with executemany rather than bulk_create: building 100,000 model instances costs more
    than the inserts themselves, and this test is in the default run.
    """
    now = timezone.now()
    table = Launch._meta.db_table
    columns = (
        "kind, config_snapshot, host_id, model_id, status, reason, outcome, spec, fingerprint, "
        "server_url, task_id, last_seq, created_at"
    )
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * 13)})"  # noqa: S608 (no user input)
    snapshot = json.dumps({"name": config.name})
    with connection.cursor() as cursor:
        for start in range(0, count, batch):
            cursor.executemany(
                sql,
                [
                    (
                        "launch",
                        snapshot,
                        config.host_id,
                        config.model_id,
                        "stopped",
                        "",
                        "ready",
                        "{}",
                        "",
                        "",
                        "",
                        0,
                        now - dt.timedelta(minutes=number),
                    )
                    for number in range(start, min(start + batch, count))
                ],
            )


def listed_ids(response) -> list[int]:
    return [row.pk for row in response.context["cl"].result_list]


def test_the_history_filters_by_host_model_status_outcome_who_and_date(
    client, viewer, operator, config, launch
):
    other_host = make_host("rack-a100")
    other_model = make_model("Qwen/Qwen3-32B-AWQ", 40960)
    failed = make_launch(
        make_config("big", host=other_host, model=other_model),
        viewer,
        status=Launch.Status.FAILED,
        outcome="weights_do_not_fit",
        created_at=timezone.now() - dt.timedelta(days=30),
    )
    client.force_login(viewer)
    url = reverse(CHANGELIST)
    assert listed_ids(client.get(url, {"host__id__exact": other_host.pk})) == [failed.pk]
    assert listed_ids(client.get(url, {"model__id__exact": config.model_id})) == [launch.pk]
    assert listed_ids(client.get(url, {"status__exact": "failed"})) == [failed.pk]
    assert listed_ids(client.get(url, {"outcome": "weights_do_not_fit"})) == [failed.pk]
    assert listed_ids(client.get(url, {"requested_by__id__exact": operator.pk})) == [launch.pk]
    assert listed_ids(client.get(url, {"gpu_profile__id__exact": launch.gpu_profile_id})) == [launch.pk]
    since = (timezone.now() - dt.timedelta(days=7)).date().isoformat()
    assert listed_ids(client.get(url, {"created_at__gte": since})) == [launch.pk]
    assert listed_ids(client.get(url, {"q": "big"})) == [failed.pk]


def test_a_launch_page_shows_its_attempts_argv_exit_codes_and_collapsed_log_tails(client, viewer, launch):
    client.force_login(viewer)
    html = client.get(reverse("admin:launches_launch_change", args=[launch.pk])).content.decode()
    assert "--max-model-len 40960" in html
    assert "KV cache too small for 40,960 tokens; vLLM says 26,624 fit" in html
    assert '<details><summary>1 lines</summary><pre class="log-tail">ERROR' in html
    assert "31.0 s" in html
    assert reverse("launches:live", args=[launch.pk]) in html
    assert 'name="_save"' not in html, "history is read-only"


def test_the_csv_export_streams_the_filtered_list(client, viewer, config, launch):
    make_launch(config, viewer, status=Launch.Status.FAILED, outcome="gpu_busy")
    client.force_login(viewer)
    response = client.get(reverse("admin:launches_launch_export"), {"status__exact": "ready"})
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(row["id"]) for row in rows] == [launch.pk]
    assert rows[0]["host"] == "desk-3060"
    assert rows[0]["requested_by"] == launch.requested_by.username
    assert rows[0]["context_length"] == "26624"
    assert rows[0]["config_name"] == launch.config_snapshot["name"]
    assert rows[0]["port"] == str(launch.config_snapshot["port"] or "")
    assert rows[0]["server_url"] == launch.server_url
    assert launch.server_url, "the fixture's launch is serving"


def test_the_change_list_links_the_export_with_its_current_filters(client, viewer, launch):
    client.force_login(viewer)
    html = client.get(reverse(CHANGELIST), {"status__exact": "ready"}).content.decode()
    assert reverse("admin:launches_launch_export") + "?status__exact=ready" in html


def test_the_paginator_stops_counting_at_its_cap(config):
    fill_history(config, 30)
    paginator = HistoryPaginator(Launch.objects.all(), 10)
    paginator.count_cap = 20
    assert paginator.count == 20
    assert paginator.count_is_exact is False
    exact = HistoryPaginator(Launch.objects.filter(status="stopped"), 10)
    assert exact.count == 30 and exact.count_is_exact


def test_the_history_page_costs_the_same_queries_with_100000_launches(
    client, viewer, config, launch, django_assert_max_num_queries
):
    client.force_login(viewer)
    url = reverse(CHANGELIST)
    client.get(url)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as small_filtered:
        client.get(url, {"host__id__exact": config.host_id, "status__exact": "stopped"})

    fill_history(config, 100_000)

    with django_assert_max_num_queries(len(small)):
        response = client.get(url)
    assert b"more than 10,000 launches" in response.content
    assert len(response.context["cl"].result_list) == 50
    with django_assert_max_num_queries(len(small_filtered)):
        client.get(url, {"host__id__exact": config.host_id, "status__exact": "stopped"})
    sql = " ".join(query["sql"] for query in small.captured_queries).upper()
    assert "DISTINCT" not in sql, "no filter may read the distinct values of the history"


def test_the_history_offers_no_facet_counts_that_would_scan_the_table(client, viewer, launch):
    client.force_login(viewer)
    html = client.get(reverse(CHANGELIST), {"_facets": "True"}).content.decode()
    assert "Show counts" not in html


def test_the_history_record_shows_token_counts_with_separators(client, viewer, launch):
    Launch.objects.filter(pk=launch.pk).update(
        known_limit=26624, wanted_context=40960, kv_capacity_tokens=27200
    )
    client.force_login(viewer)
    html = client.get(reverse("admin:launches_launch_change", args=[launch.pk])).content.decode()
    for number in ("26,624", "40,960", "27,200"):
        assert f'<div class="readonly">{number}</div>' in html, number
    assert not re.search(r'<div class="readonly">\d{5,}</div>', html)
