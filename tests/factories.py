"""The suite's rows, made one way: users, hosts, GPU profiles, cards, models, launch configs, launches
with their attempts and events, and learned limits.

Each factory fills what a test does not care about with a valid value (unique names, a host online
on vLLM 0.32.0, a model with a native context of 40,960) and takes any field as a keyword. The
fixtures in the conftest files (personas, the UI's small fleet) call these.
"""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
import time
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from gpus.fingerprint import memory_fingerprint
from gpus.models import DetectedLimit, Gpu, GpuProfile, Host, ModelSpec
from launches.models import Launch, LaunchAttempt, LaunchConfig, LaunchConfigChange, LaunchEvent
from launches.permissions import OPERATORS, VIEWERS

PASSWORD = "correct horse battery staple"

_counter = itertools.count(1)


def ensure_roles() -> None:
    """Build the role groups as the data migrations do.

    Transactional tests (workers, browser) empty every table afterwards, these groups included; a
    database reused after them may lack the groups.
    """
    roles_migration = importlib.import_module("launches.migrations.0002_roles")
    view = [(app, f"view_{model}") for app, models in roles_migration.VIEW_MODELS.items() for model in models]
    view.append(("launches", "view_launchconfigchange"))
    view.append(("launches", "view_refusedevent"))

    def permissions(pairs: list[tuple[str, str]]) -> list[Permission]:
        return [Permission.objects.get(content_type__app_label=app, codename=code) for app, code in pairs]

    Group.objects.get_or_create(name=VIEWERS)[0].permissions.set(permissions(view))
    operators = Group.objects.get_or_create(name=OPERATORS)[0]
    operators.permissions.set(permissions(view + roles_migration.OPERATOR_EXTRA))


def make_user(
    username: str, group: str | None = None, *, staff: bool = True, superuser: bool = False
) -> User:
    """A user who logs in with ``PASSWORD``, in ``group`` (``OPERATORS``, ``VIEWERS``) when given."""
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=staff)
    if superuser:
        user.is_superuser = True
        user.save(update_fields=["is_superuser"])
    if group:
        if not Group.objects.filter(name=group).exists():
            ensure_roles()
        user.groups.add(Group.objects.get(name=group))
    return user


def make_host(name: str | None = None, **fields) -> Host:
    """A host whose worker reported just now, on vLLM 0.32.0 unless ``vllm_version`` says otherwise."""
    fields.setdefault("last_heartbeat", timezone.now())
    fields.setdefault("vllm_version", "0.32.0")
    return Host.objects.create(name=name or f"host-{next(_counter)}", **fields)


def make_profile(
    name: str = "NVIDIA GeForce RTX 3060", memory_total_mib: int = 12288, **fields
) -> GpuProfile:
    """The GPU profile of that name and memory (MiB), created once."""
    return GpuProfile.objects.get_or_create(name=name, memory_total_mib=memory_total_mib, **fields)[0]


def make_gpu(host: Host, index: int = 0, profile: GpuProfile | None = None, **fields) -> Gpu:
    """Card ``index`` of ``host``, an RTX 3060 (12 GiB) unless ``profile`` says otherwise."""
    fields.setdefault("uuid", f"GPU-{host.name}-{index}-{next(_counter)}")
    fields.setdefault("driver_version", "550.54.15")
    return Gpu.objects.create(host=host, index=index, profile=profile or make_profile(), **fields)


def make_model(source: str = "Qwen/Qwen3-8B-AWQ", native_context: int | None = 40960, **fields) -> ModelSpec:
    """A model as if its config.json had been read (Qwen3-8B's shape), without its full facts: its
    lengths are the stored ones under every vLLM version. ``native_context=None``: not read yet."""
    if native_context is not None:
        fields.setdefault("num_layers", 36)
        fields.setdefault("num_kv_heads", 8)
        fields.setdefault("head_dim", 128)
    return ModelSpec.objects.create(source=source, native_context=native_context, **fields)


