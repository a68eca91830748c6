from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from gpus.fingerprint import memory_fingerprint
from gpus.models import DetectedLimit, Gpu, GpuProfile, ModelLengths
from launches.contract import (
    MEMORY_OPTION_FIELDS,
    RUN_LAUNCH_TASK,
    STOP_LAUNCH_TASK,
    MemoryOptions,
    wanted_length,
)
from launches.events import LaunchEventsMixin
from launches.verdicts import with_signal_names
from launches.vllm.flags import ExtraArgsError, parse_extra_args

log = logging.getLogger(__name__)

YARN_FACTORS = tuple(Decimal(f"{step / 2:.1f}") for step in range(2, 17))  # 1.0, 1.5, ... 8.0
PORT_MIN, PORT_MAX = 1024, 65535


class LaunchRefused(Exception):
    """A launch or stop that cannot be done now; the message says why and what to do."""


def send_to_host(
    task_name: str, host_queue: str, args: list, task_id: str | None = None, expires: float | None = None
) -> None:
    """Send one task to a host's queue; ``expires`` in seconds (a spec the host takes too late is dropped)."""
    from aifred_site.celery import app

    app.send_task(task_name, args=args, queue=host_queue, task_id=task_id, expires=expires)


def validate_yarn_factor(value: Decimal) -> None:
    if value is None:
        return
    if Decimal(value) not in YARN_FACTORS:
        raise ValidationError(
            "The YaRN factor must be between 1.0 and 8.0 in steps of 0.5 (1.0, 1.5, ... 8.0); got %(value)s.",
            params={"value": value},
        )


def yarn_factor_problem(enable_yarn: bool, factor: Decimal | float | None) -> str:
    """Why YaRN on with this factor is refused on save, in words; "" when it is not. A factor kept
    while YaRN is off is allowed (it is ignored, and comes back when YaRN is switched on again); YaRN
    on with 1.0 would scale nothing and is most likely a mistake. The config form refuses it with
    this sentence and the context preview warns with it as soon as it is entered."""
    if enable_yarn and factor is not None and Decimal(str(factor)) == Decimal("1.0"):
        return "With YaRN on, choose a factor above 1.0 (1.0 scales nothing)."
    return ""


def validate_gpu_indices(value: str) -> None:
    parts = [part.strip() for part in (value or "").split(",")]
    if not value or any(not part.isdigit() for part in parts):
        raise ValidationError("List GPU indices as whole numbers separated by commas, e.g. 0 or 0,1.")
    if len(set(parts)) != len(parts):
        raise ValidationError("Each GPU index may appear only once.")


def validate_extra_args(value: str) -> None:
    try:
        parse_extra_args(value)
    except ExtraArgsError as exc:
        raise ValidationError(str(exc)) from exc


