"""Personas and a small fleet for the admin UI tests.

Three personas take part in every permission test: an operator, a viewer, and an outsider (staff,
but in no role). A launch's progress is simulated by writing the rows the control worker writes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from gpus.fingerprint import memory_fingerprint
from gpus.models import DetectedLimit, Gpu, GpuProfile, Host, ModelSpec
from launches.models import Launch, LaunchAttempt, LaunchConfig, LaunchEvent
from tests.conftest import PASSWORD  # noqa: F401  (the browser tests log in with it)


@pytest.fixture
def personas(operator, viewer, outsider) -> dict[str, User]:
    return {"operator": operator, "viewer": viewer, "outsider": outsider}


@pytest.fixture
def host(db) -> Host:
    return Host.objects.create(name="desk-3060", vllm_version="0.10.1", last_heartbeat=timezone.now())


@pytest.fixture
def profile(db) -> GpuProfile:
    return GpuProfile.objects.create(name="NVIDIA GeForce RTX 3060", memory_total_mib=12288)


@pytest.fixture
def gpu(host, profile) -> Gpu:
    return Gpu.objects.create(host=host, index=0, uuid="GPU-1111", profile=profile, memory_free_mib=11800)


@pytest.fixture
def model_spec(db) -> ModelSpec:
    return ModelSpec.objects.create(source="Qwen/Qwen3-8B-AWQ", native_context=40960)


@pytest.fixture
def config(model_spec, host, gpu, operator) -> LaunchConfig:
    return LaunchConfig.objects.create(
        name="qwen-desk", model=model_spec, host=host, quantization="awq", created_by=operator
    )


def learn_limit(
    config: LaunchConfig, profile: GpuProfile, tokens: int = 26624, learned_from: str = "refusal"
) -> DetectedLimit:
    fingerprint, fields = memory_fingerprint(
        {**config.memory_options(), "vllm_version": config.host.vllm_version}
    )
    return DetectedLimit.objects.create(
        profile=profile,
        model=config.model,
        fingerprint=fingerprint,
        fingerprint_fields=fields,
        vllm_version=config.host.vllm_version,
        max_model_len=tokens,
        learned_from=learned_from,
    )


def form_data(config: LaunchConfig, **changes) -> dict:
    """The config change form as a browser would post it, with some fields changed."""
    data = {
        "name": config.name,
        "model": config.model_id,
        "host": config.host_id,
        "gpu_indices": config.gpu_indices,
        "port": config.port or "",
        "served_model_name": config.served_model_name,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
        "quantization": config.quantization,
        "kv_cache_dtype": config.kv_cache_dtype,
        "tensor_parallel_size": config.tensor_parallel_size,
        "max_num_batched_tokens": config.max_num_batched_tokens or "",
        "extra_args": config.extra_args,
        "yarn_factor": str(config.yarn_factor),
        "context_cap": config.context_cap or "",
        "changes-TOTAL_FORMS": "0",
        "changes-INITIAL_FORMS": "0",
        "changes-MIN_NUM_FORMS": "0",
        "changes-MAX_NUM_FORMS": "0",
    }
    if config.enforce_eager:
        data["enforce_eager"] = "on"
    if config.enable_yarn:
        data["enable_yarn"] = "on"
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


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
    LaunchAttempt.objects.bulk_create(
        [
            LaunchAttempt(
                launch=launch,
                number=1,
                requested_len=40960,
                argv=events[0][1]["argv"],
                outcome="context_too_long",
                parsed_len=26624,
                exit_code=1,
                log_tail="ERROR ... estimated maximum model length is 26624",
                started_at=base,
                ended_at=base + dt.timedelta(seconds=31),
            ),
            LaunchAttempt(
                launch=launch,
                number=2,
                requested_len=26624,
                argv=events[3][1]["argv"],
                outcome="ready",
                parsed_len=26624,
                log_tail="INFO Application startup complete.",
                started_at=base + dt.timedelta(seconds=32),
                ended_at=base + dt.timedelta(seconds=70),
            ),
        ]
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


YARN_OK = Decimal("2.0")


def make_launch(config: LaunchConfig, user: User | None = None, **fields) -> Launch:
    """A launch row as the site writes it, in whatever state the test needs."""
    profile = config.gpu_profile()
    values = {
        "config": config,
        "config_snapshot": config.snapshot(),
        "host": config.host,
        "model": config.model,
        "gpu_profile": profile,
        "requested_by": user,
        "wanted_context": config.wanted_context(),
        **fields,
    }
    return Launch.objects.create(**values)


@pytest.fixture
def launch(config, operator, profile) -> Launch:
    return simulate_refusal_then_ready(make_launch(config, operator))


@pytest.fixture
def live_stack(live_server, tmp_path):
    """Redis, a control worker and a GPU worker (RTX 3060 playing vLLM 0.11.0 with the stand-in) on
    this test's database, and a launch config for that host: the first launch refuses the native
    context once and starts at the number vLLM printed."""
    from types import SimpleNamespace

    from aifred_site.celery import app
    from tests.workers.conftest import (
        CONTROL_QUEUE,
        RTX_3060,
        TEST_REDIS_URL,
        Fleet,
        database_url_for_subprocesses,
    )
    from tests.workers.helpers import config_for, demo_model

    previous = app.conf.broker_url, app.conf.task_default_queue
    app.conf.broker_url, app.conf.task_default_queue = TEST_REDIS_URL, CONTROL_QUEUE
    fleet = Fleet(tmp_path, database_url_for_subprocesses())
    try:
        fleet.control_worker()
        fleet.gpu_worker("ui-3060", RTX_3060, "0.11.0")
        config = config_for("ui-3060", demo_model())
        yield SimpleNamespace(config=config, fleet=fleet)
    finally:
        fleet.close()
        app.conf.broker_url, app.conf.task_default_queue = previous
