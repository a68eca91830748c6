"""The launch config form: the server's rules, the preview's data and the change history."""

from __future__ import annotations

import pytest
from django.urls import reverse

from launches.models import LaunchConfig, LaunchConfigChange
from tests.factories import learn_limit
from tests.ui.conftest import form_data


def change_url(config: LaunchConfig) -> str:
    return reverse("admin:launches_launchconfig_change", args=[config.pk])


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("yarn_factor", "0.5", "between 1.0 and 8.0"),
        ("yarn_factor", "1.25", "between 1.0 and 8.0"),
        ("yarn_factor", "9", "between 1.0 and 8.0"),
        ("gpu_memory_utilization", "0", "greater than or equal to 0.01"),
        ("gpu_memory_utilization", "1.5", "less than or equal to 1.0"),
        ("port", "70000", "less than or equal to 65535"),
        ("extra_args", "--max-model-len 9000", "--max-model-len is managed by the launcher"),
        ("extra_args", "--enable-prefix-caching --port=9000", "--port is managed by the launcher"),
    ],
)
def test_bad_values_are_rejected_by_the_admin_form_with_a_message_on_the_field(
    client, operator, config, field, value, words
):
    client.force_login(operator)
    changes = {field: value}
    if field == "yarn_factor":
        changes["enable_yarn"] = "on"
    response = client.post(change_url(config), form_data(config, **changes))
    assert response.status_code == 200, "the form comes back instead of saving"
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert words in " ".join(errors[field])
    assert words.encode() in response.content
    assert LaunchConfigChange.objects.count() == 0


def test_yarn_on_with_factor_one_is_refused_because_it_scales_nothing(client, operator, config):
    client.force_login(operator)
    response = client.post(change_url(config), form_data(config, enable_yarn="on", yarn_factor="1.0"))
    assert "scales nothing" in " ".join(response.context["adminform"].form.errors["yarn_factor"])


def test_a_factor_kept_while_yarn_is_off_is_saved_and_ignored(client, operator, config):
    client.force_login(operator)
    response = client.post(change_url(config), form_data(config, yarn_factor="2.5"))
    assert response.status_code == 302
    config.refresh_from_db()
    assert str(config.yarn_factor) == "2.5"
    assert config.wanted_context() == 40960


def test_the_factor_field_is_a_number_from_1_to_8_in_half_steps(client, operator, config):
    client.force_login(operator)
    html = client.get(change_url(config)).content.decode()
    field = html[html.index('name="yarn_factor"') - 200 : html.index('name="yarn_factor"') + 200]
    for attribute in ('type="number"', 'min="1"', 'max="8"', 'step="0.5"'):
        assert attribute in field


def test_saving_records_who_changed_which_field_from_what_to_what(client, operator, config):
    client.force_login(operator)
    response = client.post(
        change_url(config), form_data(config, enable_yarn="on", yarn_factor="2.0", port="8001")
    )
    assert response.status_code == 302
    changes = {c.field: c for c in LaunchConfigChange.objects.all()}
    assert set(changes) == {"enable_yarn", "yarn_factor", "port"}
    assert (changes["port"].old_value, changes["port"].new_value) == ("empty (picked by the host)", "8001")
    assert (changes["enable_yarn"].old_value, changes["enable_yarn"].new_value) == ("no", "yes")
    assert (changes["yarn_factor"].old_value, changes["yarn_factor"].new_value) == ("1.0", "2.0")
    assert all(c.user == operator for c in changes.values())

    page = client.get(change_url(config)).content.decode()
    assert "change history" in page.lower()
    assert "8001" in page


def test_saving_without_changes_records_nothing(client, operator, config):
    client.force_login(operator)
    client.post(change_url(config), form_data(config))
    assert LaunchConfigChange.objects.count() == 0


