"""The admin history's search (shared with the API) and its deep pages, through the real change list."""

from __future__ import annotations

from django.urls import reverse

from launches.models import Launch
from tests.factories import make_attempt, make_config, make_host, make_launch, make_model, make_user
from tests.ui.test_history import CHANGELIST, fill_history


def shown(response) -> list[int]:
    return [launch.pk for launch in response.context["cl"].result_list]


def test_the_search_box_finds_model_config_name_user_host_port_and_id(client, viewer, config, launch) -> None:
    special_config = make_config(
        "nightly-eval",
        model=make_model("mistralai/Mistral-Small"),
        host=make_host("gpu-rack-9"),
        port=9123,
    )
    special = make_launch(special_config, make_user("eve-evaluator"))
    client.force_login(viewer)
    for term in ("mistral", "NIGHTLY", "eve-eval", "rack-9", "9123", str(special.pk)):
        assert shown(client.get(reverse(CHANGELIST), {"q": term})) == [special.pk], term
    assert shown(client.get(reverse(CHANGELIST), {"q": "qwen"})) == [launch.pk]
    assert shown(client.get(reverse(CHANGELIST), {"q": "nothing-like-this"})) == []


def test_paging_goes_past_page_200_with_the_same_queries_as_page_2(
    client, viewer, config, launch, django_assert_max_num_queries
) -> None:
    fill_history(config, 12_000)
    client.force_login(viewer)
    url = reverse(CHANGELIST)
    ordered = list(Launch.objects.order_by("-created_at", "-id").values_list("pk", flat=True))
    client.get(url, {"p": "2"})
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as second:
        assert shown(client.get(url, {"p": "2"})) == ordered[50:100]
    with django_assert_max_num_queries(len(second)):
        response = client.get(url, {"p": "230"})
    assert shown(response) == ordered[229 * 50 : 230 * 50]


def test_the_attempt_list_shows_the_newest_launchs_attempts_first(client, viewer, launch, config) -> None:
    newer = make_launch(config)
    make_attempt(newer, 1, outcome="ready")
    client.force_login(viewer)
    rows = client.get(reverse("admin:launches_launchattempt_changelist")).context["cl"].result_list
    assert [(row.launch_id, row.number) for row in rows] == [(newer.pk, 1), (launch.pk, 2), (launch.pk, 1)]
