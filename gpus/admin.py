from django.contrib import admin
from django.db.models import Count, Q

from gpus.models import DetectedLimit, Gpu, GpuProfile, Host, ModelSpec
from launches.admin_mixins import ReadOnlyAdmin, ReadOnlyInline


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
class HostAdmin(admin.ModelAdmin):
    list_display = ("name", "online", "last_heartbeat", "vllm_version", "simulated", "card_count")
    list_filter = ("simulated",)
    search_fields = ("name", "address")
    # The worker on the host is the authority on its command, version and cards; the site only shows them.
    readonly_fields = (
        "vllm_command",
        "vllm_version",
        "simulated",
        "nvml_status",
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
    list_display = ("name", "memory_total_mib", "created_at")
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
class ModelSpecAdmin(admin.ModelAdmin):
    list_display = (
        "source",
        "revision",
        "native_context",
        "default_context",
        "attention_kind",
        "num_layers",
        "num_kv_heads",
        "head_dim",
        "dtype",
    )
    search_fields = ("source",)
    readonly_fields = (
        "native_context",
        "default_context",
        "max_len_key",
        "num_layers",
        "num_kv_heads",
        "head_dim",
        "dtype",
        "attention_kind",
        "kv_bytes_per_token",
        "facts_vllm_version",
        "rope_scaling",
        "facts_read_at",
        "facts_error",
    )


@admin.register(DetectedLimit)
class DetectedLimitAdmin(ReadOnlyAdmin):
    list_display = (
        "model",
        "profile",
        "max_model_len",
        "kv_capacity_tokens",
        "max_num_seqs",
        "learned_from",
        "vllm_version",
        "learned_at",
        "launch",
    )
    list_filter = ("profile", "learned_from", "vllm_version")
    list_select_related = ("model", "profile", "launch")
    search_fields = ("model__source", "profile__name")
