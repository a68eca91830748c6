"""The admin's own pages beside the model admins: the config form's context preview, the Launch /
Test YaRN / Re-detect / Stop buttons, the stop confirmation and the history's CSV export.

``LaunchConfigViews`` and ``LaunchViews`` are mixed into ``LaunchConfigAdmin`` and ``LaunchAdmin``
(``launches.admin``), whose ``get_urls`` route to these methods; every view checks permissions
through ``launches.permissions``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from gpus.fingerprint import FINGERPRINT_FIELDS
from gpus.models import GpuProfile, ModelSpec
from launches.contract import wanted_length
from launches.models import Launch, LaunchConfig, LaunchRefused, yarn_factor_problem
from launches.permissions import NO_ROLE, OPERATORS_ONLY, can_operate, can_view

# Fields of the config form that change the preview's hardware limit (they form the fingerprint).
PREVIEW_FIELDS = ("model", "host", "gpu_indices", *(f for f in FINGERPRINT_FIELDS if f != "vllm_version"))


def require_operator(request: HttpRequest) -> None:
    if not can_operate(request.user):
        raise PermissionDenied(OPERATORS_ONLY)


def live_url(launch: Launch) -> str:
    return reverse("launches:live", args=[launch.pk])


def stop_confirmation(
    request: HttpRequest, model_admin: admin.ModelAdmin, launches: list[Launch], form_action: str = ""
) -> TemplateResponse:
    """The intermediate page, like the admin's delete confirmation: stopping ends running servers."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Are you sure?",
        "opts": model_admin.model._meta,
        "launches": launches,
        "form_action": form_action,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "selected_ids": request.POST.getlist(ACTION_CHECKBOX_NAME),
        "action_name": request.POST.get("action", ""),
    }
    return TemplateResponse(request, "admin/launches/stop_confirmation.html", context)


def stop_launches(request: HttpRequest, launches: Iterable[Launch]) -> int:
    stopped = 0
    for launch in launches:
        try:
            with transaction.atomic():
                launch.request_stop(request.user)
        except LaunchRefused as refusal:
            messages.error(request, str(refusal))
        else:
            stopped += 1
    if stopped:
        messages.success(request, f"Asked the host to stop {stopped} launch{'es' if stopped != 1 else ''}.")
    return stopped


def stop_selected_launches(
    request: HttpRequest, model_admin: admin.ModelAdmin, active: list[Launch], none_active: str
) -> TemplateResponse | None:
    """A "stop selected" action: ``none_active`` when nothing selected runs, the confirmation page
    first, then the stop requests once confirmed."""
    if not active:
        messages.error(request, none_active)
        return None
    if request.POST.get("post") == "yes":
        stop_launches(request, active)
        return None
    return stop_confirmation(request, model_admin, active)


class PreviewForm(forms.ModelForm):
    """The fields that decide which learned limit applies; read from the form being edited."""

    class Meta:
        model = LaunchConfig
        fields = PREVIEW_FIELDS


class WantedLengthForm(forms.ModelForm):
    """The context fields being edited (YaRN, its factor, the cap), checked apart from the rest so that a
    factor being typed never hides the hardware limit."""

    class Meta:
        model = LaunchConfig
        fields = ("enable_yarn", "yarn_factor", "context_cap")

    def __init__(self, data: QueryDict) -> None:
        data = data.copy()
        # Not sent: the model's default; sent empty is a factor still being typed, not yet valid.
        data.setdefault("yarn_factor", str(LaunchConfig._meta.get_field("yarn_factor").default))
        super().__init__(data)

    def apply_to(self, config: LaunchConfig) -> bool:
        """Set the valid values on ``config``; returns whether the factor is valid (an invalid one
        scales nothing: the preview asks for the native context)."""
        self.is_valid()
        cleaned = self.cleaned_data
        config.enable_yarn = bool(cleaned.get("enable_yarn"))
        config.context_cap = cleaned.get("context_cap")
        valid = "yarn_factor" in cleaned
        config.yarn_factor = cleaned["yarn_factor"] if valid else Decimal("1.0")
        return valid


