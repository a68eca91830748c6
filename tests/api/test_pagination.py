"""The launch list pages with a cursor, costs the same few queries on every page, and filters and
searches like the admin's history."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from launches.models import Launch
from tests.factories import make_config, make_host, make_launch, make_model, make_user


@pytest.fixture
def history(config, operator, viewer) -> list[Launch]:
    """130 launches, one a minute, alternating users; the newest first."""
    base = timezone.now() - dt.timedelta(days=1)
    made = []
    for number in range(130):
        user = operator if number % 2 else viewer
        launch = make_launch(config, user, status="stopped" if number % 3 else "failed")
        Launch.objects.filter(pk=launch.pk).update(created_at=base + dt.timedelta(minutes=number))
        made.append(launch.pk)
    return list(reversed(made))


def walk(client, url: str) -> tuple[list[int], int]:
    ids, pages = [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert "count" not in body  # a cursor page never counts the table
        ids += [row["id"] for row in body["results"]]
        url, pages = body["next"], pages + 1
    return ids, pages


def test_the_cursor_walks_every_launch_once_newest_first(as_viewer, history) -> None:
    ids, pages = walk(as_viewer, "/api/v1/launches/?page_size=20")
    assert ids == history
    assert pages == 7


def test_the_cursor_walks_back_as_well(as_viewer, history) -> None:
    first = as_viewer.get("/api/v1/launches/?page_size=50").json()
    second = as_viewer.get(first["next"]).json()
    back = as_viewer.get(second["previous"]).json()
    assert [row["id"] for row in back["results"]] == history[:50]


def test_every_page_costs_the_same_number_of_queries(as_viewer, history, django_assert_num_queries) -> None:
    # The token with its user, the user's and the groups' permissions, then the page of launches with
    # its related rows in one join.
    url = "/api/v1/launches/?page_size=10"
    for _ in range(5):
        with django_assert_num_queries(4):
            body = as_viewer.get(url).json()
        url = body["next"]
    # A search asks the three small tables once each, then the launches.
    with django_assert_num_queries(7):
        as_viewer.get("/api/v1/launches/?search=qwen&page_size=10")


def test_the_filters_are_the_historys(as_viewer, history, config, operator) -> None:
    other_host = make_host("lab-h100")
    lone = make_launch(
        config, operator, host=other_host, status="crashed", outcome="crashed", kind="test_yarn"
    )

    def by(query):
        return [
            row["id"] for row in as_viewer.get(f"/api/v1/launches/?{query}&page_size=200").json()["results"]
        ]

    assert by(f"host={other_host.pk}") == [lone.pk]
    assert by("status=crashed") == [lone.pk]
    assert by("outcome=crashed") == [lone.pk]
    assert by("kind=test_yarn") == [lone.pk]
    assert len(by(f"requested_by={operator.pk}")) == 66
    assert len(by(f"model={config.model_id}&status=failed")) == 44
    recent = (timezone.now() - dt.timedelta(hours=2)).isoformat()
    assert by(f"created_after={recent.replace('+', '%2B')}") == [lone.pk]


def test_the_search_finds_model_config_name_user_host_port_and_id(
    as_viewer, history, config, operator
) -> None:
    special = make_launch(
        make_config(
            "nightly-eval",
            model=make_model("mistralai/Mistral-Small"),
            host=make_host("gpu-rack-9"),
            port=9123,
        ),
        make_user("eve-evaluator"),
    )

    def search(term):
        return [row["id"] for row in as_viewer.get(f"/api/v1/launches/?search={term}").json()["results"]]

    for term in ("mistral", "NIGHTLY", "eve-eval", "rack-9", "9123", str(special.pk)):
        assert special.pk in search(term), term
    assert search("mistral") == [special.pk]
    assert search("nothing-like-this") == []
