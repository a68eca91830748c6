"""Screenshots for the README, taken against the live server with a small, realistic fleet.

    AIFRED_SCREENSHOTS_DIR=docs/screenshots pytest -m browser tests/ui/test_screenshots.py

Skipped unless AIFRED_SCREENSHOTS_DIR is set: the PNGs are documentation, not a check.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from launches.models import Launch, LaunchConfig, LaunchEvent
from tests.factories import (
    learn_limit,
    make_config,
    make_config_change,
    make_gpu,
    make_host,
    make_launch,
    make_model,
    make_profile,
    simulate_refusal_then_ready,
)
from tests.ui.test_browser import browser, log_in, page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def demo_fleet(operator) -> tuple[LaunchConfig, Launch]:
    """Three hosts, two kinds of GPU, learned limits, a history of starts and one running server."""
    now = timezone.now()
    rtx = make_profile("NVIDIA GeForce RTX 3060", 12288)
    a100 = make_profile("NVIDIA A100-SXM4-80GB", 81920)
    desk = make_host("desk-3060", vllm_version="0.10.1", last_heartbeat=now)
    rack = make_host("rack-a100", vllm_version="0.14.0", last_heartbeat=now - dt.timedelta(seconds=4))
    sim = make_host(
        "ci-sim", vllm_version="0.14.0", simulated=True, last_heartbeat=now - dt.timedelta(hours=2)
    )
    make_gpu(desk, 0, rtx, uuid="GPU-3060-0", memory_free_mib=1240)
    for index in range(2):
        make_gpu(rack, index, a100, uuid=f"GPU-A100-{index}", memory_free_mib=80100)
    simulated_rtx = make_profile("NVIDIA GeForce RTX 3060", 12288, simulated=True)
    make_gpu(sim, 0, simulated_rtx, uuid="GPU-SIM-0", memory_free_mib=12000)
    make_host(
        "vm-no-gpu",
        vllm_version="",
        last_heartbeat=now,
        nvml_status="No NVIDIA driver found (the NVML library is missing); this host reports no GPUs.",
        vllm_error="vllm was not found; install vLLM on this host or configure the vLLM command.",
    )
    facts = {"dtype": "float16", "facts_status": "read", "facts_read_at": now - dt.timedelta(days=1)}
    facts.update(num_layers=36, num_kv_heads=8, head_dim=128, max_len_key="max_position_embeddings")
    qwen8 = make_model("Qwen/Qwen3-8B-AWQ", 40960, **facts)
    qwen32 = make_model("Qwen/Qwen3-32B-AWQ", 40960, **facts)
    config = make_config(
        "qwen3-8b-desk",
        model=qwen8,
        host=desk,
        quantization="awq",
        created_by=operator,
        enable_yarn=True,
        yarn_factor=Decimal("2.0"),
    )
    big = make_config(
        "qwen3-32b-rack",
        model=qwen32,
        host=rack,
        gpu_indices="0",
        quantization="awq",
        created_by=operator,
    )
    learn_limit(config, rtx, 26624)
    learn_limit(big, a100, 163840)
    for number in range(24):
        first = number % 6 == 0
        created = now - dt.timedelta(hours=48 - number * 2)
        make_launch(
            config if number % 2 else big,
            operator,
            status=Launch.Status.STOPPED,
            outcome="ready",
            context_length=26624 if number % 2 else 163840,
            reason="Stopped by olivia-operator.",
            known_limit=None if first else 26624,
            created_at=created,
            ready_at=created + dt.timedelta(seconds=(68 + number % 5) if first else (38 + number % 7)),
        )
    make_config_change(
        config, "yarn_factor", "1.0", "2.0", user=operator, changed_at=now - dt.timedelta(minutes=20)
    )
    make_config_change(
        config, "enable_yarn", "no", "yes", user=operator, changed_at=now - dt.timedelta(minutes=20)
    )
    running = simulate_refusal_then_ready(
        make_launch(config, operator, wanted_context=40960), now - dt.timedelta(minutes=2)
    )
    return config, running


def test_screenshots_for_the_readme(page, live_server, operator):  # noqa: F811
    target = os.environ.get("AIFRED_SCREENSHOTS_DIR")
    if not target:
        pytest.skip("set AIFRED_SCREENSHOTS_DIR to write the README's screenshots")
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    config, running = demo_fleet(operator)
    log_in(page, live_server, operator)

    page.goto(live_server.url + reverse("admin:launches_launchconfig_change", args=[config.pk]))
    page.fill("#id_yarn_factor", "3.0")
    page.locator('#context-preview [data-role="warning"]').wait_for(state="visible")
    page.screenshot(path=str(out / "config-form.png"), full_page=True)

    page.goto(live_server.url + reverse("launches:live", args=[running.pk]))
    page.locator('[data-role="result"]').wait_for(state="visible")
    page.locator("section.attempt pre.log").first.evaluate("el => el.scrollIntoView()")
    page.screenshot(path=str(out / "live-launch.png"), full_page=True)

    page.goto(live_server.url + reverse("launches:fleet"))
    page.screenshot(path=str(out / "fleet-dashboard.png"), full_page=True)

    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(live_server.url + reverse("admin:launches_launch_changelist"))
    page.screenshot(path=str(out / "launch-history.png"), full_page=True)

    page.goto(live_server.url + reverse("admin:gpus_modelspec_change", args=[config.model_id]))
    page.screenshot(path=str(out / "model-page.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server.url + reverse("launches:fleet"))
    page.screenshot(path=str(out / "fleet-phone.png"), full_page=True)
    assert LaunchEvent.objects.filter(launch=running).count() == 8
