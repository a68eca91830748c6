from __future__ import annotations

import shlex
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path
from django.utils.html import format_html, format_html_join

from launches.admin_mixins import DeletesItsOwnRecords, ReadOnlyAdmin, ReadOnlyInline
from launches.admin_views import (
    PREVIEW_FIELDS,
    LaunchConfigViews,
    LaunchViews,
    live_url,
    stop_selected_launches,
)
from launches.contract import MEMORY_OPTION_FIELDS
from launches.history import EventKindFilter, HistoryPaginator, OutcomeFilter, search_launches
from launches.models import (
    Launch,
    LaunchAttempt,
    LaunchConfig,
    LaunchConfigChange,
    LaunchEvent,
    LaunchRefused,
    RefusedEvent,
    validate_yarn_factor,
    yarn_factor_problem,
)
from launches.permissions import ROLE_GROUPS, can_operate
from launches.verdicts import OUTCOME_LABELS, describe_attempt, describe_exit, with_signal_names


def outcome_with_code(code: str) -> str:
    """An outcome code as the admin shows it: its words, with the code in small text ("—" when empty;
    an unknown code as given)."""
    if not code:
        return "—"
    if code not in OUTCOME_LABELS:
        return code
    return format_html('{} <small class="outcome-code">{}</small>', OUTCOME_LABELS[code], code)


class HistoryAdmin(ReadOnlyAdmin):
    """The launch history's lists: never count the whole table, whatever its size."""

    paginator = HistoryPaginator
    show_full_result_count = False
    # "Show counts" would run one COUNT over the whole history per filter choice.
    show_facets = admin.ShowFacets.NEVER


# What decides which learned limit applies: where it runs, and the memory fingerprint's options
# (the vLLM version comes from the host).
class OperateActionsMixin:
    """Actions that start or stop servers: offered to operators only, refused to anyone else.

    The admin simply hides actions a user may not run; a forged POST of a hidden action would be
    answered with the plain change list, which looks like success. Refuse it with a 403 instead.
    """

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return can_operate(request.user)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        action = request.POST.get("action") if request.method == "POST" else None
        if action and action not in self.get_actions(request):
            raise PermissionDenied(f"You may not run the action {action!r}.")
        return super().changelist_view(request, extra_context)


def tokens_display(name: str, description: str):
    """A read-only admin column showing the token count in field ``name`` as "40,960" ("—" when empty)."""

    @admin.display(description=description, ordering=name)
    def show(self, obj) -> str:
        value = getattr(obj, name)
        return "—" if value is None else f"{value:,}"

    return show


class LaunchConfigForm(forms.ModelForm):
    # The form field carries the model's rule itself, so a bad factor gets one clear message (the
    # model's decimal-places check would otherwise add a second, vaguer one).
    yarn_factor = forms.DecimalField(
        label="YaRN factor",
        initial=Decimal("1.0"),
        validators=[validate_yarn_factor],
        widget=forms.NumberInput(attrs={"min": "1", "max": "8", "step": "0.5"}),
        help_text="1.0 to 8.0 in steps of 0.5; the wanted context is native × factor.",
    )

    class Meta:
        model = LaunchConfig
        fields = (*PREVIEW_FIELDS, "name", "port", "served_model_name", "keep_up", "extra_args")
        fields += ("enable_yarn", "yarn_factor", "context_cap")

    def clean(self) -> dict:
        cleaned = super().clean()
        if "gpu_indices" in self.errors:
            # Said once, by the field; the config's own checks (host's cards, tensor parallel size)
            # would otherwise judge the saved or default indices the form is not taking.
            self.instance.gpu_indices = ""
        if problem := yarn_factor_problem(cleaned.get("enable_yarn"), cleaned.get("yarn_factor")):
            self.add_error("yarn_factor", problem)
        return cleaned


class LaunchConfigChangeInline(ReadOnlyInline):
    model = LaunchConfigChange
    fields = ("changed_at", "user", "field", "old_value", "new_value")
    readonly_fields = fields
    show_change_link = False
    verbose_name_plural = "change history"
    classes = ("collapse",)


