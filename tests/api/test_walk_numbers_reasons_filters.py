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
