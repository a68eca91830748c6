"""A config's GPU indices must be cards its host reported; a host that never reported is trusted.

Asked of the admin's config form and of the API, which goes through the same validation.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from launches.models import LaunchConfig
from tests.api.conftest import token_client
from tests.factories import make_gpu, make_host
from tests.ui.conftest import form_data

pytestmark = pytest.mark.django_db


def _add(client, config, host, indices: str, tp: int = 1):
    data = form_data(config, name="new-config", host=host.pk, gpu_indices=indices, tensor_parallel_size=tp)
    return client.post(reverse("admin:launches_launchconfig_add"), data)


def test_an_index_the_host_does_not_have_is_refused_naming_its_cards(client, operator, config):
    client.force_login(operator)
    host = make_host("two-cards")
    make_gpu(host, 0)
    make_gpu(host, 1)
    response = _add(client, config, host, "2")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["gpu_indices"] == [
        "GPU 2 is not on two-cards; its worker reported GPU 0, 1."
    ]
    assert _add(client, config, host, "1").status_code == 302


def test_a_host_without_a_driver_is_said_to_have_no_gpus_and_why(client, operator, config):
    client.force_login(operator)
    host = make_host("no-driver", nvml_status="NVML Shared Library Not Found: No NVIDIA driver")
    response = _add(client, config, host, "0")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["gpu_indices"] == [
        "GPU 0 is not on no-driver: its worker reported no GPUs (no NVIDIA driver found)."
    ]
    assert not LaunchConfig.objects.filter(name="new-config").exists()


def test_a_host_that_never_reported_is_accepted(client, operator, config):
    client.force_login(operator)
    host = make_host("not-up-yet", last_heartbeat=None)
    assert _add(client, config, host, "0,1", tp=2).status_code == 302


def test_the_api_refuses_the_same_indices(operator, config):
    host = make_host("no-cards")
    response = token_client(operator).patch(f"/api/v1/configs/{config.pk}/", {"host": host.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["gpu_indices"] == [
        "GPU 0 is not on no-cards: its worker reported no GPUs."
    ]


@pytest.mark.parametrize("indices", ["", "0,x"])
def test_an_empty_or_malformed_list_is_said_once_without_a_host_check(client, operator, config, indices):
    client.force_login(operator)
    host = make_host("two-cards")
    make_gpu(host, 1)
    response = _add(client, config, host, indices)
    errors = response.context["adminform"].form.errors
    assert len(errors["gpu_indices"]) == 1, errors
    assert "not on two-cards" not in str(errors)


def test_a_tensor_parallel_size_that_does_not_match_the_list_says_how_to_fix_it(client, operator, config):
    client.force_login(operator)
    host = make_host("two-cards")
    make_gpu(host, 0)
    make_gpu(host, 1)
    response = _add(client, config, host, "0,1", tp=1)
    assert response.context["adminform"].form.errors["tensor_parallel_size"] == [
        "2 GPUs are listed (0, 1): set tensor parallel size to 2, or list one GPU."
    ]
    response = _add(client, config, host, "1", tp=2)
    assert response.context["adminform"].form.errors["tensor_parallel_size"] == [
        "1 GPU is listed (1): set tensor parallel size to 1, or list 2 GPUs."
    ]
