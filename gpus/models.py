from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Case, ExpressionWrapper, F, Func, Q, Value, When
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.timesince import timesince

from gpus.fingerprint import describe_fingerprint, memory_fingerprint
from launches.contract import READ_MODEL_FACTS_TASK, is_ceiling


class HostQuerySet(models.QuerySet["Host"]):
    def online(self) -> HostQuerySet:
        return self.filter(last_heartbeat__gte=Host.online_cutoff())

    def offline(self) -> HostQuerySet:
        return self.exclude(last_heartbeat__gte=Host.online_cutoff())

    def apply_report(self, report: dict[str, Any]) -> Host | None:
        """Apply a GPU worker's report (start or heartbeat): the host row, then its cards.

        ``last_heartbeat`` becomes the report's ``sent_at`` (ISO 8601, the worker's clock), capped at
        the receipt time (a host clock ahead of ours), or the receipt time when it has none: a report
        that waited in the queue tells how the host was then, not that it is up now. Returns the host,
        or None when the report was sent before the host's current ``last_heartbeat`` (an older
        report delivered late: nothing of it is applied)."""
        received = timezone.now()
        sent = parse_datetime(report.get("sent_at") or "") or received
        if timezone.is_naive(sent):
            sent = timezone.make_aware(sent, UTC)
        sent = min(sent, received)
        started = parse_datetime(report.get("worker_started_at") or "") or None
        with transaction.atomic():
            host, _ = self.select_for_update().get_or_create(name=report["host"])
            if host.last_heartbeat is not None and sent < host.last_heartbeat:
                return None
            host.last_heartbeat = sent
            host.worker_started_at = started
            host.vllm_version = (report.get("vllm_version") or "")[:40]
            host.vllm_command = report.get("vllm_command") or host.vllm_command
            host.simulated = bool(report.get("simulated"))
            host.nvml_status = (report.get("nvml_status") or "")[:255]
            host.vllm_error = (report.get("vllm_error") or "")[:500]
            host.running_servers = list(report.get("running_servers") or [])
            host.save()
            # Without NVML the worker sees no cards; that is not the cards being taken out.
            host.sync_cards(
                report.get("gpus") or [],
                report.get("driver_version") or "",
                retire_missing=not report.get("nvml_status"),
                simulated=host.simulated,
            )
        return host


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
        help_text="Reported by the host's worker (its AIFRED_VLLM_COMMAND): the base command that starts "
        "vLLM there, split into arguments, never run by a shell.",
    )
    vllm_version = models.CharField(max_length=40, blank=True, help_text="Reported by the host's worker.")
    simulated = models.BooleanField(default=False, help_text="Reported by the worker: simulated GPUs.")
    nvml_status = models.CharField(max_length=255, blank=True, help_text="NVML problems the worker reported.")
    vllm_error = models.CharField(
        max_length=500,
        blank=True,
        help_text="Why the worker could not run vLLM's version query, if it could not.",
    )
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
    def last_heartbeat_ago(self) -> str:
        """ "45 s ago" under a minute (an offline host is silent for more than HOST_ONLINE_SECONDS, which
        "0 minutes ago" would hide), else "3 minutes ago", or "never"."""
        if self.last_heartbeat is None:
            return "never"
        seconds = (timezone.now() - self.last_heartbeat).total_seconds()
        if seconds < 60:
            return f"{max(0, int(seconds))} s ago"
        return f"{timesince(self.last_heartbeat)} ago"

    @property
    def problems(self) -> list[tuple[str, str]]:
        """(short state, sentence) for each reason this host cannot start vLLM, as its worker reported.

        Short states: "no NVIDIA driver found", "NVML error: …", "vLLM not found", "vLLM does not
        answer". Empty for a host that can launch.
        """
        found = []
        if self.nvml_status:
            driver_missing = (
                "No NVIDIA driver" in self.nvml_status or "driver is not loaded" in self.nvml_status
            )
            label = "no NVIDIA driver found" if driver_missing else f"NVML error: {self.nvml_status}"
            found.append((label, self.nvml_status))
        if self.vllm_error:
            missing = "not found" in self.vllm_error or "No module named" in self.vllm_error
            found.append(("vLLM not found" if missing else "vLLM does not answer", self.vllm_error))
        return found

    def launch_problem(self) -> str:
        """Why a launch on this host would be refused now, in words; empty when nothing stands in the way."""
        problems = self.problems
        if not problems:
            return ""
        said = " ".join(sentence if sentence.endswith(".") else f"{sentence}." for _, sentence in problems)
        simulated = list(
            Host.objects.online().filter(simulated=True).exclude(pk=self.pk).values_list("name", flat=True)
        )
        if simulated:
            # Already under make demo: point at its hosts rather than at make demo.
            hint = f"To see the whole flow without a GPU, launch on a simulated host: {', '.join(simulated)}."
        else:
            hint = "To see the whole flow without a GPU, run `make demo` (simulated GPU hosts)."
        return f"The host {self.name} cannot start vLLM: {said} {hint}"

    @property
    def reachable_address(self) -> str:
        return self.address or self.name

    def sync_cards(
        self,
        reported: list[dict[str, Any]],
        driver_version: str,
        retire_missing: bool,
        simulated: bool = False,
    ) -> None:
        """Bring the current cards of this host in line with what NVML reported.

        A card whose UUID, name, memory or driver differs from the row in its slot is a GPU change:
        the old row is retired with the reason and a new one takes the slot. Simulated cards get
        profiles of their own, so nothing learned on them ever applies to a real card of that name.
        """
        now = timezone.now()
        current = {card.index: card for card in self.gpus.current().select_related("profile")}
        for info in reported:
            profile, _ = GpuProfile.objects.get_or_create(
                name=info["name"], memory_total_mib=int(info["memory_total_mib"]), simulated=simulated
            )
            card = current.pop(int(info["index"]), None)
            if card is not None:
                changes = card.changes_from(info, profile, driver_version)
                if not changes:
                    card.last_seen = now
                    card.memory_free_mib = info.get("memory_free_mib")
                    card.compute_capability = info.get("compute_capability") or card.compute_capability
                    card.save(update_fields=["last_seen", "memory_free_mib", "compute_capability"])
                    continue
                card.retire(f"GPU change: {'; '.join(changes)}.", now)
            Gpu.objects.create(
                host=self,
                index=int(info["index"]),
                uuid=info["uuid"],
                profile=profile,
                driver_version=driver_version,
                compute_capability=info.get("compute_capability") or "",
                memory_free_mib=info.get("memory_free_mib"),
                first_seen=now,
                last_seen=now,
            )
        if retire_missing:
            for card in current.values():
                card.retire("No longer reported by the host's GPU worker.", now)


