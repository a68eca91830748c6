"""The launch config form refuses out-of-range values with a message that names the field."""

import pytest
from django.urls import reverse

from launches.models import LaunchConfig
from tests.factories import make_gpu, make_host, make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def valid_form(client, operator):
    client.force_login(operator)
    host, model = make_host("gpu-a"), make_model()
    make_gpu(host, 0)
    make_gpu(host, 1)
    return {
        "name": "qwen on gpu-a",
        "model": model.pk,
        "host": host.pk,
        "gpu_indices": "0",
        "port": "",
        "served_model_name": "",
        "gpu_memory_utilization": 0.9,
        "dtype": "auto",
        "quantization": "",
        "kv_cache_dtype": "auto",
        "tensor_parallel_size": 1,
        "max_num_batched_tokens": "",
        "extra_args": "",
        "yarn_factor": "1.0",
        "context_cap": "",
        # The change-history inline's management form, as the browser posts it.
        "changes-TOTAL_FORMS": "0",
        "changes-INITIAL_FORMS": "0",
    }


def _post(client, data):
    return client.post(reverse("admin:launches_launchconfig_add"), data)


def test_a_valid_config_is_saved(client, valid_form):
    response = _post(client, valid_form)
    assert response.status_code == 302
    assert LaunchConfig.objects.filter(name="qwen on gpu-a").exists()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("yarn_factor", "0.5", "between 1.0 and 8.0"),
        ("yarn_factor", "1.25", "in steps of 0.5"),
        ("yarn_factor", "9", "between 1.0 and 8.0"),
        ("gpu_memory_utilization", "0", "greater than or equal to 0.01"),
        ("gpu_memory_utilization", "1.5", "less than or equal to 1.0"),
        ("port", "70000", "less than or equal to 65535"),
        ("port", "8000", "the site's own port"),
        ("extra_args", "--max-model-len 4096", "--max-model-len is managed by the launcher"),
        ("extra_args", "--port=9000", "--port is managed by the launcher"),
        ("extra_args", "--max_model_len 4096", "managed by the launcher"),
        ("extra_args", "--gpu-memory 0.6", "--gpu-memory-utilization (written --gpu-memory) is managed"),
        ("extra_args", "--max-model 1024", "--max-model-len (written --max-model) is managed"),
        ("extra_args", "--por 1", "--port (written --por) is managed"),
        ("extra_args", "--hf-overrides.max_position_embeddings 262144", "--hf-overrides"),
        ("extra_args", '--chat-template "unclosed', "check the quotes"),
        ("gpu_indices", "0,a", "whole numbers"),
        ("context_cap", "0", "greater than or equal to 1"),
    ],
)
def test_a_bad_value_is_refused_with_a_message_on_its_field(client, valid_form, field, value, words):
    response = _post(client, {**valid_form, field: value})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert any(words in message for message in errors[field]), errors[field]
    assert not LaunchConfig.objects.exists()


def test_extra_args_that_manage_nothing_are_kept_as_an_argv_list(client, valid_form):
    _post(client, {**valid_form, "extra_args": "--max-num-seqs 8 --trust-remote-code"})
    config = LaunchConfig.objects.get()
    assert config.extra_args_list == ["--max-num-seqs", "8", "--trust-remote-code"]


def test_tensor_parallel_size_must_match_the_number_of_gpus(client, valid_form):
    response = _post(client, {**valid_form, "tensor_parallel_size": 2})
    assert "tensor_parallel_size" in response.context["adminform"].form.errors
