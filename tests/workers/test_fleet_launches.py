"""Launches through real worker processes: a control worker, GPU workers with simulated cards, Redis."""

from __future__ import annotations

import pytest

from gpus.models import DetectedLimit
from launches.models import Launch
from tests.factories import demo_model
from tests.workers.conftest import H100, RTX_3060, host_name, wait_for
from tests.workers.helpers import attempts_of, config_for, wait_status, yarn_config

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_small_card_learns_its_limit_in_two_stages_and_another_host_with_that_card_starts_at_once(
    fleet,
) -> None:
    fleet.control_worker()
    fleet.gpu_worker("desk-a", RTX_3060, "0.11.0")
    fleet.gpu_worker("desk-b", RTX_3060, "0.11.0", via_manage=False)
    model = demo_model()
    config_a = config_for("desk-a", model)
    config_b = config_for("desk-b", model)

    first = wait_status(Launch.objects.start(config_a, user=None), Launch.Status.READY)
    [(native, refused), (learned, ready)] = attempts_of(first)
    assert (native, refused, ready) == (40960, "context_too_long", "ready")
    assert learned < 40960 and first.context_length == learned == first.learned_limit
    limit = DetectedLimit.objects.get(model=model, profile=first.gpu_profile)
    assert (limit.max_model_len, limit.learned_from, limit.launch_id) == (learned, "refusal", first.pk)
    # It ran on desk-a only: accepted there, and desk-b's worker reports no server.
    assert first.events.get(kind="accepted").data["host"] == host_name("desk-a")
    assert fleet.servers_of(host_name("desk-b")) == {}
    assert set(fleet.servers_of(host_name("desk-a"))) == {first.pk}
    assert first.server_url.endswith(f":{config_a.port}")

    second = Launch.objects.start(config_b, user=None)
    assert second.known_limit == learned
    second = wait_status(second, Launch.Status.READY)
    assert attempts_of(second) == [(learned, "ready")]
    assert second.context_length == learned

    for launch in (first, second):
        launch.request_stop()
        wait_status(launch, Launch.Status.STOPPED, timeout=30)
    wait_for(lambda: not fleet.servers_of(host_name("desk-a")), 10, "desk-a's server to be gone")
    assert fleet.servers_of(host_name("desk-b")) == {}


def test_a_current_vllm_fits_the_small_card_in_one_start_and_the_big_card_holds_the_native_context(
    fleet,
) -> None:
    fleet.control_worker()
    fleet.gpu_worker("desk-new", RTX_3060, "0.32.0")
    fleet.gpu_worker("lab", H100, "0.32.0")
    model = demo_model()
    small = Launch.objects.start(config_for("desk-new", model), user=None)
    big = Launch.objects.start(config_for("lab", model), user=None)

    small = wait_status(small, Launch.Status.READY)
    [(requested, outcome)] = attempts_of(small)
    assert (requested, outcome) == ("auto", "ready")
    assert small.context_length < 40960
    limit = DetectedLimit.objects.get(model=model, profile=small.gpu_profile)
    assert (limit.max_model_len, limit.learned_from) == (small.context_length, "auto_fit")

    big = wait_status(big, Launch.Status.READY)
    assert attempts_of(big) == [("auto", "ready")]
    assert big.context_length == 40960
    assert DetectedLimit.objects.get(model=model, profile=big.gpu_profile).max_model_len == 40960
    assert big.gpu_profile.name == "NVIDIA H100 80GB HBM3" and big.host.simulated

    for launch in (small, big):
        launch.request_stop()
        wait_status(launch, Launch.Status.STOPPED, timeout=30)


def test_a_yarn_test_reports_the_context_it_came_up_with_and_stops_its_server(fleet) -> None:
    fleet.control_worker()
    fleet.gpu_worker("lab", H100, "0.32.0")
    model = demo_model()
    test = Launch.objects.start(yarn_config("lab", model, "2.0"), user=None, kind=Launch.Kind.TEST_YARN)

    test = wait_status(test, Launch.Status.STOPPED)
    assert test.context_length == 81920
    assert (
        "YaRN ×2.0 on NVIDIA H100 80GB HBM3 (80 GiB) · simulated: vLLM came up with 81,920 tokens"
        in test.reason
    )
    [attempt] = test.attempts.all()
    assert any("max_position_embeddings" in arg for arg in attempt.argv)
    assert fleet.servers_of(host_name("lab")) == {}


def test_a_stop_during_the_start_cancels_it_and_leaves_no_process(fleet) -> None:
    fleet.control_worker()
    fleet.gpu_worker("slow", H100, "0.32.0", AIFRED_STANDIN_LOAD_SECONDS="30")
    model = demo_model()
    launch = Launch.objects.start(config_for("slow", model), user=None)
    wait_for(lambda: launch.attempts.exists(), 30, "the first attempt")
    wait_for(lambda: fleet.servers_of(host_name("slow")), 10, "the server process")

    launch.refresh_from_db()
    launch.request_stop()
    launch = wait_status(launch, Launch.Status.CANCELLED, timeout=30)
    assert launch.attempts.get().outcome == "cancelled"
    assert fleet.servers_of(host_name("slow")) == {}
