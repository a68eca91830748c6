"""Deleting a config keeps its history; deleting a host or model with history is refused in words.

Asked of the real admin with the test client, as an operator and as the superuser.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from gpus.models import Gpu, Host, ModelSpec
from launches.models import Launch, LaunchConfig, LaunchConfigChange
from tests.factories import make_config, make_config_change, make_gpu, make_host, make_launch
from tests.ui.conftest import form_data


@pytest.fixture
def edited_config(client, config, operator):
    """``config`` edited once through the admin (a recorded change) and launched once."""
    client.force_login(operator)
    url = reverse("admin:launches_launchconfig_change", args=[config.pk])
    assert client.post(url, form_data(config, port="8011")).status_code == 302
    assert config.changes.count() == 1
    make_launch(config, operator, status=Launch.Status.STOPPED)
    client.logout()
    return config


@pytest.mark.parametrize("persona", ["operator", "admin_user"])
def test_an_edited_config_is_deleted_in_the_admin_and_its_history_stays(
    client, request, edited_config, persona
):
    client.force_login(request.getfixturevalue(persona))
    url = reverse("admin:launches_launchconfig_delete", args=[edited_config.pk])

    page = client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "permission" not in text
    assert "Are you sure" in text

    response = client.post(url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert not LaunchConfig.objects.filter(pk=edited_config.pk).exists()
    said = [str(message) for message in response.context["messages"]]
    assert "qwen-desk: Its 1 launch and 1 recorded change are kept in the history." in said

    change = LaunchConfigChange.objects.get()
    assert (change.config_id, change.config_name, change.field) == (None, "qwen-desk", "port")
    launch = Launch.objects.get()
    assert launch.config_id is None and launch.config_snapshot["name"] == "qwen-desk"


def test_a_config_whose_launch_still_runs_is_protected_by_it_in_the_admin(client, operator, config):
    launch = make_launch(config, operator, status=Launch.Status.READY)
    client.force_login(operator)
    url = reverse("admin:launches_launchconfig_delete", args=[config.pk])
    text = client.get(url).content.decode()
    said = f"Launch #{launch.pk} of qwen-desk is still running; stop it first, then delete the config."
    assert said in text
    client.post(url, {"post": "yes"})
    assert LaunchConfig.objects.filter(pk=config.pk).exists()


def test_the_bulk_delete_action_says_what_each_config_kept(client, operator, edited_config):
    client.force_login(operator)
    other = make_config("spare", host=edited_config.host, model=edited_config.model)
    response = client.post(
        reverse("admin:launches_launchconfig_changelist"),
        {"action": "delete_selected", "_selected_action": [edited_config.pk, other.pk], "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    said = [str(message) for message in response.context["messages"]]
    assert "spare: It had no launches and no recorded changes." in said
    assert "qwen-desk: Its 1 launch and 1 recorded change are kept in the history." in said
    assert LaunchConfig.objects.count() == 0
    assert LaunchConfigChange.objects.count() == 1


def test_a_viewer_may_not_delete_a_config_and_is_told_who_may(client, viewer, edited_config):
    client.force_login(viewer)
    response = client.post(
        reverse("admin:launches_launchconfig_delete", args=[edited_config.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert "Only operators may delete launch configs." in response.content.decode()
    assert LaunchConfig.objects.filter(pk=edited_config.pk).exists()


def test_a_host_with_only_its_cards_is_deleted_by_the_superuser(client, admin_user):
    host = make_host("spare-host")
    make_gpu(host, 0)
    client.force_login(admin_user)
    url = reverse("admin:gpus_host_delete", args=[host.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "permission" not in page.content.decode()
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not Host.objects.filter(pk=host.pk).exists()
    assert not Gpu.objects.filter(host_id=host.pk).exists()


@pytest.mark.parametrize("what", ["host", "model"])
def test_a_host_or_model_with_history_is_refused_in_words(client, admin_user, edited_config, what):
    row = edited_config.host if what == "host" else edited_config.model
    url = reverse(f"admin:gpus_{'host' if what == 'host' else 'modelspec'}_delete", args=[row.pk])
    client.force_login(admin_user)
    page = client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "would require deleting the following protected related objects" in text
    assert "permission" not in text
    # Posting anyway changes nothing, and is answered with the same refusal, not a server error.
    posted = client.post(url, {"post": "yes"})
    assert posted.status_code == 200
    assert "would require deleting the following protected related objects" in posted.content.decode()
    assert Host.objects.filter(pk=edited_config.host_id).exists()
    assert ModelSpec.objects.filter(pk=edited_config.model_id).exists()


def test_changes_read_as_field_user_and_time(client, viewer, config, operator):
    change = make_config_change(config, "yarn_factor", "1.0", "2.0", user=operator)
    system = make_config_change(config, "port", "", "8000")
    moment = f"{timezone.localtime(change.changed_at):%Y-%m-%d %H:%M}"
    assert str(change) == f"yarn_factor changed by olivia-operator at {moment}"
    assert str(system).startswith("port changed by the system at ")
    client.force_login(viewer)
    page = client.get(reverse("admin:launches_launchconfigchange_change", args=[change.pk]))
    assert f"yarn_factor changed by olivia-operator at {moment}" in page.content.decode()
