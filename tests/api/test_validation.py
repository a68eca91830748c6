"""Bad input through the API: JSON errors with the admin's own sentences, and nothing changed."""

from __future__ import annotations

import pytest

from gpus.models import ModelSpec
from launches.models import Launch, LaunchConfig, LaunchConfigChange
from tests.factories import make_config, make_host, make_launch


def create(client, config, **fields):
    body = {"name": "new", "model": config.model_id, "host": config.host_id, **fields}
    return client.post("/api/v1/configs/", body, format="json")


@pytest.mark.parametrize(
    ("fields", "field", "sentence"),
    [
        (
            {"yarn_factor": "2.3"},
            "yarn_factor",
            "The YaRN factor must be between 1.0 and 8.0 in steps of 0.5",
        ),
        (
            {"yarn_factor": "9.0"},
            "yarn_factor",
            "The YaRN factor must be between 1.0 and 8.0 in steps of 0.5",
        ),
        (
            {"enable_yarn": True, "yarn_factor": "1.0"},
            "yarn_factor",
            "With YaRN on, choose a factor above 1.0",
        ),
        ({"port": 80}, "port", "greater than or equal to 1024"),
        ({"gpu_indices": "0,x"}, "gpu_indices", "List GPU indices as whole numbers"),
        (
            {"tensor_parallel_size": 2},
            "tensor_parallel_size",
            "1 GPU is listed (0): set tensor parallel size to 1, or list 2 GPUs.",
        ),
        ({"extra_args": "--port 9000"}, "extra_args", "--port"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization", "less than or equal to 1.0"),
        ({"model": 999999}, "model", "Select a valid choice"),
        ({"colour": "blue"}, "colour", "Not a field of a launch config."),
    ],
)
def test_a_bad_config_is_refused_with_the_forms_sentence(
    as_operator, config, fields, field, sentence
) -> None:
    response = create(as_operator, config, **fields)
    assert response.status_code == 400, response.content
    body = response.json()
    assert any(sentence in message for message in body["errors"][field]), body
    assert sentence in body["detail"]
    assert not LaunchConfig.objects.filter(name="new").exists()


def test_a_good_config_with_yarn_is_created_and_reports_its_wanted_context(
    as_operator, operator, config
) -> None:
    response = create(as_operator, config, enable_yarn=True, yarn_factor="2.0", context_cap=65536)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["yarn_factor"], body["wanted_context"]) == (2.0, 65536)
    assert LaunchConfig.objects.get(pk=body["id"]).created_by == operator


def test_a_change_is_validated_like_the_form_and_recorded_in_the_change_history(
    as_operator, operator, config
):
    refused = as_operator.patch(
        f"/api/v1/configs/{config.pk}/", {"enable_yarn": True, "yarn_factor": "1.0"}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["errors"]["yarn_factor"] == [
        "With YaRN on, choose a factor above 1.0 (1.0 scales nothing)."
    ]
    config.refresh_from_db()
    assert not config.enable_yarn

    changed = as_operator.patch(
        f"/api/v1/configs/{config.pk}/", {"enable_yarn": True, "yarn_factor": "3.0"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    config.refresh_from_db()
    assert (config.enable_yarn, str(config.yarn_factor), config.quantization) == (True, "3.0", "awq")
    recorded = set(
        LaunchConfigChange.objects.filter(config=config).values_list(
            "field", "old_value", "new_value", "user"
        )
    )
    assert recorded == {("enable_yarn", "no", "yes", operator.pk), ("yarn_factor", "1.0", "3.0", operator.pk)}


def test_a_launch_that_cannot_start_says_why_with_409(as_operator, model_spec) -> None:
    bare = make_config(host=make_host("bare-host"), model=model_spec)
    response = as_operator.post(f"/api/v1/configs/{bare.pk}/launch/")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Host bare-host has not reported GPU 0. Check that its GPU worker is running and the GPU "
        "indices in the config."
    }
    assert not Launch.objects.exists()


def test_a_model_whose_context_is_unknown_cannot_launch_yet(as_operator, config, gpu) -> None:
    ModelSpec.objects.filter(pk=config.model_id).update(native_context=None)
    response = as_operator.post(f"/api/v1/configs/{config.pk}/launch/")
    assert response.status_code == 409
    assert "is not known yet" in response.json()["detail"]
    assert "Read config.json again" in response.json()["detail"]


def test_stopping_an_ended_launch_or_an_idle_config_says_so(as_operator, config, operator) -> None:
    ended = make_launch(config, operator, status=Launch.Status.STOPPED)
    response = as_operator.post(f"/api/v1/launches/{ended.pk}/stop/")
    assert (response.status_code, response.json()) == (
        409,
        {"detail": f"Launch #{ended.pk} has already ended (Stopped)."},
    )
    response = as_operator.post(f"/api/v1/configs/{config.pk}/stop/")
    assert (response.status_code, response.json()) == (
        409,
        {"detail": "Nothing of qwen-desk is running or starting."},
    )


def test_adding_a_model_twice_is_refused_and_adding_one_queues_reading_its_config(
    as_operator, model_spec, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = as_operator.post("/api/v1/models/", {"source": "Qwen/Qwen3-14B-AWQ"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["native_context"] is None
    assert len(callbacks) == 1
    duplicate = as_operator.post("/api/v1/models/", {"source": "Qwen/Qwen3-8B-AWQ"}, format="json")
    assert duplicate.status_code == 400
    assert duplicate.json()["detail"] == "Model with this Source and Revision already exists."
    missing = as_operator.post("/api/v1/models/", {}, format="json")
    assert missing.json() == {
        "detail": "source: This field is required.",
        "errors": {"source": ["This field is required."]},
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [("host=desk", "host"), ("model=x", "model"), ("created_after=yesterday", "created_after")],
)
def test_a_bad_filter_value_says_what_to_give(as_viewer, launch, query, field) -> None:
    response = as_viewer.get(f"/api/v1/launches/?{query}")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_a_config_that_is_not_an_object_is_refused_plainly(as_operator, config) -> None:
    response = as_operator.post("/api/v1/configs/", [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "Send the config's fields as a JSON object."