class CsvEcho:
    """A file-like object for csv.writer that hands each row back instead of storing it."""

    def write(self, value: str) -> str:
        return value


CSV_COLUMNS = (
    ("id", "id"),
    ("created_at", "created_at"),
    ("config_name", "config_snapshot__name"),
    ("kind", "kind"),
    ("status", "status"),
    ("outcome", "outcome"),
    ("host", "host__name"),
    ("gpu_profile", "gpu_profile_display"),
    ("model", "model__source"),
    ("requested_by", "requested_by__username"),
    ("port", "config_snapshot__port"),
    ("server_url", "server_url"),
    ("known_limit", "known_limit"),
    ("wanted_context", "wanted_context"),
    ("context_length", "context_length"),
    ("ready_at", "ready_at"),
    ("ended_at", "ended_at"),
    ("reason", "reason"),
)


class LaunchConfigViews:
    """The config admin's preview and buttons (see ``LaunchConfigAdmin.get_urls``)."""

    @staticmethod
    def preview_data(config: LaunchConfig | None, factor_valid: bool = True) -> dict:
        """What the config form's context preview shows, for ``config`` as it is being edited.

        Lengths in tokens: the model's ``native_context``; ``scaled_context``, native × the applied
        ``factor`` (1.0 without YaRN or with an invalid factor, ``factor_valid`` False);
        ``wanted_context``, that lowered to ``context_cap`` (``LaunchConfig.wanted_context``,
        ``lowered_to_cap`` when the cap lowered it); the limit learned for the host's GPU profile
        (``hw_limit``, a ceiling or a floor) and, for a ceiling, the length the launch ``serves``.
        Unknown values are None. The browser does no arithmetic on these lengths. ``yarn_problem`` is
        the sentence the form refuses the YaRN settings with on save ("" when it accepts them).
        """
        data: dict = {
            "native_context": None,
            "hw_limit": None,
            "hw_limit_is_ceiling": None,
            "profile": None,
            "model": None,
            "scaled_context": None,
            "wanted_context": None,
            "lowered_to_cap": False,
            "above_hw_limit": False,
            "serves": None,
        }
        if config is None or not config.model_id:
            return data
        data["model"] = str(config.model)
        # Under the host's vLLM version, as the launch will ask for it.
        data["native_context"] = config.model_lengths().native_context
        data["facts_error"] = (
            config.model.facts_error if config.model.facts_status == ModelSpec.FactsStatus.ERROR else ""
        )
        profile = config.gpu_profile() if config.host_id else None
        if profile is not None:
            data["profile"] = str(profile)
            limit = config.detected_limit(profile)
            data["hw_limit"] = limit.max_model_len if limit else None
            # A measured ceiling caps a launch; a length that merely fitted is a floor (see DetectedLimit).
            data["hw_limit_is_ceiling"] = limit.is_ceiling if limit else None
        data["enable_yarn"] = config.enable_yarn
        data["yarn_factor"] = float(config.yarn_factor)
        data["context_cap"] = config.context_cap
        data["factor_valid"] = factor_valid
        data["factor"] = float(config.effective_yarn_factor)
        # What saving would refuse (YaRN on with 1.0), said before the operator saves.
        data["yarn_problem"] = (
            yarn_factor_problem(config.enable_yarn, config.yarn_factor) if factor_valid else ""
        )
        native, wanted, limit = config.model.native_context, config.wanted_context(), data["hw_limit"]
        if native is not None and wanted is not None:
            data["scaled_context"] = wanted_length(native, data["factor"])
            data["wanted_context"] = wanted
            data["lowered_to_cap"] = wanted < data["scaled_context"]
            data["above_hw_limit"] = bool(limit and wanted > limit)
            if limit and data["hw_limit_is_ceiling"]:
                data["serves"] = min(wanted, limit)
        return data

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The preview for the form's current values (GET: the ``PREVIEW_FIELDS`` and the context
        fields, as the form would post them), as ``preview_data``; for anyone who may view launches."""
        if not can_view(request.user):
            raise PermissionDenied(NO_ROLE)
        form = PreviewForm(request.GET)
        form.is_valid()  # fills form.instance with whatever parsed; an incomplete form still previews
        config = form.instance
        factor_valid = WantedLengthForm(request.GET).apply_to(config)
        model_id = request.GET.get("model", "")
        if not config.model_id and model_id.isdigit():
            config.model = ModelSpec.objects.filter(pk=model_id).first()
        data = self.preview_data(config if config.model_id else None, factor_valid)
        if config.model_id and not form.is_valid():
            data["problem"] = "Fix the highlighted fields to see the hardware limit."
        return JsonResponse(data)

    def _start(self, request: HttpRequest, object_id: str, kind: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:launches_launchconfig_change", args=[object_id]))
        require_operator(request)
        config = get_object_or_404(LaunchConfig.objects.select_related("model", "host"), pk=object_id)
        try:
            launch = Launch.objects.start(config, request.user, kind)
        except LaunchRefused as refusal:
            messages.error(request, str(refusal))
            return HttpResponseRedirect(reverse("admin:launches_launchconfig_change", args=[config.pk]))
        messages.success(request, f"{launch.get_kind_display()} #{launch.pk} queued on {config.host}.")
        return HttpResponseRedirect(live_url(launch))

    def launch_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._start(request, object_id, Launch.Kind.LAUNCH)

    def test_yarn_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._start(request, object_id, Launch.Kind.TEST_YARN)

    def redetect_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._start(request, object_id, Launch.Kind.REDETECT)

    def stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        require_operator(request)
        config = get_object_or_404(LaunchConfig, pk=object_id)
        change_url = reverse("admin:launches_launchconfig_change", args=[config.pk])
        active = list(config.launches.active().select_related("host"))
        if not active:
            messages.error(request, f"Nothing of {config} is running or starting.")
            return HttpResponseRedirect(change_url)
        if request.method == "POST" and request.POST.get("post") == "yes":
            stop_launches(request, active)
            return HttpResponseRedirect(live_url(active[0]) if len(active) == 1 else change_url)
        return stop_confirmation(request, self, active)


class LaunchViews:
    """The launch admin's Stop button and CSV export (see ``LaunchAdmin.get_urls``)."""

    def stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        require_operator(request)
        launch = get_object_or_404(Launch.objects.select_related("host"), pk=object_id)
        change_url = reverse("admin:launches_launch_change", args=[launch.pk])
        if launch.is_terminal:
            messages.error(request, f"Launch #{launch.pk} has already ended ({launch.get_status_display()}).")
            return HttpResponseRedirect(change_url)
        if request.method == "POST" and request.POST.get("post") == "yes":
            stop_launches(request, [launch])
            # The live page follows the stop to its end.
            return HttpResponseRedirect(live_url(launch))
        return stop_confirmation(request, self, [launch])

    def export_csv_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """The change list's current filters and search, as CSV, streamed row by row."""
        if not can_view(request.user):
            raise PermissionDenied(NO_ROLE)
        changelist = self.get_changelist_instance(request)
        queryset = changelist.get_queryset(request)
        # A simulated profile is named so here too, as on every page.
        queryset = queryset.annotate(gpu_profile_display=GpuProfile.display_name_expression("gpu_profile__"))
        rows = queryset.values_list(*(column for _, column in CSV_COLUMNS)).iterator(chunk_size=2000)
        writer = csv.writer(CsvEcho())

        def stream() -> Iterator[str]:
            yield writer.writerow([name for name, _ in CSV_COLUMNS])
            for row in rows:
                yield writer.writerow(row)

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="launches-{stamp}.csv"'
        return response
