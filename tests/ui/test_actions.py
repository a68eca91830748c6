"""Operators launch, test YaRN, re-detect and stop from the config page and the lists.

Nothing of ours is mocked: Launch.objects.start really runs; the message to the GPU host is sent
on commit, so the tests capture the on-commit callbacks instead of running them (there is no broker
in the default test run).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from gpus.models import Host
from launches.models import Launch
from tests.factories import learn_limit, make_config, make_host, make_launch


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.mark.parametrize(
    ("button", "kind"),
    [
        ("launch", Launch.Kind.LAUNCH),
        ("test_yarn", Launch.Kind.TEST_YARN),
        ("redetect", Launch.Kind.REDETECT),
    ],
)
def test_an_operator_starts_a_launch_and_lands_on_its_live_page(
    client, operator, config, profile, django_capture_on_commit_callbacks, button, kind
):
    learn_limit(config, profile, 26624)
    client.force_login(operator)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse(f"admin:launches_launchconfig_{button}", args=[config.pk]))
    launch = Launch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("launches:live", args=[launch.pk])
    assert launch.kind == kind
    assert launch.status == Launch.Status.QUEUED
    assert launch.requested_by == operator
    assert launch.spec["launch_id"] == launch.pk
    # Re-detect must ignore what was learned; the others start straight at it.
    assert launch.known_limit == (None if kind == Launch.Kind.REDETECT else 26624)
    assert len(callbacks) == 1, "the spec is sent to the host's queue once, at commit"


def test_a_refused_launch_is_shown_as_an_admin_error_and_creates_nothing(
    client, operator, config, django_capture_on_commit_callbacks
):
    config.gpu_indices = "1"  # the host reported only GPU 0
    config.save()
    client.force_login(operator)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("admin:launches_launchconfig_launch", args=[config.pk]), follow=True)
    assert Launch.objects.count() == 0
    assert callbacks == []
    assert any("has not reported GPU 1" in text for text in messages_of(response))
    assert b'class="error"' in response.content


@pytest.mark.parametrize("button", ["launch", "test_yarn", "redetect"])
def test_a_launch_on_an_offline_host_is_refused_with_when_it_last_reported(
    client, operator, config, django_capture_on_commit_callbacks, settings, button
):
    seen = timezone.now() - timedelta(seconds=settings.HOST_ONLINE_SECONDS + 60)
    Host.objects.filter(pk=config.host_id).update(last_heartbeat=seen)
    client.force_login(operator)
    with django_capture_on_commit_callbacks() as callbacks:
        url = reverse(f"admin:launches_launchconfig_{button}", args=[config.pk])
        response = client.post(url, follow=True)
    assert Launch.objects.count() == 0
    assert callbacks == [], "nothing may wait in the host's queue for a worker that is away"
    said = f"The host {config.host.name} is offline: its GPU worker has not reported since "
    said += f"{timezone.localtime(seen):%Y-%m-%d %H:%M:%S}"
    assert any(said in text and "Start the GPU worker" in text for text in messages_of(response))


def test_a_host_without_a_gpu_points_at_make_demo_only_when_no_simulated_host_runs(
    client, operator, config, django_capture_on_commit_callbacks
):
    Host.objects.filter(pk=config.host_id).update(nvml_status="No NVIDIA driver found")
    url = reverse("admin:launches_launchconfig_launch", args=[config.pk])
    client.force_login(operator)
    with django_capture_on_commit_callbacks():
        alone = messages_of(client.post(url, follow=True))
    assert any("run `make demo`" in text for text in alone), alone

    make_host("desk-3060-sim", simulated=True)
    with django_capture_on_commit_callbacks():
        under_demo = messages_of(client.post(url, follow=True))
    assert any("launch on a simulated host: desk-3060-sim." in text for text in under_demo), under_demo
    assert not any("make demo" in text for text in under_demo)


def test_a_get_of_an_action_url_starts_nothing(client, operator, config):
    client.force_login(operator)
    response = client.get(reverse("admin:launches_launchconfig_launch", args=[config.pk]))
    assert response.status_code == 302
    assert Launch.objects.count() == 0


def test_the_stop_confirmation_names_the_host_once_when_the_config_name_has_it(client, operator, config):
    type(config).objects.filter(pk=config.pk).update(name=f"mine on {config.host.name}")
    config.refresh_from_db()
    running = make_launch(config, operator, status=Launch.Status.READY)
    client.force_login(operator)
    html = client.get(reverse("admin:launches_launchconfig_stop", args=[config.pk])).content.decode()
    assert f">#{running.pk} mine on {config.host.name}</a> — Running" in html
    assert f"on {config.host.name} on {config.host.name}" not in html


def test_stopping_from_the_config_page_asks_for_confirmation_first(
    client, operator, config, django_capture_on_commit_callbacks
):
    running = make_launch(config, operator, status=Launch.Status.READY, server_url="http://desk-3060:8000/v1")
    client.force_login(operator)
    url = reverse("admin:launches_launchconfig_stop", args=[config.pk])
    confirmation = client.get(url)
    assert confirmation.status_code == 200
    assert b"Yes, stop it" in confirmation.content
    assert b"http://desk-3060:8000/v1" in confirmation.content
    running.refresh_from_db()
    assert running.status == Launch.Status.READY

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert response["Location"] == reverse("launches:live", args=[running.pk]), (
        "the live page follows the stop"
    )
    running.refresh_from_db()
    assert running.status == Launch.Status.STOPPING
    assert running.stopped_by == operator
    assert len(callbacks) == 1


def test_stopping_a_config_with_nothing_running_says_so(client, operator, config):
    client.force_login(operator)
    response = client.post(
        reverse("admin:launches_launchconfig_stop", args=[config.pk]), {"post": "yes"}, follow=True
    )
    assert any("is running or starting" in text for text in messages_of(response))


def test_the_launch_action_on_the_config_list_starts_one_launch_per_config(
    client, operator, config, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("admin:launches_launchconfig_changelist"),
            {"action": "launch_selected", "_selected_action": [config.pk], "index": "0"},
        )
    launch = Launch.objects.get()
    assert response["Location"] == reverse("launches:live", args=[launch.pk])
    assert len(callbacks) == 1


def test_the_list_action_reports_a_refusal_as_an_error(client, operator, config):
    make_launch(config, operator, status=Launch.Status.READY)
    client.force_login(operator)
    response = client.post(
        reverse("admin:launches_launchconfig_changelist"),
        {"action": "launch_selected", "_selected_action": [config.pk], "index": "0"},
        follow=True,
    )
    assert Launch.objects.count() == 1
    assert any("stop it first" in text for text in messages_of(response))


def test_the_stop_action_on_the_launch_list_confirms_then_stops(client, operator, config):
    starting = make_launch(config, operator, status=Launch.Status.STARTING)
    queued = make_launch(config, operator, status=Launch.Status.QUEUED)
    client.force_login(operator)
    url = reverse("admin:launches_launch_changelist")
    selected = {"action": "stop_selected", "_selected_action": [starting.pk, queued.pk]}
    confirmation = client.post(url, {**selected, "index": "0"})
    assert confirmation.status_code == 200
    assert b"Yes, stop them" in confirmation.content
    starting.refresh_from_db()
    assert starting.status == Launch.Status.STARTING

    client.post(url, {**selected, "post": "yes"})
    starting.refresh_from_db()
    queued.refresh_from_db()
    assert starting.status == Launch.Status.STOPPING
    assert queued.status == Launch.Status.CANCELLED


def test_stopping_an_ended_launch_is_refused_with_a_message(client, operator, config):
    ended = make_launch(config, operator, status=Launch.Status.FAILED)
    client.force_login(operator)
    response = client.post(
        reverse("admin:launches_launch_stop", args=[ended.pk]), {"post": "yes"}, follow=True
    )
    assert any("has already ended" in text for text in messages_of(response))


@pytest.mark.parametrize(
    ("taken_by", "words"),
    [
        ("the site", "Port 8000 is the site's own port"),
        ("a running launch", "Port 8123 on desk-3060 is taken by launch #"),
        ("a server the host reports", "Port 8123 on desk-3060 is taken by launch #77"),
    ],
)
def test_a_fixed_port_that_is_the_sites_own_or_taken_on_the_host_is_refused_before_anything_starts(
    client, operator, config, operator_config_other, django_capture_on_commit_callbacks, taken_by, words
):
    port = 8000 if taken_by == "the site" else 8123
    if taken_by == "a running launch":
        make_launch(operator_config_other, operator, status=Launch.Status.READY)
    if taken_by == "a server the host reports":
        config.host.running_servers = [{"launch_id": 77, "port": 8123, "status": "ready"}]
        config.host.save()
    type(config).objects.filter(pk=config.pk).update(port=port)
    client.force_login(operator)
    before = Launch.objects.count()
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("admin:launches_launchconfig_launch", args=[config.pk]), follow=True)
    assert Launch.objects.count() == before
    assert callbacks == []
    assert any(words in text for text in messages_of(response)), messages_of(response)


@pytest.mark.parametrize("taken_by", ["server", "picked port", "fixed port"])
def test_a_fixed_port_taken_on_another_host_at_the_same_address_is_refused_before_anything_starts(
    client, operator, config, django_capture_on_commit_callbacks, taken_by
):
    Host.objects.filter(pk=config.host_id).update(address="127.0.0.1")
    other = make_config(host=make_host("lab-h100", address="127.0.0.1"), model=config.model)
    if taken_by == "server":
        Host.objects.filter(pk=other.host_id).update(running_servers=[{"launch_id": 5, "port": 8101}])
    elif taken_by == "picked port":
        make_launch(other, operator, status=Launch.Status.READY, server_url="http://127.0.0.1:8101")
    else:
        type(other).objects.filter(pk=other.pk).update(port=8101)
        other.refresh_from_db()
        make_launch(other, operator, status=Launch.Status.STARTING)
    type(config).objects.filter(pk=config.pk).update(port=8101)
    client.force_login(operator)
    before = Launch.objects.count()
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("admin:launches_launchconfig_launch", args=[config.pk]), follow=True)
    assert Launch.objects.count() == before and callbacks == []
    words = "Port 8101 on 127.0.0.1 (also lab-h100's address) is taken by launch #"
    assert any(words in text for text in messages_of(response)), messages_of(response)


def test_a_port_of_a_server_whose_stop_was_reported_after_the_last_heartbeat_is_free_again(
    client, operator, config, django_capture_on_commit_callbacks
):
    stopped = make_launch(config, operator, status=Launch.Status.STOPPED)
    Host.objects.filter(pk=config.host_id).update(running_servers=[{"launch_id": stopped.pk, "port": 8123}])
    type(config).objects.filter(pk=config.pk).update(port=8123)
    client.force_login(operator)
    with django_capture_on_commit_callbacks():
        response = client.post(reverse("admin:launches_launchconfig_launch", args=[config.pk]), follow=True)
    assert Launch.objects.filter(status=Launch.Status.QUEUED).count() == 1, messages_of(response)


def test_a_port_the_last_heartbeat_listed_for_a_launch_that_has_ended_since_is_free_again(
    client, operator, config, operator_config_other, django_capture_on_commit_callbacks
):
    import datetime as dt

    from django.utils import timezone

    ended = make_launch(operator_config_other, operator, status=Launch.Status.STOPPED)
    heartbeat = timezone.now() - dt.timedelta(seconds=3)
    Launch.objects.filter(pk=ended.pk).update(ended_at=heartbeat + dt.timedelta(seconds=1))
    config.host.running_servers = [{"launch_id": ended.pk, "port": 8123, "status": "ready"}]
    config.host.last_heartbeat = heartbeat
    config.host.save()
    type(config).objects.filter(pk=config.pk).update(port=8123)
    client.force_login(operator)
    with django_capture_on_commit_callbacks():
        client.post(reverse("admin:launches_launchconfig_launch", args=[config.pk]))
    assert Launch.objects.filter(config=config).count() == 1


def test_a_config_without_a_port_sends_none_and_the_host_picks_one(
    client, operator, config, django_capture_on_commit_callbacks
):
    assert config.port is None, "new configs must not default to a port (8000 is the site's)"
    client.force_login(operator)
    with django_capture_on_commit_callbacks():
        client.post(reverse("admin:launches_launchconfig_launch", args=[config.pk]))
    assert Launch.objects.get().spec["port"] is None


@pytest.fixture
def operator_config_other(config):
    """A second config on the same host and card, fixed on port 8123, using GPU 1."""
    return make_config("other on desk", model=config.model, host=config.host, port=8123, gpu_indices="1")
