"""The OpenAPI schema validates with drf-spectacular's own check and describes every endpoint."""

from __future__ import annotations

import yaml
from django.core.management import call_command


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
    page = client.get("/api/v1/schema/docs/")
    assert page.status_code == 200
    assert b"swagger" in page.content.lower()