def demo_model() -> ModelSpec:
    """The demo model (the stand-in's Qwen3-8B-like folder) with its config.json read, once."""
    from tests.vllm.conftest import DEMO_MODEL

    model, _ = ModelSpec.objects.get_or_create(source=str(DEMO_MODEL), revision="")
    assert model.refresh_facts(), model.facts_error
    return model


def make_config(name: str | None = None, **fields) -> LaunchConfig:
    """A launch config; a new host and model unless given, YaRN off."""
    if "host" not in fields:
        fields["host"] = make_host()
    if "model" not in fields:
        fields["model"] = make_model(source=f"org/model-{next(_counter)}")
    fields.setdefault("yarn_factor", Decimal("1.0"))
    return LaunchConfig.objects.create(name=name or f"config-{next(_counter)}", **fields)


def make_config_change(
    config: LaunchConfig, field: str, old_value: str, new_value: str, **fields
) -> LaunchConfigChange:
    """One field of ``config`` changed, as the admin records it (``user``, ``changed_at`` optional)."""
    fields.setdefault("config_name", config.name)
    return LaunchConfigChange.objects.create(
        config=config, field=field, old_value=old_value, new_value=new_value, **fields
    )


def make_launch(config: LaunchConfig, user: User | None = None, **fields) -> Launch:
    """A launch row as the site writes it, without the checks or a spec sent, in whatever state the
    test gives (``status=...``); what the control worker writes later is up to the test."""
    values = {
        "config": config,
        "config_snapshot": config.snapshot(),
        "host": config.host,
        "model": config.model,
        "gpu_profile": config.gpu_profile(),
        "requested_by": user,
        "wanted_context": config.wanted_context(),
        **fields,
    }
    return Launch.objects.create(**values)


def make_attempt(launch: Launch, number: int = 1, **fields) -> LaunchAttempt:
    return LaunchAttempt.objects.create(launch=launch, number=number, **fields)


def make_event(
    launch: Launch, seq: int, kind: str, data: dict[str, Any] | None = None, **fields
) -> LaunchEvent:
    return LaunchEvent.objects.create(launch=launch, seq=seq, kind=kind, data=data or {}, **fields)


def learn_limit(
    config: LaunchConfig, profile: GpuProfile, tokens: int = 26624, learned_from: str = "refusal", **fields
) -> DetectedLimit:
    """The limit learned for ``config``'s model and memory options on ``profile``: ``tokens`` as a
    ceiling ("refusal", "auto_fit") or a floor ("fits")."""
    fingerprint, fingerprint_fields = memory_fingerprint(
        {**config.memory_options(), "vllm_version": config.host.vllm_version}
    )
    return DetectedLimit.objects.create(
        profile=profile,
        model=config.model,
        fingerprint=fingerprint,
        fingerprint_fields=fingerprint_fields,
        vllm_version=config.host.vllm_version,
        max_model_len=tokens,
        learned_from=learned_from,
        **fields,
    )


