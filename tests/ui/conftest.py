"""Personas and a small fleet for the admin UI tests.

Three personas take part in every permission test: an operator, a viewer, and an outsider (staff,
but in no role). A launch's progress is simulated by writing the rows the control worker writes.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from gpus.models import Gpu, GpuProfile, Host, ModelSpec
from launches.models import Launch, LaunchConfig
from tests.factories import (
    make_config,
    make_gpu,
    make_host,
    make_launch,
    make_model,
    make_profile,
    simulate_refusal_then_ready,
)


@pytest.fixture
def personas(operator, viewer, outsider) -> dict[str, User]:
    return {"operator": operator, "viewer": viewer, "outsider": outsider}


@pytest.fixture
def host(db) -> Host:
    return make_host("desk-3060", vllm_version="0.10.1")


@pytest.fixture
def profile(db) -> GpuProfile:
    return make_profile()


@pytest.fixture
def gpu(host, profile) -> Gpu:
    return make_gpu(host, 0, profile, uuid="GPU-1111", memory_free_mib=11800)


@pytest.fixture
def model_spec(db) -> ModelSpec:
    return make_model("Qwen/Qwen3-8B-AWQ", 40960)


@pytest.fixture
def config(model_spec, host, gpu, operator) -> LaunchConfig:
    return make_config("qwen-desk", model=model_spec, host=host, quantization="awq", created_by=operator)


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


@pytest.fixture
def launch(config, operator, profile) -> Launch:
    return simulate_refusal_then_ready(make_launch(config, operator))


@pytest.fixture
def live_stack(live_server, tmp_path):
    """Redis, a control worker and a GPU worker (RTX 3060 playing vLLM 0.11.0 with the stand-in) on
    this test's database, and a launch config for that host: the first launch refuses the native
    context once and starts at the number vLLM printed."""
    from types import SimpleNamespace

    from tests.factories import demo_model
    from tests.workers.conftest import RTX_3060, running_fleet
    from tests.workers.helpers import config_for

    with running_fleet(tmp_path) as fleet:
        fleet.gpu_worker("ui-3060", RTX_3060, "0.11.0")
        config = config_for("ui-3060", demo_model())
        yield SimpleNamespace(config=config, fleet=fleet)
