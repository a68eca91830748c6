"""Viewers read everything and change nothing; operators edit launch configs; outsiders see nothing."""

import pytest
from django.contrib import admin
from django.urls import reverse

from launches.models import Launch, LaunchAttempt, LaunchConfig, LaunchEvent
from tests.factories import (
    learn_limit,
    make_attempt,
    make_config,
    make_event,
    make_gpu,
    make_host,
    make_launch,
    make_model,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_of_everything():

    host = make_host("gpu-a")
    gpu = make_gpu(host)
    config = make_config(host=host, model=make_model())
    launch = make_launch(config)
    make_attempt(launch, 1, requested_len=40960, argv=["vllm", "serve"])
    make_event(launch, 1, "attempt_started", {})
    learn_limit(config, gpu.profile, 26624, launch=launch)
    return [
        host,
        gpu,
        gpu.profile,
        config.model,
        config,
        launch,
        launch.attempts.get(),
        launch.events.get(),
        launch.limits_learned.get(),
    ]


def _admin_urls(obj):
    meta = obj._meta
    base = f"admin:{meta.app_label}_{meta.model_name}"
    return reverse(f"{base}_changelist"), reverse(f"{base}_change", args=[obj.pk]), reverse(f"{base}_add")


def test_every_model_of_the_project_is_in_the_admin(one_of_everything):
    registered = {model for model in admin.site._registry if model._meta.app_label in {"gpus", "launches"}}
    assert {type(obj) for obj in one_of_everything} <= registered


def test_a_viewer_opens_every_list_and_page_but_cannot_add_or_change(client, viewer, one_of_everything):
    client.force_login(viewer)
    for obj in one_of_everything:
        changelist, change, add = _admin_urls(obj)
        assert client.get(changelist).status_code == 200, changelist
        page = client.get(change)
        assert page.status_code == 200, change
        assert b'name="_save"' not in page.content, f"{change} offers a save button to a viewer"
        assert client.get(add).status_code == 403, add


def test_a_viewers_forged_change_post_is_refused_and_changes_nothing(client, viewer, one_of_everything):
    config = next(obj for obj in one_of_everything if isinstance(obj, LaunchConfig))
    client.force_login(viewer)
    _, change, _ = _admin_urls(config)
    response = client.post(change, {"name": "renamed", "port": 9000})
    assert response.status_code == 403
    config.refresh_from_db()
    assert config.name != "renamed"


def test_an_operator_edits_a_launch_config_through_the_admin(client, operator, one_of_everything):
    config = next(obj for obj in one_of_everything if isinstance(obj, LaunchConfig))
    client.force_login(operator)
    _, change, _ = _admin_urls(config)
    form = client.get(change).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update({"port": 9001, "model": config.model_id, "host": config.host_id})
    data.update({"changes-TOTAL_FORMS": "0", "changes-INITIAL_FORMS": "0"})
    response = client.post(change, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    config.refresh_from_db()
    assert config.port == 9001


def test_an_operator_cannot_edit_history_or_learned_limits(client, operator, one_of_everything):
    client.force_login(operator)
    for obj in one_of_everything:
        if isinstance(obj, (Launch, LaunchAttempt, LaunchEvent)) or obj._meta.model_name == "detectedlimit":
            _, change, add = _admin_urls(obj)
            assert client.get(add).status_code == 403
            assert b'name="_save"' not in client.get(change).content


def test_a_staff_user_without_a_role_sees_no_model(client, outsider, one_of_everything):
    client.force_login(outsider)
    for obj in one_of_everything:
        changelist, change, _ = _admin_urls(obj)
        assert client.get(changelist).status_code == 403
        assert client.get(change).status_code == 403


def test_adding_a_user_to_a_role_group_lets_them_into_the_admin(db):
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("new-viewer", password="pw")
    user.groups.add(Group.objects.get(name="Viewers"))
    user.refresh_from_db()
    assert user.is_staff
