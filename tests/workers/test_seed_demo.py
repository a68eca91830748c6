"""The demo's seed: the model with its facts and one launch config per simulated host."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from gpus.models import Host, ModelSpec
from launches.gpu.config import parse_port_range
from launches.models import LaunchConfig

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_the_model_and_a_config_per_host_and_prints_the_worker_commands() -> None:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=io.StringIO())  # a second run changes nothing
    assert ModelSpec.objects.get().native_context == 40960
    assert sorted(LaunchConfig.objects.values_list("host__name", flat=True)) == ["desk-3060", "lab-h100"]
    assert all(host.simulated for host in Host.objects.all())
    # Both demo hosts serve on 127.0.0.1: a fixed port could be one the other host's worker picked.
    assert {host.reachable_address for host in Host.objects.all()} == {"127.0.0.1"}
    assert list(LaunchConfig.objects.values_list("port", flat=True)) == [None, None]
    text = out.getvalue()
    assert "gpu_worker --host desk-3060" in text and "AIFRED_STANDIN_VLLM_VERSION=0.11.0" in text
    assert "AIFRED_SIMULATED_GPUS='NVIDIA H100 80GB HBM3:81559'" in text


def test_the_demo_hosts_on_one_machine_pick_ports_from_ranges_of_their_own() -> None:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    ranges = [parse_port_range(found) for found in re.findall(r"AIFRED_PORT_RANGE=(\S+)", out.getvalue())]
    assert len(ranges) == 2
    first, second = sorted(ranges)
    assert first[1] < second[0], "two demo hosts picking from one range can both pick the same free port"
    # make demo starts the hosts' workers with the same environment the printed commands show.
    run_script = (Path(__file__).resolve().parents[2] / "scripts" / "run.py").read_text()
    assert "gpu_worker_env(name, cards, version, port_range)" in run_script


def test_make_demo_seeds_without_printing_commands_for_hosts_it_starts_itself() -> None:
    out = io.StringIO()
    call_command("seed_demo", "--no-worker-commands", stdout=out)
    assert "Start the simulated GPU hosts" not in out.getvalue() and "gpu_worker --host" not in out.getvalue()
    assert LaunchConfig.objects.count() == 2
    run_script = (Path(__file__).resolve().parents[2] / "scripts" / "run.py").read_text()
    assert 'manage("seed_demo", "--no-worker-commands"' in run_script


def test_the_seeded_configs_launch_the_bfloat16_demo_model_without_a_quantization_it_does_not_have() -> None:
    # A config made without options (the README's API walk-through) must share the seeded limits.
    call_command("seed_demo", "--no-worker-commands", stdout=io.StringIO())
    model = ModelSpec.objects.get()
    for config in LaunchConfig.objects.all():
        plain = LaunchConfig(model=model, host=config.host, gpu_indices="0")
        assert config.memory_options() == plain.memory_options(), config.name