class LaunchConfig(models.Model):
    """What an operator edits: the model, where it runs and how."""

    class Dtype(models.TextChoices):
        AUTO = "auto"
        HALF = "half"
        FLOAT16 = "float16"
        BFLOAT16 = "bfloat16"
        FLOAT32 = "float32"

    class KvCacheDtype(models.TextChoices):
        AUTO = "auto"
        FP8 = "fp8"
        FP8_E4M3 = "fp8_e4m3"
        FP8_E5M2 = "fp8_e5m2"

    name = models.CharField(max_length=100, unique=True)
    model = models.ForeignKey("gpus.ModelSpec", on_delete=models.PROTECT, related_name="configs")
    host = models.ForeignKey("gpus.Host", on_delete=models.PROTECT, related_name="configs")
    gpu_indices = models.CharField(
        max_length=50, default="0", validators=[validate_gpu_indices], help_text="e.g. 0 or 0,1"
    )
    port = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(PORT_MIN), MaxValueValidator(PORT_MAX)],
        help_text="Empty: the host's GPU worker picks a free port (its AIFRED_PORT_RANGE, 8100-8199 by "
        "default) and the launch shows it. A fixed port must not be the site's own.",
    )
    served_model_name = models.CharField(max_length=200, blank=True)
    gpu_memory_utilization = models.FloatField(
        default=0.9,
        validators=[MinValueValidator(0.01), MaxValueValidator(1.0)],
        help_text="Share of the card's memory vLLM may use, above 0 and at most 1.",
    )
    dtype = models.CharField(max_length=20, choices=Dtype.choices, default=Dtype.AUTO)
    quantization = models.CharField(max_length=40, blank=True, help_text="e.g. awq, gptq, fp8; empty = none")
    kv_cache_dtype = models.CharField(max_length=20, choices=KvCacheDtype.choices, default=KvCacheDtype.AUTO)
    tensor_parallel_size = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(64)]
    )
    max_num_batched_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    enforce_eager = models.BooleanField(default=False)
    extra_args = models.TextField(
        blank=True,
        validators=[validate_extra_args],
        help_text="Further vLLM flags, split like a shell would but never run by one. "
        "Flags the launcher manages (--max-model-len, --port, ...) are refused.",
    )
    enable_yarn = models.BooleanField(default=False, verbose_name="YaRN")
    yarn_factor = models.DecimalField(
        max_digits=2,
        decimal_places=1,
        default=Decimal("1.0"),
        validators=[validate_yarn_factor],
        help_text="1.0 to 8.0 in steps of 0.5; the wanted context is native × factor.",
    )
    context_cap = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Optional upper bound on the context length, in tokens.",
    )
    keep_up = models.BooleanField(
        default=False,
        db_default=False,
        verbose_name="keep the server up",
        help_text="Restart the server when it crashes, waiting longer each time; after too many crashes "
        "in a short time the launch ends as a crash loop.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(yarn_factor__in=YARN_FACTORS), name="launchconfig_yarn_factor_steps"
            ),
            models.CheckConstraint(
                condition=Q(gpu_memory_utilization__gt=0) & Q(gpu_memory_utilization__lte=1),
                name="launchconfig_gpu_memory_utilization_range",
            ),
            models.CheckConstraint(
                condition=Q(port__isnull=True) | (Q(port__gte=PORT_MIN) & Q(port__lte=PORT_MAX)),
                name="launchconfig_port_range",
            ),
            models.CheckConstraint(
                condition=Q(context_cap__isnull=True) | Q(context_cap__gt=0),
                name="launchconfig_context_cap_positive",
            ),
            models.CheckConstraint(condition=Q(tensor_parallel_size__gte=1), name="launchconfig_tp_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_yarn_factor(self) -> Decimal:
        return self.yarn_factor if self.enable_yarn else Decimal("1.0")

    @property
    def gpu_index_list(self) -> list[int]:
        return [int(part) for part in self.gpu_indices.split(",")]

    @property
    def extra_args_list(self) -> list[str]:
        return parse_extra_args(self.extra_args)

    def model_lengths(self) -> ModelLengths:
        """The model's (native context, default context, rope_theta) under the vLLM version of this
        config's host and with its extra arguments (``ModelSpec.lengths_for``); lengths in tokens."""
        version = self.host.vllm_version if self.host_id else None
        try:
            extra_args = self.extra_args_list
        except ExtraArgsError:
            extra_args = []
        return self.model.lengths_for(version, extra_args)

    def wanted_context(self) -> int | None:
        """Native × YaRN factor, lowered to the cap (``contract.wanted_length``), with the native
        context under the host's vLLM version (``model_lengths``); None while it is unknown."""
        native = self.model_lengths().native_context
        if native is None:
            return None
        return wanted_length(native, float(self.effective_yarn_factor), self.context_cap)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.host_id and self.gpu_indices and self.tensor_parallel_size:
            listed = [part.strip() for part in self.gpu_indices.split(",") if part.strip()]
            count, size = len(listed), self.tensor_parallel_size
            if count != size and count > 0:
                gpus = "1 GPU is" if count == 1 else f"{count} GPUs are"
                wanted = "one GPU" if size == 1 else f"{size} GPUs"
                errors["tensor_parallel_size"] = (
                    f"{gpus} listed ({', '.join(listed)}): set tensor parallel size to {count}, "
                    f"or list {wanted}."
                )
        if self.host_id and self.gpu_indices and "gpu_indices" not in errors:
            problem = self.gpu_indices_problem()
            if problem:
                errors["gpu_indices"] = problem
        if self.port and self.port == settings.SITE_PORT:
            errors["port"] = (
                f"Port {self.port} is the site's own port; leave the port empty (the host picks a free "
                "one) or choose another."
            )
        if errors:
            raise ValidationError(errors)

    def gpu_indices_problem(self) -> str:
        """Why this config's GPU indices are not on its host, in words; "" when they are, or when the
        host has never reported (it may not be up yet) or the indices do not parse."""
        host = self.host
        if host.last_heartbeat is None:
            return ""
        try:
            wanted = self.gpu_index_list
        except ValueError:
            return ""
        present = sorted(Gpu.objects.current().filter(host_id=host.pk).values_list("index", flat=True))
        missing = [index for index in wanted if index not in present]
        if not missing:
            return ""
        listed = ", ".join(str(index) for index in missing)
        gpus = f"GPU {listed} is" if len(missing) == 1 else f"GPUs {listed} are"
        if present:
            return (
                f"{gpus} not on {host.name}; its worker reported GPU "
                f"{', '.join(str(index) for index in present)}."
            )
        why = "; ".join(label for label, _ in host.problems)
        return f"{gpus} not on {host.name}: its worker reported no GPUs" + (f" ({why})." if why else ".")

    def delete_problem(self) -> str:
        """Why this config cannot be deleted now, in one sentence ("" when it can): a launch of it is
        still queued, starting, running or stopping, and its server would outlive the config."""
        active = self.launches.active().order_by("pk").first()
        if active is None:
            return ""
        return (
            f"Launch #{active.pk} of {self.name} is still {active.get_status_display().lower()}; "
            "stop it first, then delete the config."
        )

    def kept_history(self) -> str:
        """What deleting this config keeps, in words: "Its 3 launches and 2 recorded changes are kept
        in the history." (launches keep their config snapshot, changes the config's name)."""
        counts = (
            (self.launches.count(), "launch", "launches"),
            (self.changes.count(), "recorded change", "recorded changes"),
        )
        parts = [f"{count} {one if count == 1 else many}" for count, one, many in counts if count]
        if not parts:
            return "It had no launches and no recorded changes."
        verb = "is" if parts == [parts[0]] and parts[0].startswith("1 ") else "are"
        return f"Its {' and '.join(parts)} {verb} kept in the history."

    def port_problem(self) -> str:
        """Why this config's fixed port cannot be used on its host now, in words; "" when it can."""
        if not self.port:
            return ""
        if self.port == settings.SITE_PORT:
            return f"Port {self.port} is the site's own port; leave the port empty or choose another."
        from gpus.models import Host

        # Hosts reached at the same address share its ports (simulated hosts on one machine).
        address = self.host.reachable_address
        sharing = Host.objects.filter(Q(pk=self.host_id) | Q(address=address) | Q(address="", name=address))
        hosts = list(sharing.only("id", "name", "address", "running_servers"))
        # The last heartbeat's servers, less those whose end the worker reported since (a stop's event).
        listed = [server.get("launch_id") for host in hosts for server in host.running_servers or []]
        reported_ended = set(
            Launch.objects.filter(pk__in=[pk for pk in listed if isinstance(pk, int)])
            .filter(status__in=Launch.Status.terminal())
            .exclude(status=Launch.Status.LOST)
            .values_list("pk", flat=True)
        )
        for host in hosts:
            where = self.host.name if host.pk == self.host_id else f"{address} (also {host.name}'s address)"
            for server in host.running_servers or []:
                if server.get("port") == self.port and server.get("launch_id") not in reported_ended:
                    return (
                        f"Port {self.port} on {where} is taken by launch #{server.get('launch_id')}; "
                        "leave the port empty (the host picks a free one) or choose another."
                    )
        for other in Launch.objects.active().filter(host__in=sharing).select_related("host"):
            # A port the host picked is known from the server's URL only.
            if other.config_snapshot.get("port") == self.port or other.server_url.endswith(f":{self.port}"):
                where = (
                    self.host.name
                    if other.host_id == self.host_id
                    else f"{address} (also {other.host.name}'s address)"
                )
                return (
                    f"Port {self.port} on {where} is taken by launch #{other.pk}; leave the port "
                    "empty (the host picks a free one) or choose another."
                )
        return ""

    def gpu_profile(self) -> GpuProfile | None:
        """The kind of GPU this config would run on, from the cards its host last reported.

        None when the host has not reported these cards or they are of different kinds (a launch
        would be refused then, with the reason; the preview just says the limit is unknown).
        """
        if not self.host_id:
            return None
        try:
            indices = self.gpu_index_list
        except ValueError:
            return None
        cards = list(
            Gpu.objects.current().filter(host_id=self.host_id, index__in=indices).select_related("profile")
        )
        profiles = {card.profile for card in cards}
        if len(cards) != len(set(indices)) or len(profiles) != 1:
            return None
        return profiles.pop()

    def detected_limit(self, profile: GpuProfile | None = None) -> DetectedLimit | None:
        """What was learned for this GPU profile, model and memory options (what a launch starts with)."""
        profile = profile or self.gpu_profile()
        if profile is None or not self.model_id:
            return None
        return DetectedLimit.objects.for_config(
            profile=profile,
            model=self.model_id,
            memory_options=self.memory_options(),
            vllm_version=self.host.vllm_version,
        ).first()

    def memory_options(self) -> dict:
        """The options that take part in the memory fingerprint (the vLLM version is added per host)."""
        return {
            **{name: getattr(self, name) for name in MEMORY_OPTION_FIELDS},
            "quantization": self.quantization or None,
            # Only the memory-relevant part counts (gpus.fingerprint).
            "extra_args": self.extra_args_list,
        }

    def snapshot(self) -> dict:
        """A frozen, JSON-ready copy of everything a launch ran with."""
        return {
            "config_id": self.pk,
            "name": self.name,
            "model": self.model.source,
            "revision": self.model.revision,
            "host": self.host.name,
            # The host's vLLM version when the launch was asked for: part of the memory fingerprint.
            "vllm_version": self.host.vllm_version,
            "gpu_indices": self.gpu_index_list,
            "port": self.port,
            "served_model_name": self.served_model_name,
            **self.memory_options(),
            "extra_args": self.extra_args_list,
            "enable_yarn": self.enable_yarn,
            "yarn_factor": float(self.yarn_factor),
            "context_cap": self.context_cap,
        }


class LaunchQuerySet(models.QuerySet["Launch"]):
    def active(self) -> LaunchQuerySet:
        return self.filter(status__in=Launch.Status.active())

    def running(self) -> LaunchQuerySet:
        return self.filter(status=Launch.Status.READY)

    def worker_vanished(self) -> LaunchQuerySet:
        """Launches under way whose host's worker has been silent for LAUNCH_LOST_SECONDS.

        Derived from the host's last heartbeat; a launch for a host that never reported counts from
        its creation.
        """
        cutoff = timezone.now() - timedelta(seconds=settings.LAUNCH_LOST_SECONDS)
        under_way = (Launch.Status.QUEUED, Launch.Status.STARTING, Launch.Status.STOPPING)
        return self.filter(status__in=under_way).filter(
            Q(host__last_heartbeat__lt=cutoff) | Q(host__last_heartbeat__isnull=True, created_at__lt=cutoff)
        )

    def mark_lost(self) -> int:
        """Give every launch whose worker vanished, or that overstayed a bound, its terminal state."""
        marked = self.end_overdue()
        for launch in self.worker_vanished().select_related("host"):
            seen = launch.host.last_heartbeat
            since = f"has not reported since {seen:%Y-%m-%d %H:%M:%S %Z}" if seen else "has never reported"
            reason = (
                f"The GPU worker on {launch.host.name} {since} (more than "
                f"{settings.LAUNCH_LOST_SECONDS} s) while this launch was "
                f"{launch.get_status_display().lower()}; "
                "what became of the server is unknown. A restarted worker stops what it finds of it."
            )
            marked += launch.transition(Launch.Status.LOST, reason=reason)
        return marked

    def record_stack_stopped(self, host_names: list[str], reason: str) -> int:
        """Record the launches of these hosts as ended on purpose, after the whole local stack (its
        GPU workers and their servers) was stopped: running servers "stopped", starts "cancelled".

        Called by the run script once nothing of the stack runs any more, so that the history and
        the fleet are right at once rather than "lost" or "crashed" later. Returns how many changed.
        """
        from gpus.models import Host

        changed = 0
        for launch in self.active().filter(host__name__in=host_names):
            target = (
                Launch.Status.STOPPED if launch.status in {"ready", "stopping"} else Launch.Status.CANCELLED
            )
            changed += launch.transition(target, reason=reason)
        Host.objects.filter(name__in=host_names).update(running_servers=[])
        return changed

    def end_overdue(self) -> int:
        """End launches that stayed queued, starting or stopping longer than their bound (settings).

        Whatever was lost in between (a spec, an event, a stop), no launch waits for ever: queued past
        ``LAUNCH_QUEUED_SECONDS`` fails ("the host never received it"), starting past
        ``LAUNCH_STARTING_SECONDS`` fails, stopping past ``LAUNCH_STOPPING_SECONDS`` ends lost. A
        server still running for such a launch is stopped by its worker at the next heartbeat.
        """
        now = timezone.now()
        ended = 0
        bounds = (
            (Launch.Status.QUEUED, "created_at", settings.LAUNCH_QUEUED_SECONDS, Launch.Status.FAILED),
            (Launch.Status.STARTING, "started_at", settings.LAUNCH_STARTING_SECONDS, Launch.Status.FAILED),
            (
                Launch.Status.STOPPING,
                "stop_requested_at",
                settings.LAUNCH_STOPPING_SECONDS,
                Launch.Status.LOST,
            ),
        )
        for status, since, seconds, target in bounds:
            cutoff = now - timedelta(seconds=seconds)
            overdue = self.filter(status=status).filter(
                Q(**{f"{since}__lt": cutoff}) | Q(**{f"{since}__isnull": True}, created_at__lt=cutoff)
            )
            for launch in overdue.select_related("host"):
                if status == Launch.Status.QUEUED:
                    reason = (
                        f"The host never received it: {launch.host.name} did not take the launch within "
                        f"{seconds} s. Check that its GPU worker runs, then launch again."
                    )
                    outcome = "never_received"
                elif status == Launch.Status.STARTING:
                    reason = f"The server did not become ready within {seconds} s; its worker stops it."
                    outcome = "start_timeout"
                else:
                    reason = (
                        f"{launch.host.name} did not confirm the stop within {seconds} s; its worker stops "
                        "the server when it reports again."
                    )
                    outcome = "stop_unconfirmed"
                ended += launch.transition(target, reason=reason, outcome=outcome)
        return ended

    def reconcile(self, host, report: dict[str, Any]) -> dict[str, Any]:
        """Compare a heartbeat's view of the host's launches with the database and converge.

        ``report["launches"]``: [{launch_id, status, last_seq}] as the worker holds them;
        ``report["received"]``: launch ids whose spec reached it. Returns the directive for the
        worker — ``confirmed`` {id: last seq applied}, ``resend`` {id: first seq missing}, ``stop``
        [ids the site considers ended, or asked to stop and still running there] — after ending here
        what the host does not hold: a stopping launch it runs nothing for is stopped, a starting or
        running one it held before the view was taken and no longer holds is lost, and a queued one
        whose spec never reached it is sent again (ended once its bound passes).
        """
        now = timezone.now()
        grace = timedelta(seconds=settings.RECONCILE_GRACE_SECONDS)
        view = {int(item["launch_id"]): item for item in report.get("launches") or []}
        received = {int(launch_id) for launch_id in report.get("received") or []}
        directive: dict[str, Any] = {"confirmed": {}, "resend": {}, "stop": []}
        rows = {
            launch.pk: launch
            for launch in self.filter(Q(pk__in=list(view)) | Q(host=host, status__in=Launch.Status.active()))
        }
        for launch_id, item in view.items():
            launch = rows.get(launch_id)
            if launch is None or launch.host_id != host.pk:
                # Deleted, or not this host's: nothing to apply; whatever runs for it must stop.
                directive["confirmed"][launch_id] = int(item.get("last_seq") or 0)
                directive["stop"].append(launch_id)
                continue
            if item.get("unconfirmed", 1):
                directive["confirmed"][launch_id] = launch.last_seq
            quiet = launch.last_event_at is None or launch.last_event_at < now - grace
            if int(item.get("last_seq") or 0) > launch.last_seq and quiet:
                directive["resend"][launch_id] = launch.last_seq + 1
            running = item.get("status") in ("starting", "ready", "restarting")
            stop_unheard = (
                launch.status == Launch.Status.STOPPING
                and (launch.stop_requested_at or launch.created_at) < now - grace
            )
            if running and (launch.is_terminal or stop_unheard):
                # Ended here, or a stop that never reached the host (the broker was away): stop it.
                directive["stop"].append(launch_id)
        # The view is as of the worker's clock when it was sent; the report may have waited in the queue.
        seen_at = parse_datetime(report.get("sent_at") or "") or now
        for launch_id, launch in rows.items():
            if launch_id in view or launch.host_id != host.pk or launch.is_terminal:
                continue
            if launch.status == Launch.Status.QUEUED:
                if launch_id not in received and launch.spec and launch.created_at < now - grace:
                    # Lost on the way (a broker restart): send it again; the host refuses duplicates.
                    launch.send_spec()
                continue
            # started_at is the worker's own time of its last start: only a launch it held well before
            # this view was taken, and that is missing from it, was really forgotten.
            if launch.started_at is None or launch.started_at > seen_at - grace:
                continue
            if launch.status == Launch.Status.STOPPING:
                launch.transition(
                    Launch.Status.STOPPED, reason=f"Stopped: {host.name} runs no server for this launch."
                )
            else:
                launch.transition(
                    Launch.Status.LOST,
                    reason=f"The GPU worker on {host.name} no longer holds this launch (it was "
                    f"{launch.get_status_display().lower()}); what became of its server is unknown.",
                    outcome="host_forgot",
                )
        return directive

    def start(self, config: LaunchConfig, user, kind: str = "launch") -> Launch:
        """Admit a launch of ``config`` by ``user`` (``launches.admission.admit``): the checks, the row
        and its GPU lease, the spec built from the row, sent to the host's queue at commit.

        The known limit for this GPU profile, model and memory fingerprint is looked up here, so the
        GPU host needs no database. Re-detect ignores (and later replaces) the known limit. Raises
        ``LaunchRefused`` with the reason in words.
        """
        from launches.admission import admit

        return admit(config, user, kind)


def snapshot_fingerprint(snapshot: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The memory fingerprint (``gpus.fingerprint.memory_fingerprint``: digest, fields) of a launch's
    config snapshot: its memory options, extra arguments and the vLLM version it was asked for under."""
    return memory_fingerprint(
        {
            **MemoryOptions.from_dict(snapshot).to_dict(),
            "extra_args": snapshot.get("extra_args") or [],
            "vllm_version": snapshot.get("vllm_version"),
        }
    )


class Launch(LaunchEventsMixin, models.Model):
    """One request to start a server, and everything that happened to it. Never edited by hand."""

    class Kind(models.TextChoices):
        LAUNCH = "launch", "Launch"
        TEST_YARN = "test_yarn", "Test YaRN"
        REDETECT = "redetect", "Re-detect limit"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        STARTING = "starting", "Starting"
        READY = "ready", "Running"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"
        CRASHED = "crashed", "Crashed"
        CANCELLED = "cancelled", "Cancelled"
        LOST = "lost", "Lost"

        @classmethod
        def terminal(cls) -> frozenset[str]:
            return frozenset({cls.STOPPED, cls.FAILED, cls.CRASHED, cls.CANCELLED, cls.LOST})

        @classmethod
        def active(cls) -> frozenset[str]:
            return frozenset({cls.QUEUED, cls.STARTING, cls.READY, cls.STOPPING})

    # Allowed transitions, written next to the states: from -> the states it may move to.
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.QUEUED: frozenset({Status.STARTING, Status.FAILED, Status.CANCELLED, Status.LOST}),
        Status.STARTING: frozenset(
            {Status.READY, Status.FAILED, Status.CANCELLED, Status.LOST, Status.STOPPING}
        ),
        # READY → STARTING: a server kept up that crashed is being started again.
        Status.READY: frozenset(
            {Status.STARTING, Status.STOPPING, Status.STOPPED, Status.CRASHED, Status.LOST}
        ),
        Status.STOPPING: frozenset({Status.STOPPED, Status.CANCELLED, Status.FAILED, Status.LOST}),
        Status.STOPPED: frozenset(),
        Status.FAILED: frozenset(),
        Status.CRASHED: frozenset(),
        Status.CANCELLED: frozenset(),
        Status.LOST: frozenset(),
    }

    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.LAUNCH)
    config = models.ForeignKey(
        LaunchConfig, on_delete=models.SET_NULL, null=True, blank=True, related_name="launches"
    )
    config_snapshot = models.JSONField(help_text="The config exactly as this launch ran with it.")
    host = models.ForeignKey("gpus.Host", on_delete=models.PROTECT, related_name="launches")
    model = models.ForeignKey("gpus.ModelSpec", on_delete=models.PROTECT, related_name="launches")
    gpu_profile = models.ForeignKey(
        "gpus.GpuProfile", on_delete=models.PROTECT, null=True, blank=True, related_name="launches"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="launches"
    )
    stopped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who asked for the stop; empty when the launch ended by itself or by the run script.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    reason = models.TextField(blank=True, help_text="Why the launch ended as it did, in plain words.")
    outcome = models.CharField(max_length=40, blank=True, help_text="The verdict of the last attempt.")
    spec = models.JSONField(default=dict, blank=True, help_text="What was sent to the GPU host (no secrets).")
    fingerprint = models.CharField(max_length=64, blank=True)
    known_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Limit known before launching."
    )
    saved_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The learned length saved for this GPU, model and options when the launch was asked "
        "for, also when it was not started from (a re-detect, a floor below the wanted length).",
    )
    saved_limit_is_ceiling = models.BooleanField(
        null=True, blank=True, help_text="Whether that length was a measured ceiling or only fitted."
    )
    wanted_context = models.PositiveIntegerField(null=True, blank=True)
    context_length = models.PositiveIntegerField(null=True, blank=True, help_text="The length it serves.")
    learned_limit = models.PositiveIntegerField(null=True, blank=True)
    kv_capacity_tokens = models.PositiveIntegerField(null=True, blank=True)
    server_url = models.CharField(max_length=300, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    last_seq = models.PositiveIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    # db_default too: rows written by plain SQL (bulk loads) get the value as well.
    restarts = models.PositiveSmallIntegerField(
        default=0, db_default=0, help_text="Crashes restarted (keep the server up)."
    )
    restart_limit = models.PositiveSmallIntegerField(default=0, db_default=0)
    next_restart_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = LaunchQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "launches"
        permissions = [("operate_launch", "Can launch, stop, test YaRN and re-detect limits")]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="launch_status_created"),
            models.Index(fields=["host", "-created_at"], name="launch_host_created"),
            models.Index(fields=["model", "-created_at"], name="launch_model_created"),
            models.Index(fields=["gpu_profile", "-created_at"], name="launch_profile_created"),
            models.Index(fields=["requested_by", "-created_at"], name="launch_user_created"),
            models.Index(fields=["outcome", "-created_at"], name="launch_outcome_created"),
            # The history's "model + who" filter, and the metrics' launches by kind and outcome.
            models.Index(fields=["model", "requested_by", "-created_at"], name="launch_model_user_created"),
            models.Index(fields=["kind", "outcome"], name="launch_kind_outcome"),
            # The history's own order: a deep admin page skips through this index alone.
            models.Index(fields=["-created_at", "-id"], name="launch_created_id"),
        ]

    def __str__(self) -> str:
        """ "#1 Qwen3-8B-like on desk-3060": the config's name, and the host unless the name says it."""
        name = str(self.config_snapshot.get("name") or self.model)
        host = self.host.name if self.host_id else ""
        return f"#{self.pk} {name}" if not host or host in name else f"#{self.pk} {name} on {host}"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.Status.terminal()

    @property
    def vllm_version(self) -> str:
        """The host's vLLM version when the launch was asked for (its snapshot); for a launch whose
        snapshot does not say, the host's now ("" when unknown)."""
        return self.config_snapshot.get("vllm_version") or self.host.vllm_version or ""

    def memory_fingerprint_fields(self) -> dict[str, Any]:
        """The options this launch's memory fingerprint is computed from (``snapshot_fingerprint``)."""
        return snapshot_fingerprint({**self.config_snapshot, "vllm_version": self.vllm_version})[1]

    @property
    def can_be_stopped(self) -> bool:
        """Something is there to stop: queued, starting or running (not already stopping or ended)."""
        return self.status in {self.Status.QUEUED, self.Status.STARTING, self.Status.READY}

    @classmethod
    def sources_of(cls, target: str) -> list[str]:
        return [source for source, targets in cls.TRANSITIONS.items() if target in targets]

    def transition(self, target: str, **fields) -> bool:
        """Move to ``target`` if the current state allows it; a conditional UPDATE, so it is idempotent."""
        if target in self.Status.terminal():
            fields.setdefault("ended_at", timezone.now())
            if target in {self.Status.CANCELLED, self.Status.LOST}:
                # Why it ended, not the last attempt's verdict (a lost server may have been ready).
                fields.setdefault("outcome", str(target))
        with transaction.atomic():
            changed = Launch.objects.filter(pk=self.pk, status__in=self.sources_of(target)).update(
                status=target, **fields
            )
            if changed and target in self.Status.terminal():
                # An ended launch holds no card and no attempt stays "running…".
                GpuLease.objects.filter(launch_id=self.pk).delete()
                LaunchAttempt.objects.filter(launch_id=self.pk, ended_at__isnull=True).update(
                    ended_at=fields["ended_at"]
                )
                LaunchAttempt.objects.filter(launch_id=self.pk, outcome="").update(outcome="interrupted")
                if "outcome" not in fields:
                    # Every ended launch has an outcome code: the last attempt's, else how it ended.
                    Launch.objects.filter(pk=self.pk, outcome="").update(outcome=str(target))
        if changed:
            self.status = target
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(changed)

    def send_spec(self) -> None:
        """Send the launch spec to its host's queue; a spec older than its bound is dropped there."""
        send_to_host(
            RUN_LAUNCH_TASK,
            self.host.queue,
            [self.spec],
            task_id=self.task_id,
            expires=float(settings.LAUNCH_QUEUED_SECONDS),
        )

    def request_stop(self, user=None) -> None:
        """Ask the host to stop the server (or abandon a start in progress)."""
        if self.is_terminal:
            raise LaunchRefused(f"Launch #{self.pk} has already ended ({self.get_status_display()}).")
        by = user if getattr(user, "is_authenticated", False) else None
        who = f" by {by.get_username()}" if by else ""
        if self.status == self.Status.QUEUED:
            # Not picked up yet: cancel here; the worker skips specs of cancelled launches.
            self.transition(
                self.Status.CANCELLED, reason=f"Cancelled{who} before a GPU host picked it up.", stopped_by=by
            )
        else:
            self.transition(self.Status.STOPPING, stopped_by=by, stop_requested_at=timezone.now())
        # If the broker is away the stop is not lost: the next heartbeat shows what still runs.
        transaction.on_commit(
            lambda: send_to_host(STOP_LAUNCH_TASK, self.host.queue, [self.pk, self.task_id]), robust=True
        )

    def _by(self) -> str:
        return f" by {self.stopped_by.get_username()}" if self.stopped_by_id else ""

    def yarn_test_verdict(self, served: int) -> str:
        """The YaRN test's result in words, e.g. "YaRN ×2.0 on NVIDIA GeForce RTX 3060 (12 GiB): vLLM came up
        with 27,168 tokens; the factor gains nothing here (the native context is 40,960)."."""
        factor = f"{float((self.spec or {}).get('yarn_factor') or 1.0):.1f}"
        native = (self.spec or {}).get("native_context") or self.model.native_context
        profile = self.gpu_profile
        gpu = profile.display_name if profile is not None else self.host.name
        said = f"YaRN ×{factor} on {gpu}: vLLM came up with {served:,} tokens"
        if not native:
            return f"{said}."
        if served <= native:
            return f"{said}; the factor gains nothing here (the native context is {native:,})."
        return f"{said}, {served / native:.1f}× the native {native:,}."

    @property
    def saved_limit_summary(self) -> str:
        """What was known of this GPU's limit when the launch was asked for, as the live page says it:
        "saved limit 27,168 tokens", "re-detects the saved limit of 27,168 tokens", "at least 40,960
        tokens known to fit", or "no saved limit (first detection)"."""
        if self.known_limit and self.kind != self.Kind.REDETECT:
            return f"saved limit {self.known_limit:,} tokens"
        if not self.saved_limit:
            return "no saved limit (first detection)"
        if self.saved_limit_is_ceiling:
            saved = f"the saved limit of {self.saved_limit:,} tokens"
        else:
            saved = f"the saved floor: at least {self.saved_limit:,} tokens fit"
        if self.kind == self.Kind.REDETECT:
            return f"re-detects; replaces {saved}"
        return f"{saved[4:]}; the launch measures how much more fits"

    @property
    def restart_summary(self) -> str:
        """ "restarted 2 of 3 times; next try at 12:00:05" for the live page and the fleet, or ''."""
        if not self.restarts:
            return ""
        text = f"restarted {self.restarts} of {self.restart_limit} times"
        if (
            self.next_restart_at
            and self.status == self.Status.STARTING
            and self.next_restart_at > timezone.now()
        ):
            text += f"; next try at {timezone.localtime(self.next_restart_at):%H:%M:%S}"
        return text

    def summary(self) -> tuple[str, str]:
        """(kind, sentence): where the launch stands, as the live page shows it.

        One state at a time: serving (with its URL and context), stopping, or how it ended
        (stopped, failed, cancelled, crashed, lost) with the reason. kind is the status for the
        page's colours; "" while it is queued or starting.
        """
        status = self.status
        if status == self.Status.READY:
            served = f"{self.context_length:,}" if self.context_length else "an unknown number of"
            return "ready", f"Serving at {self.server_url} with a context of {served} tokens."
        if status == self.Status.STOPPING:
            return "stopping", f"Stopping{self._by()}…"
        if status == self.Status.STOPPED:
            return "stopped", with_signal_names(self.reason) or "Stopped."
        if status in {self.Status.QUEUED, self.Status.STARTING}:
            return "", ""
        label = self.get_status_display()
        reason = with_signal_names(self.reason or "")
        if reason.startswith(label):
            return status, reason
        return status, f"{label}: {reason}" if reason else f"{label}."

    def public_url(self, worker_url: str) -> str:
        """The worker knows its port; clients reach the host by the address the site has for it."""
        port = urlsplit(worker_url).port or self.config_snapshot.get("port")
        return f"http://{self.host.reachable_address}:{port}" if port else worker_url

    @property
    def time_to_ready(self) -> float | None:
        if self.ready_at and self.created_at:
            return (self.ready_at - self.created_at).total_seconds()
        return None


class GpuLeaseQuerySet(models.QuerySet["GpuLease"]):
    def take(self, launch: Launch, indices: list[int]) -> None:
        """Lease the cards to ``launch`` (inside the transaction that created it).

        A lease whose launch has ended is free and removed first; the unique card key makes a
        concurrent request for a card already leased fail with ``IntegrityError``.
        """
        self.filter(
            host_id=launch.host_id, gpu_index__in=indices, launch__status__in=Launch.Status.terminal()
        ).delete()
        self.bulk_create(
            [GpuLease(host_id=launch.host_id, gpu_index=index, launch=launch) for index in indices]
        )


class GpuLease(models.Model):
    """One card of one host held by one active launch: the database's one-launch-per-GPU rule."""

    host = models.ForeignKey("gpus.Host", on_delete=models.CASCADE, related_name="+")
    gpu_index = models.PositiveSmallIntegerField()
    launch = models.ForeignKey(Launch, on_delete=models.CASCADE, related_name="leases")
    taken_at = models.DateTimeField(default=timezone.now)

    objects = GpuLeaseQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "gpu_index"], name="gpulease_one_launch_per_card")
        ]

    def __str__(self) -> str:
        return f"GPU {self.gpu_index} of host {self.host_id} → launch #{self.launch_id}"


