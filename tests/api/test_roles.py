"""Who may read and do what through the API: the role matrix, asked of every endpoint and action.

Anonymous requests get 401, a user without a role 403, Viewers read, Operators (and superusers) act,
and nobody edits history. Refusals carry the admin's sentences.
"""

from __future__ import annotations

import pytest

from launches.models import Launch
from launches.permissions import NO_ROLE, OPERATORS_ONLY
from tests.api.conftest import PERSONAS, token_client
from tests.factories import learn_limit

READERS = {"viewer", "operator", "superuser"}
ACTORS = {"operator", "superuser"}


@pytest.fixture
def rows(config, launch, profile):
    """One row of every kind the API shows: host with a card, profile, model, limit, config, launch."""
    learn_limit(config, profile)
    return {"config": config, "launch": launch}


def read_urls(rows) -> list[str]:
    config, launch = rows["config"], rows["launch"]
    urls = [
        f"/api/v1/{name}/" for name in ("hosts", "gpu-profiles", "models", "limits", "configs", "launches")
    ]
    urls += [
        f"/api/v1/hosts/{config.host_id}/",
        f"/api/v1/gpu-profiles/{launch.gpu_profile_id}/",
        f"/api/v1/models/{config.model_id}/",
        f"/api/v1/limits/{config.model.limits.get().pk}/",
        f"/api/v1/configs/{config.pk}/",
        f"/api/v1/launches/{launch.pk}/",
        f"/api/v1/launches/{launch.pk}/events/?after=2",
        "/api/v1/",
    ]
    return urls


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_list_and_detail_is_readable_by_roles_only(api_personas, rows, persona) -> None:
    client = token_client(api_personas[persona])
    for url in read_urls(rows):
        response = client.get(url)
        expected = 200 if persona in READERS else 401 if persona == "anonymous" else 403
        assert response.status_code == expected, (url, response.content)
        if persona == "outsider":
            assert response.json() == {"detail": NO_ROLE}


def actions(rows) -> list[tuple[str, str, dict, int]]:
    """(method, url, body, status for an operator): every write the API offers."""
    config, launch = rows["config"], rows["launch"]
    return [
        ("post", "/api/v1/models/", {"source": "org/new-model"}, 201),
        ("post", f"/api/v1/models/{config.model_id}/read-config/", {}, 202),
        (
            "post",
            "/api/v1/configs/",
            {"name": "new", "model": config.model_id, "host": config.host_id, "port": 8100},
            201,
        ),
        ("patch", f"/api/v1/configs/{config.pk}/", {"port": 8200}, 200),
        (
            "put",
            f"/api/v1/configs/{config.pk}/",
            {"name": "renamed", "model": config.model_id, "host": config.host_id},
            200,
        ),
        ("post", f"/api/v1/configs/{config.pk}/stop/", {}, 202),
        ("post", f"/api/v1/launches/{launch.pk}/stop/", {}, 202),
    ]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("index", range(7))
def test_every_action_is_for_operators_only(api_personas, rows, persona, index) -> None:
    method, url, body, operator_status = actions(rows)[index]
    client = token_client(api_personas[persona])
    response = getattr(client, method)(url, body, format="json")
    expected = operator_status if persona in ACTORS else 401 if persona == "anonymous" else 403
    assert response.status_code == expected, response.content
    if persona == "viewer":
        assert "Only operators may" in response.json()["detail"]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("kind", ["launch", "test-yarn", "redetect"])
def test_starting_from_a_config_is_for_operators_only(api_personas, config, gpu, persona, kind) -> None:
    client = token_client(api_personas[persona])
    response = client.post(f"/api/v1/configs/{config.pk}/{kind}/")
    if persona not in ACTORS:
        assert response.status_code == (401 if persona == "anonymous" else 403)
        assert not Launch.objects.exists()
        if persona == "viewer":
            assert response.json() == {"detail": OPERATORS_ONLY}
        return
    assert response.status_code == 201, response.content
    launch = Launch.objects.get(pk=response.json()["id"])
    assert (launch.kind, launch.status, launch.requested_by) == (
        kind.replace("-", "_"),
        "queued",
        api_personas[persona],
    )


@pytest.mark.parametrize("persona", PERSONAS)
def test_nobody_edits_history_or_learned_limits(api_personas, rows, persona) -> None:
    client = token_client(api_personas[persona])
    launch = rows["launch"]
    limit = rows["config"].model.limits.get()
    attempts = [
        ("patch", f"/api/v1/launches/{launch.pk}/", {"status": "failed"}),
        ("put", f"/api/v1/launches/{launch.pk}/", {"status": "failed"}),
        ("delete", f"/api/v1/launches/{launch.pk}/", {}),
        ("post", "/api/v1/launches/", {"config": rows["config"].pk}),
        ("patch", f"/api/v1/limits/{limit.pk}/", {"max_model_len": 99999}),
        ("delete", f"/api/v1/limits/{limit.pk}/", {}),
        ("post", "/api/v1/hosts/", {"name": "intruder"}),
    ]
    for method, url, body in attempts:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == (401 if persona == "anonymous" else 403), (method, url)
    launch.refresh_from_db()
    limit.refresh_from_db()
    assert (launch.status, limit.max_model_len) == ("ready", 26624)


def test_the_admin_session_works_for_the_browser_too(client, viewer, rows) -> None:
    client.force_login(viewer)
    assert client.get("/api/v1/launches/").status_code == 200
    assert client.get("/api/v1/launches/", HTTP_ACCEPT="text/html").status_code == 200


def test_a_wrong_token_is_refused_with_401(db, rows) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    response = client.get("/api/v1/launches/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}
