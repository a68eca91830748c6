"""/metrics scraped as Prometheus would, parsed with prometheus_client's own parser, on a known fleet."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from launches.models import Launch
from tests.factories import (
    learn_limit,
    make_attempt,
    make_event,
    make_gpu,
    make_host,
    make_launch,
    make_profile,
)


@pytest.fixture
def known_fleet(config, gpu, profile, operator):
    """Two hosts online and one silent; three cards of two profiles; launches in every state that counts."""
    now = timezone.now()
    lab = make_host("lab-h100")
    make_gpu(lab, 0, make_profile("NVIDIA H100 80GB HBM3", 81559))
    make_gpu(make_host("old-box", last_heartbeat=now - dt.timedelta(hours=1)), 0, profile)
    learn_limit(config, profile, tokens=26624)

    def launch(status, known=None, took=None, outcome="", kind="launch", age=0):
        created = now - dt.timedelta(seconds=age)
        row = make_launch(config, operator, status=status, known_limit=known, outcome=outcome, kind=kind)
        ready = created + dt.timedelta(seconds=took) if took is not None else None
        Launch.objects.filter(pk=row.pk).update(created_at=created, ready_at=ready)
        return row

    first = launch("ready", took=25, outcome="ready")  # first detection, 25 s
    launch("stopped", took=70, outcome="ready")  # first detection, 70 s
    launch("stopped", known=26624, took=8, outcome="ready")  # saved limit, 8 s
    launch("failed", outcome="weights_do_not_fit")
    launch("stopped", took=12, outcome="ready", kind="test_yarn")  # first detection, 12 s
    launch("queued", age=90)
    launch("starting", age=30)
    for number, outcome in enumerate(["context_too_long", "ready", "gpu_busy", "context_too_long"], 1):
        make_attempt(first, number, outcome=outcome)
    # Events 9 and 10 arrived, event 8 not yet: two wait.
    Launch.objects.filter(pk=first.pk).update(last_seq=7)
    for seq in (5, 6, 7, 9, 10):
        make_event(first, seq, "log")


def scrape(client, **headers) -> dict:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_every_metric_has_the_fleets_value(client, known_fleet, config) -> None:
    samples = scrape(client)
    assert samples[("aifred_hosts_online", ())] == 2
    assert samples[("aifred_gpus", (("profile", "NVIDIA GeForce RTX 3060 (12 GiB)"),))] == 2
    assert samples[("aifred_gpus", (("profile", "NVIDIA H100 80GB HBM3 (80 GiB)"),))] == 1
    assert samples[("aifred_servers_running", (("host", "desk-3060"),))] == 1
    assert samples[("aifred_launches_total", (("kind", "launch"), ("outcome", "ready")))] == 3
    assert samples[("aifred_launches_total", (("kind", "test_yarn"), ("outcome", "ready")))] == 1
    assert samples[("aifred_launches_total", (("kind", "launch"), ("outcome", "weights_do_not_fit")))] == 1
    assert samples[("aifred_launches_total", (("kind", "launch"), ("outcome", "none")))] == 2

    first = (("start", "first_detection"),)
    saved = (("start", "saved_limit"),)
    assert samples[("aifred_time_to_ready_seconds_count", first)] == 3
    assert samples[("aifred_time_to_ready_seconds_sum", first)] == pytest.approx(25 + 70 + 12)
    assert samples[("aifred_time_to_ready_seconds_bucket", (("le", "10.0"), *first))] == 0
    assert samples[("aifred_time_to_ready_seconds_bucket", (("le", "30.0"), *first))] == 2
    assert samples[("aifred_time_to_ready_seconds_bucket", (("le", "90.0"), *first))] == 3
    assert samples[("aifred_time_to_ready_seconds_bucket", (("le", "+Inf"), *first))] == 3
    assert samples[("aifred_time_to_ready_seconds_count", saved)] == 1
    assert samples[("aifred_time_to_ready_seconds_bucket", (("le", "10.0"), *saved))] == 1

    assert samples[("aifred_failed_attempts_total", (("outcome", "context_too_long"),))] == 2
    assert samples[("aifred_failed_attempts_total", (("outcome", "gpu_busy"),))] == 1
    assert ("aifred_failed_attempts_total", (("outcome", "ready"),)) not in samples

    limit = config.model.limits.get()
    labels = (
        ("fingerprint", limit.fingerprint[:12]),
        ("learned_from", "refusal"),
        ("model", "Qwen/Qwen3-8B-AWQ"),
        ("profile", "NVIDIA GeForce RTX 3060 (12 GiB)"),
    )
    assert samples[("aifred_learned_limit_tokens", labels)] == 26624
    assert samples[("aifred_events_waiting", ())] == 2
    assert samples[("aifred_oldest_pending_launch_age_seconds", (("status", "queued"),))] == pytest.approx(
        90, abs=5
    )
    assert samples[("aifred_oldest_pending_launch_age_seconds", (("status", "starting"),))] == pytest.approx(
        30, abs=5
    )


def test_an_empty_fleet_scrapes_zeros(client, db) -> None:
    samples = scrape(client)
    assert samples[("aifred_hosts_online", ())] == 0
    assert samples[("aifred_events_waiting", ())] == 0
    assert samples[("aifred_oldest_pending_launch_age_seconds", (("status", "queued"),))] == 0
    assert samples[("aifred_time_to_ready_seconds_count", (("start", "saved_limit"),))] == 0


def test_with_a_scrape_token_only_the_bearer_may_read(client, db, settings) -> None:
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    refused = client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-scrape-token")
    assert refused.status_code == 401 and b"s3cret" not in refused.content
    assert scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")[("aifred_hosts_online", ())] == 0


def test_the_grafana_dashboard_asks_only_for_metrics_the_site_serves(client, known_fleet) -> None:
    import json
    import re
    from pathlib import Path

    served = {
        name.rsplit("_", 1)[0] if name.endswith(("_bucket", "_count", "_sum")) else name
        for name, _ in scrape(client)
    }
    served |= {name for name, _ in scrape(client)}
    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text()
    )
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\baifred_\w+", target["expr"])
    }
    assert asked and asked <= served, asked - served
    assert {
        "aifred_hosts_online",
        "aifred_time_to_ready_seconds_bucket",
        "aifred_learned_limit_tokens",
    } <= asked