def preview(client, config: LaunchConfig, **changes) -> dict:
    params = {
        "model": config.model_id,
        "host": config.host_id,
        "gpu_indices": config.gpu_indices,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
        "quantization": config.quantization,
        "kv_cache_dtype": config.kv_cache_dtype,
        "tensor_parallel_size": config.tensor_parallel_size,
        **changes,
    }
    response = client.get(reverse("admin:launches_launchconfig_preview"), params)
    assert response.status_code == 200
    return response.json()


def test_the_preview_gives_native_context_and_the_limit_learned_for_the_hosts_gpu(
    client, viewer, config, profile
):
    client.force_login(viewer)
    assert preview(client, config)["hw_limit"] is None, "nothing learned yet"
    learn_limit(config, profile, 26624)
    data = preview(client, config)
    assert data["native_context"] == 40960
    assert data["hw_limit"] == 26624
    assert data["profile"] == "NVIDIA GeForce RTX 3060 (12 GiB)"


def test_the_preview_says_whether_the_limit_is_a_measured_ceiling_or_only_a_length_that_fitted(
    client, viewer, config, profile
):
    client.force_login(viewer)
    limit = learn_limit(config, profile, 40960, learned_from="fits")
    data = preview(client, config)
    assert (data["hw_limit"], data["hw_limit_is_ceiling"]) == (40960, False)
    limit.learned_from = "refusal"
    limit.save()
    assert preview(client, config)["hw_limit_is_ceiling"] is True


def test_the_preview_follows_the_memory_options_being_edited(client, viewer, config, profile):
    learn_limit(config, profile, 26624)
    client.force_login(viewer)
    assert preview(client, config, gpu_memory_utilization="0.8")["hw_limit"] is None
    assert preview(client, config, gpu_indices="3")["profile"] is None
    incomplete = preview(client, config, gpu_memory_utilization="7")
    assert incomplete["native_context"] == 40960
    assert "problem" in incomplete


def test_the_config_page_embeds_the_saved_preview_for_read_only_visitors(client, viewer, config, profile):
    learn_limit(config, profile, 26624)
    client.force_login(viewer)
    html = client.get(change_url(config)).content.decode()
    assert 'id="context-preview-initial"' in html
    assert '"hw_limit": 26624' in html
    assert "launches/config_form.js" in html


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {"factor": 1.0, "scaled_context": 40960, "wanted_context": 40960, "lowered_to_cap": False}),
        (
            {"enable_yarn": "on", "yarn_factor": "2.0"},
            {"factor": 2.0, "scaled_context": 81920, "wanted_context": 81920, "lowered_to_cap": False},
        ),
        (
            {"enable_yarn": "on", "yarn_factor": "2.5", "context_cap": "60000"},
            {"factor": 2.5, "scaled_context": 102400, "wanted_context": 60000, "lowered_to_cap": True},
        ),
        (
            {"yarn_factor": "4.0", "context_cap": "30000"},
            {"factor": 1.0, "scaled_context": 40960, "wanted_context": 30000, "lowered_to_cap": True},
        ),
        (
            {"enable_yarn": "on", "yarn_factor": "1.3"},
            {"factor_valid": False, "factor": 1.0, "wanted_context": 40960},
        ),
    ],
)
def test_the_preview_computes_the_wanted_length_of_the_values_being_edited(
    client, viewer, config, changes, expected
):
    client.force_login(viewer)
    data = preview(client, config, **changes)
    assert {key: data[key] for key in expected} == expected
    assert data["factor_valid"] is expected.get("factor_valid", True)


@pytest.mark.parametrize(
    ("learned_from", "cap", "serves", "above"),
    [("refusal", "", 26624, True), ("refusal", "20000", 20000, False), ("fits", "", None, True)],
)
def test_the_preview_says_what_a_yarn_launch_serves_under_the_learned_limit(
    client, viewer, config, profile, learned_from, cap, serves, above
):
    learn_limit(config, profile, 26624, learned_from=learned_from)
    client.force_login(viewer)
    data = preview(client, config, enable_yarn="on", yarn_factor="2.0", context_cap=cap)
    assert (data["serves"], data["above_hw_limit"]) == (serves, above)
