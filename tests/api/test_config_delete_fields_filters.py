"""The API deletes configs keeping their history, takes every field the config form edits, and
refuses history filters it does not know, naming the parameter and the accepted values."""

from __future__ import annotations

import pytest

from launches.models import Launch, LaunchConfig, LaunchConfigChange
from tests.factories import make_config_change, make_launch

pytestmark = pytest.mark.django_db


def test_an_operator_deletes_an_edited_config_and_its_history_stays(as_operator, config, operator):
    make_config_change(config, "port", "", "8001", user=operator)
    make_launch(config, operator, status=Launch.Status.STOPPED)
    response = as_operator.delete(f"/api/v1/configs/{config.pk}/")
    assert response.status_code == 200, response.json()
    assert response.json()["detail"] == (
        "Deleted the launch config qwen-desk. Its 1 launch and 1 recorded change are kept in the history."
    )
    assert not LaunchConfig.objects.exists()
    change = LaunchConfigChange.objects.get()
    assert (change.config_id, change.config_name) == (None, "qwen-desk")
    assert Launch.objects.get().config_snapshot["name"] == "qwen-desk"


@pytest.mark.parametrize("status", sorted(Launch.Status.active()))
def test_a_config_whose_launch_is_still_active_is_not_deleted(as_operator, config, operator, status):
    launch = make_launch(config, operator, status=status)
    response = as_operator.delete(f"/api/v1/configs/{config.pk}/")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"Launch #{launch.pk} of qwen-desk is still {launch.get_status_display().lower()}; "
        "stop it first, then delete the config."
    )
    assert LaunchConfig.objects.filter(pk=config.pk).exists()


def test_a_viewer_may_not_delete_a_config(as_viewer, config):
    response = as_viewer.delete(f"/api/v1/configs/{config.pk}/")
    assert response.status_code == 403
    assert response.json()["detail"] == "Only operators may delete launch configs."
    assert LaunchConfig.objects.filter(pk=config.pk).exists()


def test_history_stays_read_only(as_operator, launch):
    response = as_operator.delete(f"/api/v1/launches/{launch.pk}/")
    assert response.status_code == 403
    assert "read-only" in response.json()["detail"]
    assert Launch.objects.filter(pk=launch.pk).exists()


def test_keep_up_is_changed_through_the_api_and_recorded(as_operator, config):
    response = as_operator.patch(f"/api/v1/configs/{config.pk}/", {"keep_up": True}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["keep_up"] is True
    config.refresh_from_db()
    assert config.keep_up is True
    change = LaunchConfigChange.objects.get(config=config)
    assert (change.field, change.old_value, change.new_value) == ("keep_up", "no", "yes")


def test_the_api_takes_every_field_an_operator_edits_in_the_admin(as_operator, config):
    from django.contrib import admin
    from django.contrib.admin.utils import flatten_fieldsets

    config_admin = admin.site.get_model_admin(LaunchConfig)
    editable = set(flatten_fieldsets(config_admin.fieldsets)) - set(config_admin.readonly_fields)
    shown = set(as_operator.get(f"/api/v1/configs/{config.pk}/").json())
    assert editable <= shown, editable - shown


@pytest.mark.parametrize(
    ("parameter", "value", "words"),
    [
        ("status", "bogus", "'bogus' is not a known status; use one of queued, starting, ready,"),
        ("kind", "bogus", "'bogus' is not a known kind; use one of launch, test_yarn, redetect"),
        ("outcome", "bogus", "'bogus' is not a known outcome; use one of ready, context_too_long,"),
        ("host", "9999", "host: There is no host with id 9999"),
        ("model", "9999", "model: There is no model with id 9999"),
        ("requested_by", "9999", "requested_by: There is no user with id 9999"),
        ("gpu_profile", "x", "gpu_profile: 'x' is not an id"),
    ],
)
def test_an_unknown_filter_value_is_refused_naming_the_parameter(as_viewer, launch, parameter, value, words):
    response = as_viewer.get("/api/v1/launches/", {parameter: value})
    assert response.status_code == 400
    assert words in response.json()["detail"]
    assert parameter in response.json()["errors"]


def test_known_filter_values_still_filter(as_viewer, launch):
    found = as_viewer.get("/api/v1/launches/", {"status": launch.status, "host": launch.host_id}).json()
    assert [row["id"] for row in found["results"]] == [launch.pk]
    assert as_viewer.get("/api/v1/launches/", {"status": "stopped"}).json()["results"] == []
