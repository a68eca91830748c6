"""The API tests: the admin UI's small fleet, and a client per persona that sends a real token."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.ui.conftest import config, gpu, host, launch, model_spec, profile  # noqa: F401

PERSONAS = ["anonymous", "outsider", "viewer", "operator", "superuser"]


def token_client(user: User | None) -> APIClient:
    """A client that authenticates as a script would: ``Authorization: Token <key>``."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def api_personas(operator, viewer, outsider, admin_user) -> dict[str, User | None]:
    return {
        "anonymous": None,
        "outsider": outsider,
        "viewer": viewer,
        "operator": operator,
        "superuser": admin_user,
    }


@pytest.fixture
def as_operator(operator) -> APIClient:
    return token_client(operator)


@pytest.fixture
def as_viewer(viewer) -> APIClient:
    return token_client(viewer)
