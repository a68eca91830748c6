"""What the API shows of each row. Launch configs are validated by the admin's own form."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.forms import modelform_factory
from rest_framework import serializers

from gpus.models import DetectedLimit, Gpu, GpuProfile, Host, ModelSpec
from launches.admin import LaunchConfigForm
from launches.models import Launch, LaunchAttempt, LaunchConfig, LaunchConfigChange, LaunchEvent
from launches.verdicts import OUTCOME_LABELS, describe_attempt, with_signal_names


class GpuProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = GpuProfile
        fields = ("id", "name", "display_name", "simulated", "memory_total_mib")


class GpuSerializer(serializers.ModelSerializer):
    profile = GpuProfileSerializer()

    class Meta:
        model = Gpu
        fields = ("index", "uuid", "profile", "driver_version", "compute_capability", "memory_free_mib")


class HostSerializer(serializers.ModelSerializer):
    online = serializers.BooleanField(source="is_online")
    gpus = serializers.SerializerMethodField()

    class Meta:
        model = Host
        fields = (
            "id",
            "name",
            "address",
            "online",
            "last_heartbeat",
            "simulated",
            "vllm_version",
            "vllm_command",
            "nvml_status",
            "running_servers",
            "gpus",
        )

    def get_gpus(self, host: Host) -> list[dict]:
        # The view prefetches the current cards into host.current_gpus.
        return GpuSerializer(getattr(host, "current_gpus", None) or host.gpus.current(), many=True).data


class ModelSpecSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelSpec
        fields = (
            "id",
            "source",
            "revision",
            "native_context",
            "max_len_key",
            "num_layers",
            "num_kv_heads",
            "head_dim",
            "dtype",
            "rope_scaling",
            "facts_read_at",
            "facts_error",
            "created_at",
        )
        read_only_fields = tuple(name for name in fields if name not in {"source", "revision"})
        validators = []  # the admin's model form decides, with its sentences

    def validate(self, data) -> dict:
        form = modelform_factory(ModelSpec, fields=("source", "revision"))(data=data)
        if not form.is_valid():
            raise serializers.ValidationError(
                {name: list(messages) for name, messages in form.errors.items()}
            )
        return data


class DetectedLimitSerializer(serializers.ModelSerializer):
    profile = GpuProfileSerializer()
    model = serializers.CharField(source="model.__str__")
    model_id = serializers.IntegerField()
    is_ceiling = serializers.BooleanField()

    class Meta:
        model = DetectedLimit
        fields = (
            "id",
            "profile",
            "model",
            "model_id",
            "max_model_len",
            "is_ceiling",
            "learned_from",
            "kv_capacity_tokens",
            "fingerprint",
            "fingerprint_fields",
            "vllm_version",
            "driver_version",
            "launch",
            "learned_at",
        )


class LaunchConfigSerializer(serializers.ModelSerializer):
    """Accepts the config form's fields; the admin's form (YaRN rules included) decides what is valid."""

    yarn_factor = serializers.DecimalField(max_digits=2, decimal_places=1, required=False)
    wanted_context = serializers.SerializerMethodField(help_text="Native × YaRN factor, lowered to the cap.")

    class Meta:
        model = LaunchConfig
        fields = (
            "id",
            *LaunchConfigForm.Meta.fields,
            "wanted_context",
            "created_by",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("created_by", "created_at", "updated_at")
        # The form checks every field; here they only pass through.
        extra_kwargs = {name: {"validators": []} for name in LaunchConfigForm.Meta.fields}

    def get_wanted_context(self, config: LaunchConfig) -> int | None:
        return config.wanted_context()

    def to_internal_value(self, data):
        # Hand the raw values to the form, so its messages are the ones the admin shows.
        return data

    def validate(self, data) -> dict:
        if not isinstance(data, dict):
            raise serializers.ValidationError("Send the config's fields as a JSON object.")
        # What is not sent keeps its value (PATCH) or takes the default a new config has (POST, PUT).
        start = self.instance if self.partial and self.instance is not None else LaunchConfig()
        form_data = {name: _form_value(start, name) for name in LaunchConfigForm.Meta.fields}
        unknown = sorted(set(data) - set(LaunchConfigForm.Meta.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Not a field of a launch config."] for name in unknown})
        form_data.update({name: value for name, value in data.items() if value is not None})
        form = LaunchConfigForm(data=form_data, instance=self.instance)
        if not form.is_valid():
            raise serializers.ValidationError(
                {name: list(messages) for name, messages in form.errors.items()}
            )
        return {"form": form}

    def create(self, validated_data) -> LaunchConfig:
        config = validated_data["form"].save(commit=False)
        config.created_by = self.context["request"].user
        config.save()
        return config

    def update(self, instance: LaunchConfig, validated_data) -> LaunchConfig:
        with transaction.atomic():
            # Locked, as in the admin, so two concurrent saves each record what they replaced.
            before = (
                LaunchConfig.objects.select_for_update().select_related("model", "host").get(pk=instance.pk)
            )
            config = validated_data["form"].save()
            LaunchConfigChange.record(before, config, self.context["request"].user)
        return config


def _form_value(config: LaunchConfig, name: str):
    value = getattr(config, f"{name}_id", None) if name in {"model", "host"} else getattr(config, name)
    if isinstance(value, Decimal):
        return str(value)
    return "" if value is None else value


class LaunchAttemptSerializer(serializers.ModelSerializer):
    verdict = serializers.SerializerMethodField()

    class Meta:
        model = LaunchAttempt
        fields = (
            "number",
            "requested_len",
            "requested_auto",
            "argv",
            "outcome",
            "verdict",
            "parsed_len",
            "exit_code",
            "stopped_by_launcher",
            "message",
            "log_tail",
            "started_at",
            "ended_at",
            "duration",
        )

    def get_verdict(self, attempt: LaunchAttempt) -> str:
        if not attempt.outcome:
            return "running…"
        return describe_attempt(
            attempt.outcome,
            attempt.requested_len,
            attempt.parsed_len,
            attempt.exit_code,
            message=attempt.message,
        )


class LaunchEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = LaunchEvent
        fields = ("seq", "kind", "data", "emitted_at", "received_at")


class LaunchSerializer(serializers.ModelSerializer):
    """A launch in the history list: ids of its related rows plus their names, no nested rows."""

    name = serializers.SerializerMethodField()
    host_name = serializers.CharField(source="host.name")
    model_source = serializers.CharField(source="model.source")
    gpu_profile_name = serializers.CharField(source="gpu_profile.display_name", allow_null=True, default=None)
    requested_by_username = serializers.CharField(
        source="requested_by.username", allow_null=True, default=None
    )
    port = serializers.SerializerMethodField()
    # The words the pages show beside each code ("ready" → "Running").
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    outcome_display = serializers.SerializerMethodField()
    reason = serializers.SerializerMethodField(help_text="Why it ended, signals said by name.")

    class Meta:
        model = Launch
        fields = (
            "id",
            "name",
            "kind",
            "status",
            "status_display",
            "outcome",
            "outcome_display",
            "reason",
            "config",
            "host",
            "host_name",
            "model",
            "model_source",
            "gpu_profile",
            "gpu_profile_name",
            "requested_by",
            "requested_by_username",
            "port",
            "known_limit",
            "wanted_context",
            "context_length",
            "learned_limit",
            "kv_capacity_tokens",
            "server_url",
            "created_at",
            "started_at",
            "ready_at",
            "ended_at",
        )

    def get_name(self, launch: Launch) -> str:
        return launch.config_snapshot.get("name", "")

    def get_port(self, launch: Launch) -> int | None:
        return launch.config_snapshot.get("port")

    def get_outcome_display(self, launch: Launch) -> str:
        return OUTCOME_LABELS.get(launch.outcome, launch.outcome)

    def get_reason(self, launch: Launch) -> str:
        return with_signal_names(launch.reason)


class LaunchDetailSerializer(LaunchSerializer):
    attempts = LaunchAttemptSerializer(many=True)
    events = LaunchEventSerializer(many=True)

    class Meta(LaunchSerializer.Meta):
        fields = (*LaunchSerializer.Meta.fields, "config_snapshot", "fingerprint", "attempts", "events")


class DeletedSerializer(serializers.Serializer):
    """The answer to a delete: what was deleted and what stays in the history."""

    detail = serializers.CharField()


class LaunchEventsSerializer(serializers.Serializer):
    """What the live page polls: the launch's state and its events after ``?after=<seq>``."""

    status = serializers.CharField()
    status_display = serializers.CharField()
    terminal = serializers.BooleanField()
    reason = serializers.CharField()
    server_url = serializers.CharField()
    context_length = serializers.IntegerField(allow_null=True)
    kv_capacity_tokens = serializers.IntegerField(allow_null=True)
    events = serializers.ListField(child=serializers.DictField())
    last_seq = serializers.IntegerField()
    more = serializers.BooleanField()