def simulate_refusal_then_ready(launch: Launch, base: dt.datetime | None = None) -> Launch:
    """Write the events and attempts of a first detection: refusal at 40,960, ready at 26,624."""
    base = base or timezone.now()
    argv = ["vllm", "serve", "Qwen/Qwen3-8B-AWQ", "--port", "8000"]
    events = [
        (
            "attempt_started",
            {"attempt": 1, "requested_len": 40960, "argv": [*argv, "--max-model-len", "40960"]},
        ),
        (
            "log",
            {
                "attempt": 1,
                "lines": ["INFO Loading weights", "ERROR ... estimated maximum model length is 26624"],
            },
        ),
        (
            "attempt_finished",
            {
                "attempt": 1,
                "outcome": "context_too_long",
                "parsed_len": 26624,
                "exit_code": 1,
                "message": "KV cache too small",
                "log_tail": "ERROR ... estimated maximum model length is 26624",
                "started_at": base.isoformat(),
                "ended_at": (base + dt.timedelta(seconds=31)).isoformat(),
            },
        ),
        (
            "attempt_started",
            {"attempt": 2, "requested_len": 26624, "argv": [*argv, "--max-model-len", "26624"]},
        ),
        ("log", {"attempt": 2, "lines": ["INFO Application startup complete."]}),
        (
            "attempt_finished",
            {
                "attempt": 2,
                "outcome": "ready",
                "parsed_len": 26624,
                "exit_code": None,
                "message": "",
                "log_tail": "INFO Application startup complete.",
                "started_at": (base + dt.timedelta(seconds=32)).isoformat(),
                "ended_at": (base + dt.timedelta(seconds=70)).isoformat(),
            },
        ),
        ("limit_learned", {"max_model_len": 26624, "learned_from": "refusal", "kv_capacity_tokens": 26800}),
        (
            "ready",
            {
                "url": "http://desk-3060:8000/v1",
                "max_model_len": 26624,
                "kv_capacity_tokens": 26800,
                "pid": 4242,
                "pgid": 4242,
            },
        ),
    ]
    LaunchEvent.objects.bulk_create(
        LaunchEvent(launch=launch, seq=seq, kind=kind, data=data)
        for seq, (kind, data) in enumerate(events, 1)
    )
    # The attempt rows the control worker writes from those events.
    started = {data["attempt"]: data for kind, data in events if kind == "attempt_started"}
    LaunchAttempt.objects.bulk_create(
        LaunchAttempt(
            launch=launch,
            number=data["attempt"],
            requested_len=started[data["attempt"]]["requested_len"],
            argv=started[data["attempt"]]["argv"],
            outcome=data["outcome"],
            parsed_len=data["parsed_len"],
            exit_code=data["exit_code"],
            log_tail=data["log_tail"],
            started_at=dt.datetime.fromisoformat(data["started_at"]),
            ended_at=dt.datetime.fromisoformat(data["ended_at"]),
        )
        for kind, data in events
        if kind == "attempt_finished"
    )
    Launch.objects.filter(pk=launch.pk).update(
        status=Launch.Status.READY,
        outcome="ready",
        context_length=26624,
        learned_limit=26624,
        server_url="http://desk-3060:8000/v1",
        ready_at=base + dt.timedelta(seconds=70),
        last_seq=len(events),
    )
    launch.refresh_from_db()
    return launch


# --- events as a GPU worker sends them (kind, data), for ``feed`` ---------------------------------


def feed(launch: Launch, *events: tuple[str, dict]) -> Launch:
    """Apply ``events`` ((kind, data) pairs) to ``launch`` after its last one, as the control worker
    applies a GPU worker's reports (``Launch.apply_event``), and return the row as they left it."""
    start = launch.last_seq
    for offset, (kind, data) in enumerate(events, 1):
        launch.apply_event(start + offset, kind, data)
    launch.refresh_from_db()
    return launch


def accepted(launch: Launch) -> tuple[str, dict]:
    return "accepted", {"host": launch.host.name}


def started(attempt: int, requested) -> tuple[str, dict]:
    argv = ["vllm", "serve", "Qwen/Qwen3-8B-AWQ", "--max-model-len", str(requested)]
    return "attempt_started", {"attempt": attempt, "requested_len": requested, "argv": argv}


def finished(attempt: int, outcome: str, at: float | None = None, **data) -> tuple[str, dict]:
    """An attempt_finished event of an attempt that started at ``at`` (Unix seconds; now when None) and
    ended 12.5 s later."""
    at = time.time() if at is None else at
    return "attempt_finished", {
        "attempt": attempt,
        "outcome": outcome,
        "started_at": at,
        "ended_at": at + 12.5,
        "log_tail": [],
        **data,
    }


def ready_at(served: int) -> tuple[str, dict]:
    return "ready", {"url": "http://127.0.0.1:8101/v1", "max_model_len": served, "pid": 1, "pgid": 1}
