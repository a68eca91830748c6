from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from gpus.fingerprint import memory_fingerprint


class HostQuerySet(models.QuerySet["Host"]):
    def online(self) -> HostQuerySet:
        return self.filter(last_heartbeat__gte=Host.online_cutoff())

    def offline(self) -> HostQuerySet:
        return self.exclude(last_heartbeat__gte=Host.online_cutoff())


class Host(models.Model):
    """A GPU host; its worker consumes the queue ``gpu.<name>`` and needs only the broker."""

    name = models.SlugField(max_length=100, unique=True, help_text="Also the worker's queue: gpu.<name>.")
    address = models.CharField(
        max_length=255,
        blank=True,
        help_text="Where clients reach the servers on this host (DNS name or IP). Defaults to the name.",
    )
    vllm_command = models.CharField(
        max_length=500,
        default="vllm serve",
        help_text="Base command that starts vLLM on this host, split into arguments (never run by a shell), "
        "e.g. 'vllm serve' or 'python -m vllm.entrypoints.openai.api_server'.",
    )
    vllm_version = models.CharField(max_length=40, blank=True, help_text="Reported by the host's worker.")
    simulated = models.BooleanField(default=False, help_text="Reported by the worker: simulated GPUs.")
    nvml_status = models.CharField(max_length=255, blank=True, help_text="NVML problems the worker reported.")
    running_servers = models.JSONField(default=list, blank=True, help_text="As of the last heartbeat.")
    last_heartbeat = models.DateTimeField(null=True, blank=True, db_index=True)
    worker_started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def online_cutoff():
        return timezone.now() - timedelta(seconds=settings.HOST_ONLINE_SECONDS)

    @property
    def queue(self) -> str:
        return f"gpu.{self.name}"

    @property
    def is_online(self) -> bool:
        return self.last_heartbeat is not None and self.last_heartbeat >= self.online_cutoff()

    @property
    def reachable_address(self) -> str:
        return self.address or self.name


class GpuProfile(models.Model):
    """A kind of GPU: hosts with the same card share what was learned on it."""

    name = models.CharField(max_length=200, help_text="NVML product name.")
    memory_total_mib = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "memory_total_mib"]
        constraints = [
            models.UniqueConstraint(fields=["name", "memory_total_mib"], name="gpuprofile_unique_name_memory")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.memory_total_mib / 1024:.0f} GiB)"


class GpuQuerySet(models.QuerySet["Gpu"]):
    def current(self) -> GpuQuerySet:
        return self.filter(retired_at__isnull=True)


class Gpu(models.Model):
    """One physical card in one host slot.

    A card whose UUID, name or driver changes is a GPU change: the old row is retired (kept for the
    history) and a new one takes the slot, so nothing learned for the old card is applied to it.
    """

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="gpus")
    index = models.PositiveSmallIntegerField()
    uuid = models.CharField(max_length=100)
    profile = models.ForeignKey(GpuProfile, on_delete=models.PROTECT, related_name="gpus")
    driver_version = models.CharField(max_length=40, blank=True)
    compute_capability = models.CharField(max_length=10, blank=True)
    memory_free_mib = models.PositiveIntegerField(null=True, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_reason = models.CharField(max_length=255, blank=True)

    objects = GpuQuerySet.as_manager()

    class Meta:
        ordering = ["host__name", "index", "-first_seen"]
        verbose_name = "GPU"
        constraints = [
            models.UniqueConstraint(
                fields=["host", "index"],
                condition=Q(retired_at__isnull=True),
                name="gpu_one_current_per_slot",
            )
        ]

    def __str__(self) -> str:
        return f"{self.host.name}:{self.index} {self.profile.name}"


class ModelSpec(models.Model):
    """A model and the facts read from its config.json."""

    source = models.CharField(
        max_length=500, help_text="Hugging Face repo id (org/name) or a local directory on the GPU hosts."
    )
    revision = models.CharField(max_length=200, blank=True, help_text="Branch, tag or commit; empty = main.")
    native_context = models.PositiveIntegerField(null=True, blank=True)
    max_len_key = models.CharField(max_length=100, blank=True)
    num_layers = models.PositiveIntegerField(null=True, blank=True)
    num_kv_heads = models.PositiveIntegerField(null=True, blank=True)
    head_dim = models.PositiveIntegerField(null=True, blank=True)
    dtype = models.CharField(max_length=40, blank=True)
    rope_scaling = models.JSONField(null=True, blank=True)
    facts_read_at = models.DateTimeField(null=True, blank=True)
    facts_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "revision"]
        verbose_name = "model"
        constraints = [models.UniqueConstraint(fields=["source", "revision"], name="modelspec_unique_source")]

    def __str__(self) -> str:
        return f"{self.source}@{self.revision}" if self.revision else self.source


class DetectedLimitQuerySet(models.QuerySet["DetectedLimit"]):
    def for_config(
        self,
        *,
        profile: GpuProfile | int,
        model: ModelSpec | int,
        memory_options: Mapping[str, Any],
        vllm_version: str,
    ) -> DetectedLimitQuerySet:
        """The limit learned for this GPU profile, model and memory fingerprint (at most one row).

        Launching and the config form's preview both ask here, so the preview shows the very number
        the next launch will start with.
        """
        fingerprint, _ = memory_fingerprint({**memory_options, "vllm_version": vllm_version})
        return self.filter(profile=profile, model=model, fingerprint=fingerprint)


class DetectedLimit(models.Model):
    """Model M with memory options O on GPU profile G (and vLLM version V) holds at most N tokens."""

    class LearnedFrom(models.TextChoices):
        REFUSAL = "refusal", "vLLM's refusal message"
        AUTO_FIT = "auto_fit", "vLLM's auto-fit"
        KV_CAPACITY = "kv_capacity", "KV capacity logged on a successful start"
        FITS = "fits", "The wanted length fitted"

    profile = models.ForeignKey(GpuProfile, on_delete=models.PROTECT, related_name="limits")
    model = models.ForeignKey(ModelSpec, on_delete=models.PROTECT, related_name="limits")
    fingerprint = models.CharField(max_length=64)
    fingerprint_fields = models.JSONField(help_text="The options the fingerprint was computed from.")
    vllm_version = models.CharField(max_length=40, blank=True)
    max_model_len = models.PositiveIntegerField()
    kv_capacity_tokens = models.PositiveIntegerField(null=True, blank=True)
    learned_from = models.CharField(max_length=20, choices=LearnedFrom.choices)
    driver_version = models.CharField(max_length=40, blank=True)
    launch = models.ForeignKey(
        "launches.Launch", on_delete=models.SET_NULL, null=True, blank=True, related_name="limits_learned"
    )
    learned_at = models.DateTimeField(default=timezone.now)

    objects = DetectedLimitQuerySet.as_manager()

    class Meta:
        ordering = ["profile__name", "model__source"]
        constraints = [
            models.UniqueConstraint(
                fields=["profile", "model", "fingerprint"], name="detectedlimit_unique_profile_model_fp"
            ),
            models.CheckConstraint(condition=Q(max_model_len__gt=0), name="detectedlimit_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.model} on {self.profile}: {self.max_model_len:,} tokens"
