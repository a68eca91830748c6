from django.contrib import admin

from launches.admin_mixins import ReadOnlyAdmin, ReadOnlyInline
from launches.models import Launch, LaunchAttempt, LaunchConfig, LaunchEvent


@admin.register(LaunchConfig)
class LaunchConfigAdmin(admin.ModelAdmin):
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
    autocomplete_fields = ()
    readonly_fields = ("created_by", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "model", "host", "gpu_indices", "port", "served_model_name")}),
        (
            "vLLM options",
            {
                "fields": (
                    "gpu_memory_utilization",
                    "dtype",
                    "quantization",
                    "kv_cache_dtype",
                    "tensor_parallel_size",
                    "max_num_batched_tokens",
                    "enforce_eager",
                    "extra_args",
                )
            },
        ),
        ("Context", {"fields": ("enable_yarn", "yarn_factor", "context_cap")}),
        ("Record", {"fields": ("created_by", "created_at", "updated_at")}),
    )

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class LaunchAttemptInline(ReadOnlyInline):
    model = LaunchAttempt
    fields = (
        "number",
        "requested_len",
        "requested_auto",
        "outcome",
        "parsed_len",
        "exit_code",
        "started_at",
        "ended_at",
    )
    readonly_fields = fields


@admin.register(Launch)
class LaunchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "host",
        "model",
        "gpu_profile",
        "status",
        "outcome",
        "context_length",
        "requested_by",
        "created_at",
    )
    list_filter = ("status", "kind", "outcome", "host", "gpu_profile", "model", "created_at")
    list_select_related = ("host", "model", "gpu_profile", "requested_by")
    search_fields = ("config_snapshot__name", "model__source", "host__name", "reason")
    date_hierarchy = "created_at"
    inlines = [LaunchAttemptInline]


@admin.register(LaunchAttempt)
class LaunchAttemptAdmin(ReadOnlyAdmin):
    list_display = ("launch", "number", "requested_len", "outcome", "parsed_len", "exit_code", "started_at")
    list_filter = ("outcome",)
    list_select_related = ("launch",)


@admin.register(LaunchEvent)
class LaunchEventAdmin(ReadOnlyAdmin):
    list_display = ("launch", "seq", "kind", "emitted_at", "received_at")
    list_filter = ("kind",)
    list_select_related = ("launch",)
