"""Prometheus metrics at /metrics, read from the database at scrape time.

Nothing is counted per request or in the workers: a custom collector asks the database what the
fleet looks like when Prometheus scrapes, so every web process answers the same numbers. With
AIFRED_METRICS_TOKEN set, a scrape must send ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import BooleanField, Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gpus.models import DetectedLimit, Gpu, GpuProfile, Host
from launches.models import Launch, LaunchAttempt, LaunchEvent

# Seconds from the request to a ready server: a saved-limit start takes one vLLM start, a first
# detection up to three.
TIME_TO_READY_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)
# Attempt outcomes that are not failures.
SUCCESSFUL_OUTCOMES = ("ready", "auto_fit", "")


class FleetCollector(Collector):
    """Reads hosts, cards, launches, attempts, limits and events; one short query per family."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        online = GaugeMetricFamily("aifred_hosts_online", "GPU hosts whose worker sent a heartbeat recently.")
        online.add_metric([], Host.objects.online().count())
        yield online

        gpus = GaugeMetricFamily(
            "aifred_gpus", "Cards currently reported, by GPU profile.", labels=["profile"]
        )
        profiles = Gpu.objects.current().values(profile_name=GpuProfile.display_name_expression("profile__"))
        for row in profiles.annotate(n=Count("id")).order_by():
            gpus.add_metric([row["profile_name"]], row["n"])
        yield gpus

        running = GaugeMetricFamily("aifred_servers_running", "vLLM servers ready, by host.", labels=["host"])
        for row in Launch.objects.running().values("host__name").annotate(n=Count("id")).order_by():
            running.add_metric([row["host__name"]], row["n"])
        yield running

        launches = CounterMetricFamily(
            "aifred_launches", "Launches ever requested, by kind and outcome.", labels=["kind", "outcome"]
        )
        for row in Launch.objects.values("kind", "outcome").annotate(n=Count("id")).order_by():
            launches.add_metric([row["kind"], row["outcome"] or "none"], row["n"])
        yield launches

        yield self._time_to_ready()

        failed = CounterMetricFamily(
            "aifred_failed_attempts", "vLLM starts that did not come up, by outcome.", labels=["outcome"]
        )
        rows = LaunchAttempt.objects.exclude(outcome__in=SUCCESSFUL_OUTCOMES).values("outcome")
        for row in rows.annotate(n=Count("id")).order_by():
            failed.add_metric([row["outcome"]], row["n"])
        yield failed

        limits = GaugeMetricFamily(
            "aifred_learned_limit_tokens",
            "Learned max_model_len per GPU profile, model and memory fingerprint.",
            labels=["profile", "model", "fingerprint", "learned_from"],
        )
        for limit in DetectedLimit.objects.select_related("profile", "model").order_by("id"):
            labels = [
                limit.profile.display_name,
                str(limit.model),
                limit.fingerprint[:12],
                limit.learned_from,
            ]
            limits.add_metric(labels, limit.max_model_len)
        yield limits

        waiting = GaugeMetricFamily(
            "aifred_events_waiting", "Events stored but not yet applied (waiting for a gap to fill)."
        )
        waiting.add_metric([], LaunchEvent.objects.filter(seq__gt=F("launch__last_seq")).count())
        yield waiting

        oldest = GaugeMetricFamily(
            "aifred_oldest_pending_launch_age_seconds",
            "Age of the oldest launch still queued or starting (0 when none).",
            labels=["status"],
        )
        pending = (Launch.Status.QUEUED, Launch.Status.STARTING)
        first = dict(
            Launch.objects.filter(status__in=pending)
            .values("status")
            .annotate(first=Min("created_at"))
            .order_by()
            .values_list("status", "first")
        )
        for state in pending:
            since = first.get(state)
            oldest.add_metric([state], (now - since).total_seconds() if since else 0.0)
        yield oldest

    @staticmethod
    def _time_to_ready() -> HistogramMetricFamily:
        histogram = HistogramMetricFamily(
            "aifred_time_to_ready_seconds",
            "Seconds from the request to a ready server, by how the start began: first detection "
            "(no saved limit) or a saved limit.",
            labels=["start"],
        )
        took = ExpressionWrapper(F("ready_at") - F("created_at"), output_field=DurationField())
        buckets = {
            f"le_{index}": Count("id", filter=Q(took__lte=timedelta(seconds=bound)))
            for index, bound in enumerate(TIME_TO_READY_BUCKETS)
        }
        saved = ExpressionWrapper(Q(known_limit__isnull=False), output_field=BooleanField())
        rows = (
            Launch.objects.filter(ready_at__isnull=False)
            .alias(took=took)
            .annotate(saved=saved)
            .values("saved")
            .annotate(count=Count("id"), total=Sum(took), **buckets)
            .order_by()
        )
        by_start = {bool(row["saved"]): row for row in rows}  # one pass over the ready launches
        for start, key in (("first_detection", False), ("saved_limit", True)):
            row = by_start.get(key) or {"count": 0, "total": None, **dict.fromkeys(buckets, 0)}
            cumulative = [
                (str(float(bound)), row[f"le_{index}"]) for index, bound in enumerate(TIME_TO_READY_BUCKETS)
            ]
            cumulative.append(("+Inf", row["count"]))
            total = row["total"].total_seconds() if row["total"] else 0.0
            histogram.add_metric([start], cumulative, total)
        return histogram


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(FleetCollector())


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The fleet in Prometheus' text format; 401 without the bearer token when one is set."""
    if not _authorized(request):
        response = HttpResponse(
            "Send the scrape token as 'Authorization: Bearer <AIFRED_METRICS_TOKEN>'.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
