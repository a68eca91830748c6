"""Redis stopped for 5 s at each phase of a two-stage launch: the launch still ends right."""

from __future__ import annotations

import time

import pytest

from launches.models import Launch
from tests.chaos.drills import assert_settled
from tests.factories import demo_model
from tests.workers.conftest import RTX_3060, host_name, wait_for
from tests.workers.helpers import config_for, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("phase", ["queued", "attempt 1", "between attempts", "ready"])
def test_a_five_second_redis_outage_at_any_phase_of_a_two_stage_launch_loses_nothing(
    chaos_fleet, broker, phase
) -> None:
    chaos_fleet.control_worker()
    # vLLM 0.11.0 on 12 GB refuses the native 40,960 and prints the number that fits: two attempts.
    chaos_fleet.gpu_worker("outage", RTX_3060, "0.11.0", AIFRED_STANDIN_LOAD_SECONDS="1.5")
    host = host_name("outage")
    config = config_for("outage", demo_model())

    if phase == "queued":
        broker.stop()
        # The request succeeds though the spec cannot be sent; the reconciliation sends it later.
        launch = Launch.objects.start(config, user=None)
        assert launch.status == Launch.Status.QUEUED
    else:
        launch = Launch.objects.start(config, user=None)
        if phase == "attempt 1":
            wait_for(lambda: launch.attempts.filter(number=1).exists(), 30, "the first attempt")
        elif phase == "between attempts":
            wait_for(lambda: launch.attempts.exclude(outcome="").exists(), 30, "the first attempt's end")
        else:
            wait_status(launch, Launch.Status.READY, timeout=60)
        broker.stop()
    if phase == "ready":
        # The stop is asked for while Redis is away: it reaches the host once Redis is back.
        launch.request_stop()
        assert launch.status == Launch.Status.STOPPING
    time.sleep(5)
    broker.start()

    if phase != "ready":
        launch = wait_status(launch, Launch.Status.READY, timeout=60)
        launch.request_stop()
    wait_status(launch, Launch.Status.STOPPED, timeout=40)
    assert launch.attempts.count() == 2
    assert launch.attempts.get(number=1).outcome == "context_too_long"
    assert_settled(chaos_fleet, host, launch, Launch.Status.STOPPED)
