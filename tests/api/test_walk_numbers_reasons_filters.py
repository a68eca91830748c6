"""What a new user met in the API: reasons said with signal names, numbers as numbers, filters by name."""

from __future__ import annotations

import pytest

from launches.models import Launch

pytestmark = pytest.mark.django_db


def test_a_launch_killed_by_a_signal_says_which_signal(as_viewer, launch):
    Launch.objects.filter(pk=launch.pk).update(status=Launch.Status.FAILED, reason="vLLM exited with code -9")
    row = as_viewer.get(f"/api/v1/launches/{launch.pk}/").json()
    assert row["reason"] == "vLLM was killed by signal 9 (SIGKILL)"
    listed = as_viewer.get("/api/v1/launches/").json()["results"]
    assert listed[0]["reason"] == "vLLM was killed by signal 9 (SIGKILL)"


def test_a_yarn_factor_is_a_number(as_operator, config):
    response = as_operator.patch(f"/api/v1/configs/{config.pk}/", {"yarn_factor": 2}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["yarn_factor"] == 2.0
    assert isinstance(response.json()["yarn_factor"], float)


def test_the_history_filters_by_user_host_and_model_names(as_viewer, launch):
    by_name = {
        "requested_by": launch.requested_by.username,
        "host": launch.host.name,
        "model": launch.model.source,
    }
    found = as_viewer.get("/api/v1/launches/", by_name)
    assert found.status_code == 200, found.json()
    assert [row["id"] for row in found.json()["results"]] == [launch.pk]
    by_id = {"requested_by": launch.requested_by_id, "host": launch.host_id, "model": launch.model_id}
    assert [row["id"] for row in as_viewer.get("/api/v1/launches/", by_id).json()["results"]] == [launch.pk]


def test_an_unknown_name_is_refused_naming_the_parameter(as_viewer, launch):
    response = as_viewer.get("/api/v1/launches/", {"requested_by": "nobody-here"})
    assert response.status_code == 400
    assert response.json()["errors"]["requested_by"] == [
        "There is no user with id or username 'nobody-here'; give the number or username of one."
    ]


def test_every_bad_parameter_is_reported_in_one_answer(as_viewer, launch):
    response = as_viewer.get(
        "/api/v1/launches/", {"kind": "nope", "outcome": "zzz", "host": "no-such-host", "created_after": "x"}
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"kind", "outcome", "host", "created_after"}
