"""The OpenAPI schema validates with drf-spectacular's own check and describes every endpoint."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command

from tests.ui.test_browser import browser, page  # noqa: F401  (fixtures)


def test_the_schema_validates_without_a_warning(tmp_path, db) -> None:
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    paths = yaml.safe_load(target.read_text())["paths"]
    for path in (
        "/api/v1/hosts/",
        "/api/v1/gpu-profiles/",
        "/api/v1/models/",
        "/api/v1/limits/",
        "/api/v1/configs/{id}/launch/",
        "/api/v1/configs/{id}/test-yarn/",
        "/api/v1/configs/{id}/redetect/",
        "/api/v1/configs/{id}/stop/",
        "/api/v1/launches/",
        "/api/v1/launches/{id}/stop/",
        "/api/v1/launches/{id}/events/",
    ):
        assert path in paths, path


def test_the_schema_and_its_browsable_page_are_served(client, db) -> None:
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "AIfred Launch Control API"
    docs = client.get("/api/v1/schema/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_schema_page_renders_in_chromium_without_network_access(page, live_server) -> None:  # noqa: F811
    from playwright.sync_api import expect

    outside: list[str] = []

    def only_the_site(route) -> None:
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_site)
    page.goto(live_server.url + "/api/v1/schema/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("AIfred Launch Control API")
    assert outside == [], "the schema page must load nothing from outside the site"
