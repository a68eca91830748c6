"""Rows and waits shared by the integration tests."""

from __future__ import annotations

from decimal import Decimal

from gpus.models import Gpu, Host, ModelSpec
from launches.models import Launch, LaunchConfig
from tests.factories import demo_model, make_config
from tests.ports import free_port
from tests.workers.conftest import H100, Fleet, Worker, host_name, wait_for

TERMINAL = {str(status) for status in Launch.Status.terminal()}


def wait_for_host(label: str, timeout: float = 40) -> Host:
    name = host_name(label)
    wait_for(
        lambda: Gpu.objects.current().filter(host__name=name).exists(),
        timeout,
        f"the first report of {name}",
    )
    return Host.objects.get(name=name)


def config_for(label: str, model: ModelSpec, **fields) -> LaunchConfig:
    host = wait_for_host(label)
    return make_config(
        f"demo on {host.name} {free_port()}",
        model=model,
        host=host,
        port=free_port(),
        quantization="awq",
        gpu_memory_utilization=0.9,
        **fields,
    )


def yarn_config(label: str, model: ModelSpec, factor: str) -> LaunchConfig:
    return config_for(label, model, enable_yarn=True, yarn_factor=Decimal(factor))


def wait_status(launch: Launch, statuses: set[str] | str, timeout: float = 60) -> Launch:
    wanted = {statuses} if isinstance(statuses, str) else statuses

    def reached() -> Launch | None:
        launch.refresh_from_db()
        if launch.status in wanted:
            return launch
        if launch.status in TERMINAL:
            raise AssertionError(f"launch ended {launch.status}: {launch.reason}")
        return None

    return wait_for(reached, timeout, f"launch #{launch.pk} to be {'/'.join(sorted(wanted))}")


def attempts_of(launch: Launch) -> list[tuple[int | str | None, str]]:
    return [
        ("auto" if attempt.requested_auto else attempt.requested_len, attempt.outcome)
        for attempt in launch.attempts.order_by("number")
    ]


def start_slow_launch(fleet: Fleet, label: str) -> tuple[Worker, str, Launch, dict[int, set[int]]]:
    """A GPU worker (an H100 on vLLM 0.32.0) whose stand-in takes a minute to load, and a launch of the
    demo model caught mid-start: returns the worker, its host name, the launch and the server's
    process groups (launch id -> pgids). The caller's fleet has its control worker running."""
    worker = fleet.gpu_worker(label, H100, "0.32.0", AIFRED_STANDIN_LOAD_SECONDS="60")
    launch = Launch.objects.start(config_for(label, demo_model()), user=None)
    wait_for(lambda: launch.attempts.exists(), 30, "the first attempt")
    servers = wait_for(lambda: fleet.servers_of(host_name(label)), 10, "the server process")
    return worker, host_name(label), launch, servers
