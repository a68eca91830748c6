"""The pages the admin cannot be: the live launch page, its event feed, and the fleet dashboard."""

from __future__ import annotations

import re
import shlex
from datetime import datetime

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from gpus.models import DetectedLimit, Host
from launches.charts import time_to_ready_chart
from launches.contract import Outcome
from launches.events import FACTS_AFTER_THE_END
from launches.models import Launch, LaunchEvent
from launches.permissions import NO_ROLE, can_operate, can_view, refusal
from launches.verdicts import LATE_EVENT, LOG_TAIL_MARK, describe_attempt, describe_exit, describe_restart

# One answer carries at most this many events; the page asks again at once when there were more.
EVENTS_PER_ANSWER = 500


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Every 403 page: under the site's own title, saying what was refused and who may do it
    (``launches.permissions.refusal``)."""
    context = {**admin.site.each_context(request), "exception": refusal(request, exception)}
    return render(request, "403.html", context, status=403)


def require_viewer(request: HttpRequest) -> None:
    if not can_view(request.user):
        raise PermissionDenied(NO_ROLE)


@never_cache
@login_required
@require_GET
def live(request: HttpRequest, pk: int) -> HttpResponse:
    require_viewer(request)
    launch = get_object_or_404(
        Launch.objects.select_related("host", "model", "gpu_profile", "requested_by"), pk=pk
    )
    summary = launch.summary()
    # A crash's reason ends with vLLM's last log lines: the page shows those as a log.
    summary_text, _, summary_log = summary[1].partition(LOG_TAIL_MARK)
    context = {
        **admin.site.each_context(request),
        "title": str(launch),
        "launch": launch,
        "opts": Launch._meta,
        "can_operate": can_operate(request.user),
        "summary": summary,
        "summary_text": summary_text,
        "summary_log": summary_log,
        "events_url": reverse("launches:events", args=[launch.pk]),
    }
    return TemplateResponse(request, "launches/live.html", context)


def _started_lengths(launch: Launch) -> dict[int, int | None]:
    """Attempt number -> the length it asked for, from the attempt_started events."""
    started = LaunchEvent.objects.filter(launch=launch, kind="attempt_started").values_list("data", flat=True)
    # "auto" (--max-model-len auto) is no number: the verdict says "the automatic length" for None.
    return {
        data.get("attempt"): length if isinstance(length := data.get("requested_len"), int) else None
        for data in started
    }


# vLLM's log prefix: "INFO 11-30 02:38:32 [core.py:708]" (also after a "(EngineCore_DP0 pid=1) " tag).
VLLM_LOG_TIME = re.compile(r"\b(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (\d\d-\d\d \d\d:\d\d:\d\d)\b")


def in_written_order(lines: list[str]) -> list[str]:
    """A batch of stdout and stderr lines in the order vLLM wrote them, as far as its timestamps tell.

    The worker reads the two streams separately, so a line of one can arrive before an earlier line of
    the other. Lines are sorted, stably, by the second vLLM stamped on them; a line without a stamp
    (a traceback's lines, a continuation) stays with the stamped line before it.
    """
    groups: list[tuple[str, list[str]]] = []
    for line in lines:
        stamp = VLLM_LOG_TIME.search(line)
        if stamp or not groups:
            groups.append((stamp.group(1) if stamp else "", [line]))
        else:
            groups[-1][1].append(line)
    # Unstamped leading lines sort with the first stamp, so they are not moved to the front.
    first = next((stamp for stamp, _ in groups if stamp), "")
    ordered = sorted(groups, key=lambda group: group[0] or first)
    return [line for _, group in ordered for line in group]


def is_late(event: LaunchEvent, ended_at: datetime | None) -> bool:
    """Whether ``event`` reached the site after its launch had ended (``ended_at``, None while it
    runs), so was kept in the history and applied to nothing (``launches.events``). The event that
    ended a launch was received before the end it caused; the facts an ended launch still teaches
    (``FACTS_AFTER_THE_END``) are not late."""
    return ended_at is not None and event.received_at > ended_at and event.kind not in FACTS_AFTER_THE_END


def event_json(event: LaunchEvent, started: dict[int, int | None], ended_at: datetime | None = None) -> dict:
    """One event as the live page reads it: ``seq``, ``kind``, ``data`` (log lines in written order),
    ``at`` (ISO time received) and, by kind, the words to show: ``command``, ``verdict``/``ended``
    (attempt_finished), ``restart`` (restarting); or ``late`` instead of any verdict for an event
    that arrived after the launch ``ended_at`` (see ``is_late``)."""
    data = dict(event.data)
    if event.kind == "log" and isinstance(data.get("lines"), list):
        data["lines"] = in_written_order([str(line) for line in data["lines"]])
    item = {"seq": event.seq, "kind": event.kind, "data": data, "at": event.received_at.isoformat()}
    if is_late(event, ended_at):
        item["late"] = LATE_EVENT
        return item
    if event.kind == "restarting":
        exit_code = data.get("exit_code")
        item["restart"] = describe_restart(
            data.get("restarts", 0),
            data.get("restart_limit", 0),
            data.get("next_try_in", 0),
            exit_code if isinstance(exit_code, int) else None,
            str(data.get("reason") or ""),
        )
    if event.kind == "attempt_started":
        # A command one can paste into a shell.
        item["command"] = shlex.join(str(part) for part in data.get("argv") or [])
    if event.kind == "attempt_finished":
        number = data.get("attempt")
        item["verdict"] = describe_attempt(
            data.get("outcome", ""),
            data.get("requested_len", started.get(number)),
            data.get("parsed_len"),
            data.get("exit_code"),
            next_len=started.get(number + 1) if isinstance(number, int) else None,
            message=data.get("message"),
        )
        if data.get("outcome") != "ready":
            item["ended"] = describe_exit(
                data.get("exit_code"), data.get("stopped_by_launcher") is True, str(data.get("outcome", ""))
            )
    return item


@never_cache
@login_required
@require_GET
def events(request: HttpRequest, pk: int) -> JsonResponse:
    """Events after ``?after=<seq>``, and the launch's state: what the live page polls."""
    require_viewer(request)
    launch = get_object_or_404(Launch, pk=pk)
    return JsonResponse(events_after(launch, request.GET.get("after", "0"), request.user))


def events_after(launch: Launch, after: str | int, user) -> dict:
    """The launch's state and up to EVENTS_PER_ANSWER events after seq ``after`` (bad values: 0), as
    ``user`` may act on it (``can_stop``); ``interrupted`` is the sentence for an attempt that has no
    verdict because the launch ended ("" while it runs)."""
    try:
        after = max(int(after), 0)
    except (TypeError, ValueError):
        after = 0
    batch = list(LaunchEvent.objects.filter(launch=launch, seq__gt=after).order_by("seq")[:EVENTS_PER_ANSWER])
    started = _started_lengths(launch) if any(e.kind == "attempt_finished" for e in batch) else {}
    summary_kind, summary = launch.summary()
    return {
        "status": launch.status,
        "status_display": launch.get_status_display(),
        "terminal": launch.is_terminal,
        "can_stop": can_operate(user) and launch.can_be_stopped,
        "summary_kind": summary_kind,
        "summary": summary,
        "reason": launch.reason,
        "server_url": launch.server_url,
        "context_length": launch.context_length,
        "kv_capacity_tokens": launch.kv_capacity_tokens,
        "restarts": launch.restart_summary,
        # What an attempt still running when the launch ended says: why it was cut short.
        "interrupted": describe_attempt(Outcome.INTERRUPTED, None, cause=launch.outcome)
        if launch.is_terminal
        else "",
        "events": [event_json(event, started, launch.ended_at) for event in batch],
        "last_seq": batch[-1].seq if batch else after,
        "more": len(batch) == EVENTS_PER_ANSWER,
    }


@never_cache
@login_required
@require_GET
def fleet(request: HttpRequest) -> HttpResponse:
    """Hosts, what runs on them, what was learned per GPU, and how long starts take."""
    require_viewer(request)
    hosts = list(Host.objects.prefetch_related("gpus__profile").order_by("name"))
    # A server kept up that is between crash and restart still belongs to the fleet's picture.
    running = list(
        Launch.objects.filter(
            Q(status=Launch.Status.READY) | Q(status=Launch.Status.STARTING, restarts__gt=0)
        ).select_related("host", "model", "gpu_profile", "requested_by")
    )
    by_host: dict[int, list[Launch]] = {}
    for launch in running:
        by_host.setdefault(launch.host_id, []).append(launch)
    cards = []
    for host in hosts:
        current = [gpu for gpu in host.gpus.all() if gpu.retired_at is None]
        cards.append(
            {
                "host": host,
                "gpus": sorted(current, key=lambda gpu: gpu.index),
                "memory_total_mib": sum(gpu.profile.memory_total_mib for gpu in current),
                "memory_free_mib": sum(gpu.memory_free_mib or 0 for gpu in current),
                "running": by_host.get(host.pk, []),
            }
        )
    limits = []
    for limit in DetectedLimit.objects.select_related("profile", "model").order_by(
        "profile__name", "model__source"
    ):
        # The model's native context under the vLLM version the limit was learned with.
        native = limit.model.lengths_for(limit.vllm_version).native_context
        limits.append(
            {
                "limit": limit,
                "native": native,
                # How far YaRN can stretch the native context before the hardware limit caps it.
                "max_factor": (limit.max_model_len / native) if native else None,
                # A "fits" row is a floor: the limit and the factor are "at least".
                "at_least": not limit.is_ceiling,
            }
        )
    recent_ready = list(
        Launch.objects.filter(ready_at__isnull=False)
        .select_related("model")
        .only("id", "created_at", "ready_at", "known_limit", "model__source", "config_snapshot")
        .order_by("-created_at")[:60]
    )
    context = {
        **admin.site.each_context(request),
        "title": "Fleet",
        "cards": cards,
        "limits": limits,
        "chart": time_to_ready_chart(list(reversed(recent_ready))),
        "running_count": len(running),
    }
    return TemplateResponse(request, "launches/fleet.html", context)
