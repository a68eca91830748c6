"""Who may see and do what, asked of the real admin and views with the test client.

Every test takes all three personas: operator, viewer, outsider (staff but in no role).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from launches.models import Launch, LaunchConfig, LaunchConfigChange
from tests.factories import learn_limit, make_config_change, make_launch
from tests.ui.conftest import form_data

ADMIN_MODELS = [
    ("gpus", "host"),
    ("gpus", "gpuprofile"),
    ("gpus", "gpu"),
    ("gpus", "modelspec"),
    ("gpus", "detectedlimit"),
    ("launches", "launchconfig"),
    ("launches", "launch"),
    ("launches", "launchattempt"),
    ("launches", "launchevent"),
    ("launches", "launchconfigchange"),
]
PERSONAS = ["operator", "viewer", "outsider"]


@pytest.fixture
def every_kind_of_row(config, launch, profile, operator):
    learn_limit(config, profile)
    make_config_change(config, "port", "8000", "8001", user=operator)
    return config


def first_object_url(app: str, model: str) -> str:
    from django.apps import apps

    obj = apps.get_model(app, model).objects.order_by("pk").first()
    return reverse(f"admin:{app}_{model}_change", args=[obj.pk])


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_admin_list_and_page_is_readable_by_roles_and_forbidden_to_outsiders(
    client, personas, every_kind_of_row, persona
):
    client.force_login(personas[persona])
    expected = 403 if persona == "outsider" else 200
    for app, model in ADMIN_MODELS:
        assert client.get(reverse(f"admin:{app}_{model}_changelist")).status_code == expected, model
        assert client.get(first_object_url(app, model)).status_code == expected, model


@pytest.mark.parametrize("persona", PERSONAS)
def test_our_own_pages_need_a_role(client, personas, launch, config, persona):
    client.force_login(personas[persona])
    expected = 403 if persona == "outsider" else 200
    for url in (
        reverse("launches:fleet"),
        reverse("launches:live", args=[launch.pk]),
        reverse("launches:events", args=[launch.pk]),
        reverse("admin:launches_launch_export"),
        reverse("admin:launches_launchconfig_preview") + f"?model={config.model_id}&host={config.host_id}",
    ):
        assert client.get(url).status_code == expected, url


def test_anonymous_visitors_are_sent_to_the_login_page(client, launch):
    for url in (reverse("launches:fleet"), reverse("launches:live", args=[launch.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert client.get(reverse("launches:events", args=[launch.pk])).status_code == 302


@pytest.mark.parametrize("persona", PERSONAS)
def test_only_operators_see_action_buttons_and_edit_controls(client, personas, config, launch, persona):
    client.force_login(personas[persona])
    page = client.get(reverse("admin:launches_launchconfig_change", args=[config.pk]))
    if persona == "outsider":
        assert page.status_code == 403
        return
    html = page.content.decode()
    launch_url = reverse("admin:launches_launchconfig_launch", args=[config.pk])
    is_operator = persona == "operator"
    assert (launch_url in html) is is_operator
    assert (reverse("admin:launches_launchconfig_test_yarn", args=[config.pk]) in html) is is_operator
    assert (reverse("admin:launches_launchconfig_redetect", args=[config.pk]) in html) is is_operator
    assert (reverse("admin:launches_launchconfig_stop", args=[config.pk]) in html) is is_operator
    assert ('name="_save"' in html) is is_operator

    changelist = client.get(reverse("admin:launches_launchconfig_changelist")).content.decode()
    assert ('name="action"' in changelist) is is_operator
    assert (reverse("admin:launches_launchconfig_add") in changelist) is is_operator
    launches = client.get(reverse("admin:launches_launch_changelist")).content.decode()
    assert ("stop_selected" in launches) is is_operator
    live = client.get(reverse("launches:live", args=[launch.pk])).content.decode()
    assert (reverse("admin:launches_launch_stop", args=[launch.pk]) in live) is is_operator


def forged_posts(config: LaunchConfig, running: Launch) -> list[tuple[str, dict]]:
    return [
        (reverse("admin:launches_launchconfig_launch", args=[config.pk]), {}),
        (reverse("admin:launches_launchconfig_test_yarn", args=[config.pk]), {}),
        (reverse("admin:launches_launchconfig_redetect", args=[config.pk]), {}),
        (reverse("admin:launches_launchconfig_stop", args=[config.pk]), {"post": "yes"}),
        (reverse("admin:launches_launch_stop", args=[running.pk]), {"post": "yes"}),
        (
            reverse("admin:launches_launchconfig_changelist"),
            {"action": "launch_selected", "_selected_action": [config.pk], "index": "0"},
        ),
        (
            reverse("admin:launches_launchconfig_changelist"),
            {"action": "stop_selected", "_selected_action": [config.pk], "post": "yes"},
        ),
        (
            reverse("admin:launches_launch_changelist"),
            {"action": "stop_selected", "_selected_action": [running.pk], "post": "yes"},
        ),
        (reverse("admin:launches_launchconfig_change", args=[config.pk]), form_data(config, port="9001")),
        (reverse("admin:launches_launchconfig_delete", args=[config.pk]), {"post": "yes"}),
    ]


@pytest.mark.parametrize("persona", PERSONAS)
def test_forged_posts_are_refused_to_everyone_but_operators_and_change_nothing(
    client, personas, config, persona, gpu
):
    running = make_launch(config, personas["operator"], status=Launch.Status.STARTING)
    client.force_login(personas[persona])
    for url, data in forged_posts(config, running):
        if persona == "operator":
            continue  # what operators may do is tested in test_actions; here: nobody else may
        response = client.post(url, data)
        assert response.status_code == 403, url
    if persona == "operator":
        # The same forms, posted by the operator, are accepted: the refusals above are about rights.
        response = client.post(reverse("admin:launches_launch_stop", args=[running.pk]), {"post": "yes"})
        assert response.status_code == 302
        running.refresh_from_db()
        assert running.status == Launch.Status.STOPPING
        return
    running.refresh_from_db()
    config.refresh_from_db()
    assert running.status == Launch.Status.STARTING
    assert Launch.objects.count() == 1
    assert config.port is None
    assert LaunchConfigChange.objects.count() == 0


def test_a_refusal_page_names_the_role_that_may_do_it(client, viewer, config):
    client.force_login(viewer)
    response = client.post(reverse("admin:launches_launchconfig_launch", args=[config.pk]))
    assert response.status_code == 403
    page = response.content.decode()
    assert "Only operators may launch" in page
    assert "Ask an administrator for the role you need" in page


def test_the_users_list_shows_each_users_role(client, admin_user, operator, viewer, outsider):
    client.force_login(admin_user)
    page = client.get(reverse("admin:auth_user_changelist")).content.decode()
    for username, role in [
        ("olivia-operator", "Operators"),
        ("victor-viewer", "Viewers"),
        ("oscar-outsider", "none (may see nothing)"),
        ("ada-admin", "Administrator"),
    ]:
        row = next(line for line in page.split("<tbody", 1)[1].split("<tr") if username in line)
        assert role in row, row
