from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.timezone import localtime

from gpus.models import DetectedLimit, Gpu, GpuProfile, Host, ModelSpec
from launches.admin_mixins import DeletesItsOwnRecords, ReadOnlyAdmin, ReadOnlyInline
from launches.permissions import can_edit_models


class GpuInline(ReadOnlyInline):
    model = Gpu
    fields = (
        "index",
        "uuid",
        "profile",
        "driver_version",
        "compute_capability",
        "memory_free_mib",
        "retired_at",
    )
    readonly_fields = fields
    show_change_link = False


@admin.register(Host)
class HostAdmin(DeletesItsOwnRecords, admin.ModelAdmin):
    list_display = ("name", "online", "last_heartbeat", "vllm_version", "simulated", "card_count")
    list_filter = ("simulated",)
    search_fields = ("name", "address")
    # The worker on the host is the authority on its command, version and cards; the site only shows them.
    readonly_fields = (
        "vllm_command",
        "vllm_version",
        "simulated",
        "nvml_status",
        "vllm_error",
        "running_servers",
        "last_heartbeat",
        "worker_started_at",
        "created_at",
    )
    inlines = [GpuInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(current_cards=Count("gpus", filter=Q(gpus__retired_at__isnull=True)))
        )

    @admin.display(boolean=True, description="online")
    def online(self, obj: Host) -> bool:
        return obj.is_online

    @admin.display(description="cards", ordering="current_cards")
    def card_count(self, obj: Host) -> int:
        return obj.current_cards


@admin.register(GpuProfile)
class GpuProfileAdmin(ReadOnlyAdmin):
    list_display = ("name", "memory_total_mib", "simulated", "created_at")
    list_filter = ("simulated",)
    search_fields = ("name",)


@admin.register(Gpu)
class GpuAdmin(ReadOnlyAdmin):
    list_display = (
        "__str__",
        "uuid",
        "profile",
        "driver_version",
        "memory_free_mib",
        "last_seen",
        "retired_at",
    )
    list_filter = ("profile", "host")
    list_select_related = ("host", "profile")
    search_fields = ("uuid", "host__name", "profile__name")


@admin.register(ModelSpec)
class ModelSpecAdmin(DeletesItsOwnRecords, admin.ModelAdmin):
    list_display = (
        "source",
        "revision",
        "native_context_display",
        "default_context_display",
        "attention_kind",
        "facts_state",
        "num_layers",
        "dtype",
    )
    search_fields = ("source",)
    actions = ["read_again_selected"]
    fields = (
        "source",
        "revision",
        "facts_state",
        "native_context_display",
        "default_context_display",
        "max_len_key",
        "num_layers",
        "num_kv_heads",
        "head_dim",
        "dtype",
        "attention_kind",
        "kv_bytes_per_token_display",
        "facts_vllm_version",
        "rope_scaling",
    )
    # Only the source and revision are edited: everything else is read from its config.json.
    readonly_fields = fields[2:]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change or {"source", "revision"} & set(form.changed_data):
            obj.queue_facts_read()

    @admin.display(description="native context", ordering="native_context")
    def native_context_display(self, obj: ModelSpec) -> str:
        return f"{obj.native_context:,} tokens" if obj.native_context else "-"

    @admin.display(description="default context", ordering="default_context")
    def default_context_display(self, obj: ModelSpec) -> str:
        """What vLLM starts at without --max-model-len (below the native context for LongRoPE)."""
        return f"{obj.default_context:,} tokens" if obj.default_context else "-"

    @admin.display(description="KV bytes per token")
    def kv_bytes_per_token_display(self, obj: ModelSpec) -> str:
        return f"{obj.kv_bytes_per_token:,} bytes" if obj.kv_bytes_per_token else "-"

    @admin.display(description="config.json")
    def facts_state(self, obj: ModelSpec) -> str:
        """Reading / read at … / the problem in words."""
        status = obj.facts_status
        if status == ModelSpec.FactsStatus.READING:
            return "Reading config.json…"
        if status == ModelSpec.FactsStatus.ERROR:
            return f"Could not be read: {obj.facts_error}"
        if obj.facts_read_at:
            return f"Read at {localtime(obj.facts_read_at):%Y-%m-%d %H:%M:%S %Z}"
        return "Not read yet"

    def get_urls(self):
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/read-again/",
                self.admin_site.admin_view(self.read_again_view),
                name=f"{info}_read_again",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {**(extra_context or {}), "can_edit_models": can_edit_models(request.user)}
        return super().change_view(request, object_id, form_url, extra)

    def read_again_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not can_edit_models(request.user):
            raise PermissionDenied("Only operators may have a model's config.json read again.")
        model = get_object_or_404(ModelSpec, pk=object_id)
        if request.method == "POST":
            model.queue_facts_read()
            messages.success(request, f"Reading the config.json of {model} again.")
        return HttpResponseRedirect(reverse("admin:gpus_modelspec_change", args=[model.pk]))

    def has_read_again_permission(self, request: HttpRequest) -> bool:
        return can_edit_models(request.user)

    @admin.action(description="Read config.json of selected models again", permissions=["read_again"])
    def read_again_selected(self, request, queryset) -> None:
        count = 0
        for model in queryset:
            model.queue_facts_read()
            count += 1
        messages.success(
            request, f"Reading the config.json of {count} model{'s' if count != 1 else ''} again."
        )


@admin.register(DetectedLimit)
class DetectedLimitAdmin(ReadOnlyAdmin):
    list_display = (
        "model",
        "profile",
        "tokens",
        "kv_capacity",
        "max_num_seqs",
        "learned_from",
        "vllm_version",
        "learned_at",
        "launch",
    )
    list_filter = ("profile", "learned_from", "vllm_version")
    list_select_related = ("model", "profile", "launch")
    search_fields = ("model__source", "profile__name")

    @admin.display(description="max model len", ordering="max_model_len")
    def tokens(self, obj: DetectedLimit) -> str:
        return f"{obj.max_model_len:,}" if obj.is_ceiling else f"at least {obj.max_model_len:,}"

    @admin.display(description="KV cache (tokens)", ordering="kv_capacity_tokens")
    def kv_capacity(self, obj: DetectedLimit) -> str:
        return f"{obj.kv_capacity_tokens:,}" if obj.kv_capacity_tokens else "—"
