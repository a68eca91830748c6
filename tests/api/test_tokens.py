"""API tokens: drf_create_token gives one, and each user sees and renews their own in the admin."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.api.conftest import token_client

TOKENS = "admin:authtoken_tokenproxy_changelist"


def test_the_management_command_gives_a_token_that_the_api_accepts(viewer) -> None:
    out = StringIO()
    call_command("drf_create_token", viewer.username, stdout=out)
    key = out.getvalue().split()[2]
    assert Token.objects.get(user=viewer).key == key
    client = token_client(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/launches/").status_code == 200


def test_a_user_sees_only_their_own_token_and_renews_it(client, viewer, operator) -> None:
    mine, theirs = Token.objects.create(user=viewer), Token.objects.create(user=operator)
    client.force_login(viewer)
    page = client.get(reverse(TOKENS)).content.decode()
    assert mine.key in page and theirs.key not in page and "Create or renew my API token" in page

    assert client.get(reverse("admin:authtoken_tokenproxy_renew")).status_code == 405
    response = client.post(reverse("admin:authtoken_tokenproxy_renew"), follow=True)
    assert b"Your API token was renewed" in response.content
    renewed = Token.objects.get(user=viewer)
    assert renewed.key != mine.key
    assert token_client(viewer).get("/api/v1/hosts/").status_code == 200
    stale = token_client(None)
    stale.credentials(HTTP_AUTHORIZATION=f"Token {mine.key}")
    assert stale.get("/api/v1/hosts/").status_code == 401
    assert Token.objects.get(user=operator).key == theirs.key


def test_a_superuser_sees_every_users_row_but_only_their_own_key(client, admin_user, viewer) -> None:
    other = Token.objects.create(user=viewer)
    own = Token.objects.create(user=admin_user)
    client.force_login(admin_user)
    page = client.get(reverse(TOKENS)).content.decode()
    assert viewer.username in page and other.key not in page and own.key in page


def test_someone_without_a_role_has_no_token_page(client, outsider) -> None:
    client.force_login(outsider)
    assert client.get(reverse(TOKENS)).status_code == 403
    assert client.post(reverse("admin:authtoken_tokenproxy_renew")).status_code == 403
    assert not Token.objects.filter(user=outsider).exists()