SIMULATED_MARK = " · simulated"


class GpuProfile(models.Model):
    """A kind of GPU: hosts with the same card share what was learned on it."""

    name = models.CharField(max_length=200, help_text="NVML product name.")
    memory_total_mib = models.PositiveIntegerField()
    simulated = models.BooleanField(
        default=False, help_text="Cards a GPU worker simulates: what is learned on them is kept apart."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "GPU profile"
        ordering = ["name", "memory_total_mib"]
        constraints = [
            models.UniqueConstraint(
                fields=["name", "memory_total_mib", "simulated"],
                name="gpuprofile_unique_name_memory_simulated",
            )
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def simulated_mark(self) -> str:
        """ " · simulated" for a simulated card's profile, "" otherwise: appended wherever it is named."""
        return SIMULATED_MARK if self.simulated else ""

    @property
    def memory_gib(self) -> int:
        """The card's memory in whole GiB, half a GiB rounded up (12,288 MiB: 12)."""
        return (self.memory_total_mib + 512) // 1024

    @property
    def display_name(self) -> str:
        """The one name of the profile in every output (admin, pages, CSV, API, metrics):
        "NVIDIA GeForce RTX 3060 (12 GiB) · simulated". Two profiles of one product name differ
        in memory, so the memory is part of it."""
        return f"{self.name} ({self.memory_gib} GiB){self.simulated_mark}"

    @staticmethod
    def display_name_expression(path: str = "") -> Func:
        """``display_name`` in SQL, for ``values()`` rows (CSV export, metrics); ``path`` leads to the
        profile from the queried model, e.g. ``"gpu_profile__"``. Integer division rounds the GiB as
        ``memory_gib`` does, on SQLite and PostgreSQL alike."""
        gib = Cast(
            ExpressionWrapper(
                (F(f"{path}memory_total_mib") + 512) / 1024, output_field=models.IntegerField()
            ),
            output_field=models.CharField(),
        )
        mark = Case(When(**{f"{path}simulated": True}, then=Value(SIMULATED_MARK)), default=Value(""))
        return Concat(f"{path}name", Value(" ("), gib, Value(" GiB)"), mark, output_field=models.CharField())


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
        return f"{self.host.name}:{self.index} {self.profile.display_name}"

    def changes_from(self, info: dict[str, Any], profile: GpuProfile, driver_version: str) -> list[str]:
        """What makes the reported card a different GPU than this row, in words."""
        changes = []
        if info["uuid"] != self.uuid:
            changes.append(f"UUID {self.uuid} -> {info['uuid']}")
        if profile.pk != self.profile_id:
            changes.append(f"model {self.profile} -> {profile}")
        if driver_version != self.driver_version:
            changes.append(f"driver {self.driver_version or 'unknown'} -> {driver_version or 'unknown'}")
        return changes

    def retire(self, reason: str, when=None) -> None:
        self.retired_at = when or timezone.now()
        self.retired_reason = reason[:255]
        self.save(update_fields=["retired_at", "retired_reason"])


def validate_model_source(value: str) -> None:
    """A model folder on this machine (with a config.json) or a valid Hugging Face repo id.

    Raises ValidationError with what was wrong and how to fix it. A value that starts with "/" or
    "~" is a folder; a relative path is refused (the GPU workers run elsewhere); anything else must
    pass huggingface_hub's ``validate_repo_id``.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    value = (value or "").strip()
    if value.startswith(".") or "\\" in value:
        raise ValidationError(
            "Give a local model folder as an absolute path (starting with / or ~), the same on this "
            "machine and on the GPU hosts; %(value)s is relative.",
            params={"value": value},
        )
    if value.startswith(("/", "~")):
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise ValidationError(
                "There is no folder %(value)s on this machine; give the path of a model folder "
                "(the one holding config.json) or a Hugging Face repo id like Qwen/Qwen3-8B-AWQ.",
                params={"value": value},
            )
        if not (folder / "config.json").is_file():
            raise ValidationError(
                "The folder %(value)s has no config.json; give the folder of the model itself.",
                params={"value": value},
            )
        return
    if Path(value).is_dir():
        # "org/name" is also how a relative folder looks: a folder of that name here is what was meant.
        raise ValidationError(
            "%(value)s is a folder relative to where the site runs; give it as an absolute path "
            "(%(absolute)s), the same on this machine and on the GPU hosts.",
            params={"value": value, "absolute": str(Path(value).resolve())},
        )
    try:
        validate_repo_id(value)
    except HFValidationError:
        raise ValidationError(
            "%(value)s is neither a local folder nor a valid Hugging Face repo id; give a path "
            "starting with / (a folder holding config.json) or an id like Qwen/Qwen3-8B-AWQ.",
            params={"value": value},
        ) from None


class ModelLengths(NamedTuple):
    """A model's lengths under one vLLM version's rules, in tokens (``ModelSpec.lengths_for``)."""

    native_context: int | None
    default_context: int | None
    rope_theta: float | None


class ModelSpec(models.Model):
    """A model and the facts read from its config.json."""

    class FactsStatus(models.TextChoices):
        NOT_READ = "", "Not read yet"
        READING = "reading", "Reading config.json"
        READ = "read", "Read"
        ERROR = "error", "Could not be read"

    source = models.CharField(
        max_length=500,
        validators=[validate_model_source],
        help_text="Hugging Face repo id (org/name) or the path of a local model folder, the same on this "
        "machine and on the GPU hosts.",
    )
    revision = models.CharField(max_length=200, blank=True, help_text="Branch, tag or commit; empty = main.")
    native_context = models.PositiveIntegerField(
        null=True, blank=True, help_text="The longest length vLLM accepts for this model (tokens)."
    )
    default_context = models.PositiveIntegerField(
        null=True, blank=True, help_text="The length vLLM starts at without --max-model-len (tokens)."
    )
    max_len_key = models.CharField(max_length=100, blank=True)
    attention_kind = models.CharField(
        max_length=20, blank=True, help_text="full, sliding, mla, hybrid (Mamba / linear attention) or mamba."
    )
    kv_bytes_per_token = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="KV cache bytes one token takes across all layers, in the model's dtype.",
    )
    facts_vllm_version = models.CharField(
        max_length=40, blank=True, help_text="The vLLM version whose rules derived the lengths."
    )
    num_layers = models.PositiveIntegerField(null=True, blank=True)
    num_kv_heads = models.PositiveIntegerField(null=True, blank=True)
    head_dim = models.PositiveIntegerField(null=True, blank=True)
    dtype = models.CharField(max_length=40, blank=True)
    rope_scaling = models.JSONField(null=True, blank=True)
    facts = models.JSONField(
        null=True,
        blank=True,
        help_text="Everything read from config.json (launches.vllm.modelinfo.ModelFacts.to_dict): the "
        "lengths under each host's vLLM version derive from it.",
    )
    facts_read_at = models.DateTimeField(null=True, blank=True)
    facts_error = models.TextField(blank=True)
    facts_status = models.CharField(
        max_length=10, choices=FactsStatus.choices, default=FactsStatus.NOT_READ, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "revision"]
        verbose_name = "model"
        constraints = [models.UniqueConstraint(fields=["source", "revision"], name="modelspec_unique_source")]

    def __str__(self) -> str:
        return f"{self.source}@{self.revision}" if self.revision else self.source

    def apply_facts(self, facts: dict[str, Any]) -> None:
        """Store facts read from config.json (by the control worker or a GPU host): ``facts`` is
        ``ModelFacts.to_dict()``. The whole dict is kept (``facts``) when it parses as ``ModelFacts``,
        so that ``lengths_for`` can derive the lengths under any vLLM version."""
        from launches.vllm.modelinfo import ModelFacts

        try:
            ModelFacts.from_dict(facts)
        except (TypeError, ValueError):
            complete = None
        else:
            complete = dict(facts)
        self.native_context = facts.get("native_context")
        self.default_context = facts.get("default_context")
        self.max_len_key = facts.get("max_len_key") or ""
        self.attention_kind = facts.get("attention_kind") or ""
        self.kv_bytes_per_token = facts.get("kv_bytes_per_token")
        self.facts_vllm_version = facts.get("rules_version") or ""
        self.num_layers = facts.get("num_layers")
        self.num_kv_heads = facts.get("num_kv_heads")
        self.head_dim = facts.get("head_dim")
        self.dtype = facts.get("dtype") or ""
        self.rope_scaling = facts.get("rope_scaling")
        self.facts = complete
        self.facts_read_at = timezone.now()
        self.facts_error = ""
        self.facts_status = self.FactsStatus.READ
        self.save()

    def lengths_for(self, vllm_version: str | None, extra_args: Sequence[str] = ()) -> ModelLengths:
        """The lengths a launch of this model asks for and sends to its host, under the rules of
        ``vllm_version`` (the host's; "" or None: the newest rules), in tokens, with the model's
        ``rope_theta`` (None when unknown).

        ``extra_args`` are the launch's extra vLLM arguments: ``--disable-sliding-window`` caps both
        lengths at the model's sliding window, as vLLM does. A row read before the full facts were
        stored, or a version that is not a version number, gives the stored lengths (those of
        ``facts_vllm_version``) and no ``rope_theta``.
        """
        from launches.vllm.flags import has_flag
        from launches.vllm.modelinfo import ModelFacts
        from launches.vllm.versions import VllmVersionError

        stored = ModelLengths(self.native_context, self.default_context, None)
        if not self.facts:
            return stored
        facts = ModelFacts.from_dict(self.facts)
        try:
            native, default = facts.lengths_for_version(
                vllm_version or None,
                disable_sliding_window=has_flag(list(extra_args), "--disable-sliding-window"),
            )
        except VllmVersionError:
            return stored._replace(rope_theta=facts.rope_theta)
        return ModelLengths(native, default, facts.rope_theta)

    def record_facts_error(self, message: str) -> None:
        self.facts_error = message
        self.facts_read_at = timezone.now()
        self.facts_status = self.FactsStatus.ERROR
        self.save(update_fields=["facts_error", "facts_read_at", "facts_status"])

    def queue_facts_read(self) -> None:
        """Mark the model "reading" and have the control worker read its config.json once the
        current transaction commits (task ``launches.control.read_model_facts``).

        Called when a model is saved (admin form, API) and by "Read config.json again". The result
        lands on the row: the facts and status "read", or status "error" with the problem in words.
        """
        from aifred_site.celery import app

        type(self).objects.filter(pk=self.pk).update(facts_status=self.FactsStatus.READING)
        self.facts_status = self.FactsStatus.READING
        pk = self.pk
        # The control queue is the app's default queue.
        transaction.on_commit(lambda: app.send_task(READ_MODEL_FACTS_TASK, args=[pk]))

    @property
    def facts_problem(self) -> str:
        """Why a launch of this model cannot start yet, in one sentence; empty when it can."""
        if self.native_context is not None and self.facts_status != self.FactsStatus.ERROR:
            return ""
        if self.facts_status == self.FactsStatus.READING:
            return f"The config.json of {self} is still being read; try again in a few seconds."
        if self.facts_status == self.FactsStatus.ERROR:
            return f"{self} cannot be launched: {self.facts_error}"
        if self.native_context is None:
            return (
                f'The native context of {self} is not known yet: press "Read config.json again" '
                "on the model's page."
            )
        return ""

    def refresh_facts(self) -> bool:
        """Read config.json through huggingface_hub (cache first) with the site's token.

        Returns whether the facts were read; otherwise the row holds status "error" and the problem
        as a sentence (never a traceback, never the token).
        """
        from launches.vllm.modelinfo import ModelConfigError, read_model_facts

        try:
            facts = read_model_facts(
                self.source,
                self.revision or None,
                token=settings.HF_TOKEN,
                local_files_only=not settings.HF_HUB_ALLOW_DOWNLOAD,
            )
        except ModelConfigError as exc:
            # The messages name the model and the problem, never the token.
            message = str(exc)
            if not settings.HF_TOKEN and type(exc.__cause__).__name__ in {
                "GatedRepoError",
                "RepositoryNotFoundError",
            }:
                message += (
                    " The site has no HF_TOKEN: set it where the control worker and the GPU workers run."
                )
            self.record_facts_error(message)
            return False
        except Exception as exc:
            # Whatever goes wrong, the model must not stay "reading": say it in words.
            self.record_facts_error(
                f"Reading the config.json of {self} failed unexpectedly ({type(exc).__name__}); "
                "the control worker's log has the details."
            )
            return False
        self.apply_facts(facts.to_dict())
        return True


class DetectedLimitQuerySet(models.QuerySet["DetectedLimit"]):
    def learn(
        self,
        launch,
        max_model_len: int,
        learned_from: str,
        kv_capacity_tokens: int | None,
        *,
        max_num_seqs: int | None = None,
    ) -> DetectedLimit:
        """Store what a launch learned for its profile × model × fingerprint.

        A measured ceiling (refusal, auto-fit) replaces whatever was known. A length that merely fitted
        never overwrites a measured ceiling (it only refreshes the KV capacity) and only raises an
        earlier "fits" floor, except in a re-detect, which replaces whatever it finds. A
        ``max_num_seqs`` vLLM named for a hybrid model is kept whatever the length does.
        """
        values = {
            "fingerprint_fields": launch.memory_fingerprint_fields(),
            "vllm_version": launch.vllm_version,
            "max_model_len": max_model_len,
            "kv_capacity_tokens": kv_capacity_tokens,
            "learned_from": learned_from,
            "driver_version": launch.host.gpus.current().values_list("driver_version", flat=True).first()
            or "",
            "launch": launch,
            "learned_at": timezone.now(),
        }
        key = {"profile": launch.gpu_profile, "model": launch.model, "fingerprint": launch.fingerprint}
        with transaction.atomic():
            limit = self.select_for_update().filter(**key).first()
            if max_num_seqs:
                values["max_num_seqs"] = int(max_num_seqs)
            if limit is None:
                return self.create(**key, **values)
            # Re-detect forgets what was known: whatever it finds replaces the row.
            if (
                learned_from == DetectedLimit.LearnedFrom.FITS
                and launch.kind != "redetect"
                and (limit.is_ceiling or limit.max_model_len >= max_model_len)
            ):
                if kv_capacity_tokens:
                    limit.kv_capacity_tokens = kv_capacity_tokens
                if max_num_seqs:
                    limit.max_num_seqs = int(max_num_seqs)
                limit.save(update_fields=["kv_capacity_tokens", "max_num_seqs"])
                return limit
            for name, value in values.items():
                setattr(limit, name, value)
            limit.save()
            return limit

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
        FITS = "fits", "A start at this length fitted (a floor, not a ceiling)"

    profile = models.ForeignKey(GpuProfile, on_delete=models.PROTECT, related_name="limits")
    model = models.ForeignKey(ModelSpec, on_delete=models.PROTECT, related_name="limits")
    fingerprint = models.CharField(max_length=64)
    fingerprint_fields = models.JSONField(help_text="The options the fingerprint was computed from.")
    vllm_version = models.CharField(max_length=40, blank=True)
    max_model_len = models.PositiveIntegerField()
    kv_capacity_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_num_seqs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Hybrid models: the --max-num-seqs vLLM said fits its Mamba cache (empty: its default).",
    )
    learned_from = models.CharField(max_length=20, choices=LearnedFrom.choices)
    driver_version = models.CharField(max_length=40, blank=True)
    launch = models.ForeignKey(
        "launches.Launch", on_delete=models.SET_NULL, null=True, blank=True, related_name="limits_learned"
    )
    learned_at = models.DateTimeField(default=timezone.now)

    objects = DetectedLimitQuerySet.as_manager()

    class Meta:
        # Named as the README and the fleet page name them.
        verbose_name = "learned limit"
        ordering = ["profile__name", "model__source"]
        constraints = [
            models.UniqueConstraint(
                fields=["profile", "model", "fingerprint"], name="detectedlimit_unique_profile_model_fp"
            ),
            models.CheckConstraint(condition=Q(max_model_len__gt=0), name="detectedlimit_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.model} on {self.profile}: {self.max_model_len:,} tokens"

    @property
    def options_summary(self) -> str:
        """The memory options this limit was learned with that differ from vLLM's defaults, e.g.
        "quantization awq", or "default options" (``gpus.fingerprint.describe_fingerprint``)."""
        return describe_fingerprint(self.fingerprint_fields or {})

    @property
    def is_ceiling(self) -> bool:
        """Measured by vLLM itself: no longer length fits. A "fits" row only says this much fitted."""
        return is_ceiling(self.learned_from)

    def start_values(self, wanted: int | None) -> tuple[int | None, int | None]:
        """(known limit, ceiling hint) for a launch that wants ``wanted`` tokens.

        A measured ceiling is the known limit. A "fits" floor is a known limit only when the wanted
        length is within it; above it (YaRN) only the logged KV capacity can guide the start, as a hint,
        and only when it is above the floor: a hybrid (Mamba / linear-attention) model logs a KV
        capacity below the length it serves (75,840 logged, 120,000 served), never a ceiling.
        """
        if self.is_ceiling:
            return self.max_model_len, None
        if wanted is not None and wanted <= self.max_model_len:
            return self.max_model_len, None
        capacity = self.kv_capacity_tokens
        return None, capacity if capacity and capacity > self.max_model_len else None