class RefusedEvent(models.Model):
    """An event from a GPU worker that did not parse or could not be applied, kept with the reason."""

    launch = models.ForeignKey(Launch, on_delete=models.CASCADE, related_name="refused_events")
    seq = models.IntegerField(null=True, blank=True)
    kind = models.CharField(max_length=40, blank=True)
    data = models.JSONField(default=dict, blank=True)
    reason = models.TextField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.launch_id}.{self.seq} {self.kind} refused"


class LaunchAttempt(models.Model):
    """One start of vLLM within a launch: its exact argv and what came of it."""

    launch = models.ForeignKey(Launch, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    requested_len = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty when 'auto' was asked."
    )
    requested_auto = models.BooleanField(default=False)
    argv = models.JSONField(default=list)
    outcome = models.CharField(max_length=40, blank=True)
    parsed_len = models.PositiveIntegerField(null=True, blank=True, help_text="The number vLLM printed.")
    exit_code = models.IntegerField(null=True, blank=True)
    stopped_by_launcher = models.BooleanField(
        default=False, help_text="The launcher stopped vLLM on its verdict; exit_code is its answer to that."
    )
    message = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["launch", "number"]
        constraints = [models.UniqueConstraint(fields=["launch", "number"], name="attempt_unique_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of launch #{self.launch_id}"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None


class LaunchEvent(models.Model):
    """A numbered report from the GPU host; applied once, in order."""

    launch = models.ForeignKey(Launch, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=40)
    data = models.JSONField(default=dict)
    emitted_at = models.DateTimeField(null=True, blank=True, help_text="Clock of the GPU host.")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["launch", "seq"]
        constraints = [models.UniqueConstraint(fields=["launch", "seq"], name="event_unique_seq")]

    def __str__(self) -> str:
        return f"#{self.launch_id}.{self.seq} {self.kind}"


class LaunchConfigChange(models.Model):
    """One field of a launch config changed by one user: the audit trail shown on the config page.

    Written by the admin when a config is saved (compared with the row in the database, not with the
    form's initial values, so a concurrent edit is recorded against what was really replaced).
    """

    # The history outlives its config: a deleted config leaves its changes, under the name it had.
    config = models.ForeignKey(
        LaunchConfig, on_delete=models.SET_NULL, null=True, blank=True, related_name="changes"
    )
    config_name = models.CharField(max_length=100, blank=True, help_text="The config's name when changed.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    field = models.CharField(max_length=100)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        verbose_name = "config change"
        indexes = [models.Index(fields=["config", "-changed_at"], name="configchange_config_changed")]

    def __str__(self) -> str:
        """ "yarn_factor changed by alice at 2026-11-30 06:10" ("by the system" without a user)."""
        who = self.user.get_username() if self.user_id else "the system"
        return f"{self.field} changed by {who} at {timezone.localtime(self.changed_at):%Y-%m-%d %H:%M}"

    @classmethod
    def tracked_fields(cls) -> list[str]:
        """Every editable field of a config; bookkeeping fields are not changes an operator makes."""
        skip = {"id", "created_by", "created_at", "updated_at"}
        return [f.name for f in LaunchConfig._meta.concrete_fields if f.name not in skip]

    @classmethod
    def display_value(cls, config: LaunchConfig, field_name: str) -> str:
        value = getattr(config, field_name)
        if value is None:
            return "empty (picked by the host)" if field_name == "port" else ""
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)

    @classmethod
    def record(cls, before: LaunchConfig, after: LaunchConfig, user) -> list[LaunchConfigChange]:
        """Store one row per field whose shown value differs between the saved row and the new one."""
        now = timezone.now()
        rows = []
        for name in cls.tracked_fields():
            old, new = cls.display_value(before, name), cls.display_value(after, name)
            if old != new:
                rows.append(
                    cls(
                        config=after,
                        config_name=after.name,
                        user=user,
                        changed_at=now,
                        field=name,
                        old_value=old,
                        new_value=new,
                    )
                )
        return cls.objects.bulk_create(rows)