@admin.register(LaunchConfig)
class LaunchConfigAdmin(OperateActionsMixin, DeletesItsOwnRecords, LaunchConfigViews, admin.ModelAdmin):
    form = LaunchConfigForm
    list_display = (
        "name",
        "model",
        "host",
        "gpu_indices",
        "port",
        "enable_yarn",
        "yarn_factor",
        "context_cap",
    )
    list_filter = ("host", "enable_yarn")
    list_select_related = ("model", "host")
    search_fields = ("name", "model__source", "host__name")
    readonly_fields = ("created_by", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "model", "host", "gpu_indices", "port", "served_model_name", "keep_up")}),
        (
            "vLLM options",
            {"fields": (*MEMORY_OPTION_FIELDS, "extra_args")},
        ),
        ("Context", {"fields": ("enable_yarn", "yarn_factor", "context_cap"), "classes": ("yarn-block",)}),
        ("Record", {"fields": ("created_by", "created_at", "updated_at")}),
    )
    inlines = [LaunchConfigChangeInline]
    actions = ["launch_selected", "test_yarn_selected", "redetect_selected", "stop_selected"]

    class Media:
        js = ("launches/config_form.js",)
        css = {"all": ("launches/launches.css",)}

    # -- saving and its history ------------------------------------------------------------------

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
            super().save_model(request, obj, form, change)
            return
        with transaction.atomic():
            # Lock the row so two concurrent saves each record what they really replaced.
            before = LaunchConfig.objects.select_for_update().select_related("model", "host").get(pk=obj.pk)
            super().save_model(request, obj, form, change)
            LaunchConfigChange.record(before, obj, request.user)

    def get_deleted_objects(self, objs, request):
        """A config with a launch still running is protected by it: the page says which, and why."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        problems = [problem for config in objs if (problem := config.delete_problem())]
        return deleted, counts, perms_needed, [*protected, *problems]

    def delete_model(self, request, obj) -> None:
        kept = obj.kept_history()
        super().delete_model(request, obj)
        messages.info(request, f"{obj.name}: {kept}")

    def delete_queryset(self, request, queryset) -> None:
        for config in queryset:
            self.delete_model(request, config)

    # -- pages -------------------------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("preview.json", wrap(self.preview_view), name=f"{info}_preview"),
            path("<path:object_id>/launch/", wrap(self.launch_view), name=f"{info}_launch"),
            path("<path:object_id>/test-yarn/", wrap(self.test_yarn_view), name=f"{info}_test_yarn"),
            path("<path:object_id>/redetect/", wrap(self.redetect_view), name=f"{info}_redetect"),
            path("<path:object_id>/stop/", wrap(self.stop_view), name=f"{info}_stop"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        config = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if config is not None:
            extra.update(
                can_operate=can_operate(request.user),
                active_launches=list(config.launches.active().select_related("host")),
                preview_initial=self.preview_data(config),
            )
        return super().change_view(request, object_id, form_url, extra)

    def add_view(self, request, form_url="", extra_context=None):
        extra = {**(extra_context or {}), "preview_initial": self.preview_data(None)}
        return super().add_view(request, form_url, extra)

    # -- list actions --------------------------------------------------------------------------------

    def _start_many(self, request: HttpRequest, queryset: QuerySet, kind: str) -> HttpResponse | None:
        started: list[Launch] = []
        for config in queryset.select_related("model", "host"):
            try:
                started.append(Launch.objects.start(config, request.user, kind))
            except LaunchRefused as refusal:
                messages.error(request, f"{config}: {refusal}")
        if len(started) == 1:
            return HttpResponseRedirect(live_url(started[0]))
        if started:
            links = format_html_join(", ", '<a href="{}">#{}</a>', ((live_url(x), x.pk) for x in started))
            messages.success(request, format_html("Queued {}.", links))
        return None

    @admin.action(description="Launch selected configs", permissions=["operate"])
    def launch_selected(self, request, queryset):
        return self._start_many(request, queryset, Launch.Kind.LAUNCH)

    @admin.action(description="Test YaRN with selected configs", permissions=["operate"])
    def test_yarn_selected(self, request, queryset):
        return self._start_many(request, queryset, Launch.Kind.TEST_YARN)

    @admin.action(description="Re-detect the limit of selected configs", permissions=["operate"])
    def redetect_selected(self, request, queryset):
        return self._start_many(request, queryset, Launch.Kind.REDETECT)

    @admin.action(description="Stop the servers of selected configs…", permissions=["operate"])
    def stop_selected(self, request, queryset):
        active = list(Launch.objects.active().filter(config__in=queryset).select_related("host"))
        return stop_selected_launches(
            request, self, active, "None of the selected configs is running or starting."
        )


class LaunchAttemptInline(ReadOnlyInline):
    model = LaunchAttempt
    fields = (
        "number",
        "requested",
        "outcome_label",
        "verdict",
        "exit_display",
        "duration_display",
        "argv_display",
        "log_tail_display",
    )
    readonly_fields = fields
    show_change_link = False

    @admin.display(description="requested")
    def requested(self, obj: LaunchAttempt) -> str:
        return "auto" if obj.requested_auto else (f"{obj.requested_len:,}" if obj.requested_len else "—")

    @admin.display(description="outcome")
    def outcome_label(self, obj: LaunchAttempt) -> str:
        return OUTCOME_LABELS.get(obj.outcome, obj.outcome or "—")

    @admin.display(description="verdict")
    def verdict(self, obj: LaunchAttempt) -> str:
        if not obj.outcome:
            return "running…"
        return describe_attempt(
            obj.outcome,
            obj.requested_len,
            obj.parsed_len,
            obj.exit_code,
            cause=obj.launch.outcome,
            message=obj.message,
        )

    @admin.display(description="ended")
    def exit_display(self, obj: LaunchAttempt) -> str:
        if not obj.outcome or obj.outcome == "ready":
            return "—"
        return describe_exit(obj.exit_code, obj.stopped_by_launcher, obj.outcome)

    @admin.display(description="time")
    def duration_display(self, obj: LaunchAttempt) -> str:
        return "—" if obj.duration is None else f"{obj.duration:.1f} s"

    @admin.display(description="command")
    def argv_display(self, obj: LaunchAttempt) -> str:
        # A command one can paste into a shell.
        return format_html(
            '<details><summary>{} arguments</summary><code class="argv">{}</code></details>',
            len(obj.argv),
            shlex.join(map(str, obj.argv)),
        )

    @admin.display(description="log tail")
    def log_tail_display(self, obj: LaunchAttempt) -> str:
        if not obj.log_tail:
            return "—"
        lines = obj.log_tail.count("\n") + 1
        return format_html(
            '<details><summary>{} lines</summary><pre class="log-tail">{}</pre></details>',
            lines,
            obj.log_tail,
        )


@admin.register(Launch)
class LaunchAdmin(OperateActionsMixin, LaunchViews, HistoryAdmin):
    # What happened first (status, outcome, context), then where and who: the list is wide, and what
    # an operator scans for must not be the part that scrolls out of view.
    list_display = (
        "id",
        "status",
        "outcome_label",
        "context_display",
        "host",
        "model",
        "gpu_profile",
        "kind",
        "requested_by",
        "created_at",
        "live_link",
    )
    # No date_hierarchy and no filter that reads distinct values of the launch table: each of those is
    # a full scan of the history on every page. Related filters read only the small related tables.
    list_filter = (
        "status",
        "kind",
        OutcomeFilter,
        "host",
        "gpu_profile",
        "model",
        ("requested_by", admin.RelatedFieldListFilter),
        "created_at",
    )
    list_select_related = ("host", "model", "gpu_profile", "requested_by")
    # The search box: model, config name, user, host, port or id (launches.history.search_launches).
    search_fields = ("=id", "config_snapshot__name", "model__source", "host__name", "requested_by__username")
    list_per_page = 50
    inlines = [LaunchAttemptInline]
    actions = ["stop_selected"]
    fields = (
        "kind",
        "status",
        "reason_display",
        "outcome_display",
        "config",
        "host",
        "model",
        "gpu_profile",
        "requested_by",
        "known_limit_tokens",
        "wanted_context_tokens",
        "context_length_tokens",
        "learned_limit_tokens",
        "kv_capacity_tokens_display",
        "server_url",
        "created_at",
        "started_at",
        "ready_at",
        "ended_at",
        "config_snapshot",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ("launches/launches.css",)}

    @admin.display(description="outcome", ordering="outcome")
    def outcome_label(self, obj: Launch) -> str:
        return OUTCOME_LABELS.get(obj.outcome, obj.outcome or "—")

    @admin.display(description="outcome")
    def outcome_display(self, obj: Launch) -> str:
        """The outcome in words, with its code (what the API and the filters use) in small text."""
        return outcome_with_code(obj.outcome)

    @admin.display(description="reason")
    def reason_display(self, obj: Launch) -> str:
        return with_signal_names(obj.reason) or "—"

    # Token counts with separators, as on every other page ("40,960", not "40960").
    known_limit_tokens = tokens_display("known_limit", "known limit")
    wanted_context_tokens = tokens_display("wanted_context", "wanted context")
    context_length_tokens = tokens_display("context_length", "context length")
    learned_limit_tokens = tokens_display("learned_limit", "learned limit")
    kv_capacity_tokens_display = tokens_display("kv_capacity_tokens", "KV cache capacity (tokens)")

    @admin.display(description="context", ordering="context_length")
    def context_display(self, obj: Launch) -> str:
        return f"{obj.context_length:,}" if obj.context_length else "—"

    @admin.display(description="live")
    def live_link(self, obj: Launch) -> str:
        return format_html('<a href="{}">watch</a>', live_url(obj))

    def get_urls(self):
        wrap = self.admin_site.admin_view
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("export.csv", wrap(self.export_csv_view), name=f"{info}_export"),
            path("<path:object_id>/stop/", wrap(self.stop_view), name=f"{info}_stop"),
            *super().get_urls(),
        ]

    def get_search_results(self, request, queryset, search_term):
        return search_launches(queryset, search_term), False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {**(extra_context or {}), "can_operate": can_operate(request.user)}
        return super().change_view(request, object_id, form_url, extra)

    @admin.action(description="Stop selected launches…", permissions=["operate"])
    def stop_selected(self, request, queryset):
        active = list(queryset.filter(status__in=Launch.Status.active()).select_related("host"))
        return stop_selected_launches(
            request, self, active, "None of the selected launches is running or starting."
        )


@admin.register(LaunchAttempt)
class LaunchAttemptAdmin(HistoryAdmin):
    list_display = ("launch", "number", "requested_len", "outcome_label", "parsed_len", "ended", "started_at")
    list_filter = (OutcomeFilter,)
    list_select_related = ("launch",)
    # By the launch's id, not its own ordering (which would join and sort the whole table): the
    # (launch, number) unique index walks backwards, newest launch first.
    ordering = ("-launch_id", "-number")

    @admin.display(description="outcome", ordering="outcome")
    def outcome_label(self, obj: LaunchAttempt) -> str:
        return outcome_with_code(obj.outcome)

    @admin.display(description="ended", ordering="exit_code")
    def ended(self, obj: LaunchAttempt) -> str:
        return describe_exit(obj.exit_code, obj.stopped_by_launcher, obj.outcome)


@admin.register(LaunchEvent)
class LaunchEventAdmin(HistoryAdmin):
    list_display = ("launch", "seq", "kind", "outcome_label", "emitted_at", "received_at")
    list_filter = (EventKindFilter,)
    list_select_related = ("launch",)
    ordering = ("-launch_id", "-seq")

    @admin.display(description="outcome")
    def outcome_label(self, obj: LaunchEvent) -> str:
        """The outcome an event carries (attempt_finished, failed, crashed…) in words, or "—"."""
        outcome = obj.data.get("outcome") if isinstance(obj.data, dict) else None
        return outcome_with_code(str(outcome)) if outcome else "—"


@admin.register(RefusedEvent)
class RefusedEventAdmin(HistoryAdmin):
    """Events a GPU worker sent that did not parse or could not be applied, with the reason."""

    list_display = ("launch", "seq", "kind", "reason", "received_at")
    list_select_related = ("launch",)
    search_fields = ("reason", "kind")


@admin.register(LaunchConfigChange)
class LaunchConfigChangeAdmin(ReadOnlyAdmin):
    # The name the config had: a deleted config's changes stay, under that name.
    list_display = ("changed_at", "config_name", "user", "field", "old_value", "new_value")
    list_filter = ("config", "field", ("user", admin.RelatedFieldListFilter))
    list_select_related = ("user",)
    search_fields = ("config_name", "field", "old_value", "new_value")


# The users list shows each user's role (the role groups), so an administrator sees who may do what.
admin.site.unregister(User)


@admin.register(User)
class UserWithRoleAdmin(UserAdmin):
    list_display = ("username", "role", "email", "is_staff", "is_superuser", "is_active", "last_login")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="role")
    def role(self, obj: User) -> str:
        if obj.is_superuser:
            return "Administrator"
        roles = [group.name for group in obj.groups.all() if group.name in ROLE_GROUPS]
        return ", ".join(roles) or "none (may see nothing)"


# API tokens: each user sees and renews their own (registered here so it replaces DRF's token admin).
from launches.api import admin as api_token_admin  # noqa: E402, F401
