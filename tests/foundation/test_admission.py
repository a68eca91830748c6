"""Admission sends the host the lengths of its own vLLM version, and what a launch learns is keyed by
what the launch row says, not by what was sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpus.fingerprint import memory_fingerprint
from gpus.models import DetectedLimit, ModelSpec
from launches.admin_views import LaunchConfigViews
from launches.contract import LaunchSpec
from launches.models import Launch
from tests.factories import make_config, make_gpu, make_host, make_model
from tests.vllm.test_model_configs import CONFIG_DIR, YARN_QWEN

pytestmark = pytest.mark.django_db

# YaRN in the config: up to vLLM 0.29 the length is original × factor (131,072), from 0.30.0 it is
# max_position_embeddings (32,768).
YARN_IN_CONFIG = {**YARN_QWEN, "rope_theta": 500000.0}


def model_read_from(folder: Path, config: dict) -> ModelSpec:
    """A model whose config.json is read as the control worker reads it (``refresh_facts``)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    model = make_model(str(folder), native_context=None)
    assert model.refresh_facts(), model.facts_error
    return model


def launch_on(version: str, model: ModelSpec, **config_fields) -> Launch:
    host = make_host(vllm_version=version)
    make_gpu(host, 0)
    return Launch.objects.start(make_config(host=host, model=model, **config_fields), user=None)


def test_a_host_on_an_older_vllm_gets_the_lengths_its_version_derives(tmp_path) -> None:
    model = model_read_from(tmp_path / "yarn-qwen", YARN_IN_CONFIG)
    assert model.native_context == 32768, "the row shows the newest rules"

    old = launch_on("0.29.0", model)
    assert (old.spec["native_context"], old.spec["default_context"]) == (131072, 131072)
    assert old.spec["rope_theta"] == 500000.0
    assert old.wanted_context == 131072
    assert LaunchConfigViews.preview_data(old.config)["native_context"] == 131072

    new = launch_on("0.32.0", model)
    assert (new.spec["native_context"], new.spec["default_context"], new.wanted_context) == (32768,) * 3
    assert LaunchConfigViews.preview_data(new.config)["native_context"] == 32768


def test_disabling_the_sliding_window_in_the_extra_arguments_caps_the_lengths_sent(tmp_path) -> None:
    config = json.loads((CONFIG_DIR / "Mistral-7B-Instruct-v0.1.json").read_text())
    model = model_read_from(tmp_path / "mistral", config)
    plain = launch_on("0.32.0", model)
    capped = launch_on("0.32.0", model, extra_args="--disable-sliding-window")
    assert (plain.spec["native_context"], plain.wanted_context) == (32768, 32768)
    capped_lengths = (capped.spec["native_context"], capped.spec["default_context"], capped.wanted_context)
    assert capped_lengths == (4096, 4096, 4096)


def test_a_model_read_before_the_full_facts_were_kept_launches_with_its_stored_lengths() -> None:
    host = make_host(vllm_version="0.29.0")
    make_gpu(host, 0)
    config = make_config(host=host, model=make_model(native_context=32768, default_context=4096))
    assert config.model.facts is None
    launch = Launch.objects.start(config, user=None)
    assert (launch.spec["native_context"], launch.spec["default_context"], launch.spec["rope_theta"]) == (
        32768,
        4096,
        None,
    )


def test_the_spec_carries_only_what_the_host_reads() -> None:
    host = make_host()
    make_gpu(host, 0)
    launch = Launch.objects.start(make_config(host=host), user=None)
    assert set(launch.spec) == set(LaunchSpec.__dataclass_fields__)
    assert not {"base_command", "vllm_version", "fingerprint", "fingerprint_fields"} & set(launch.spec)
    assert LaunchSpec.from_dict(launch.spec).to_dict() == launch.spec


def test_a_limit_is_learned_under_the_options_and_version_the_launch_was_asked_for() -> None:
    host = make_host(vllm_version="0.29.0")
    make_gpu(host, 0)
    config = make_config(host=host, quantization="awq", extra_args="--block-size 32")
    launch = Launch.objects.start(config, user=None)
    # The host is upgraded while the launch runs; the spec it was sent says nothing of the options.
    host.vllm_version = "0.32.0"
    host.save(update_fields=["vllm_version"])
    launch = Launch.objects.select_related("host").get(pk=launch.pk)

    limit = DetectedLimit.objects.learn(launch, 26624, "refusal", 27000)

    fingerprint, fields = memory_fingerprint({**config.memory_options(), "vllm_version": "0.29.0"})
    assert (limit.fingerprint, limit.fingerprint_fields) == (fingerprint, fields)
    assert limit.vllm_version == "0.29.0"
    assert launch.fingerprint == fingerprint
    assert fields["extra_args"] == ["--block-size", "32"]


def test_facts_a_host_reports_are_kept_whole_when_they_parse_and_only_as_lengths_when_not() -> None:
    from launches.vllm.modelinfo import facts_from_config

    launch = launch_on("0.29.0", make_model("acme/yarn-qwen"))
    reported = facts_from_config(YARN_IN_CONFIG, model="acme/yarn-qwen").to_dict()
    launch.apply_event(1, "model_facts", json.loads(json.dumps(reported)))
    model = ModelSpec.objects.get(pk=launch.model_id)
    assert model.lengths_for("0.29.0") == (131072, 131072, 500000.0)
    assert model.lengths_for("0.32.0", ["--disable-sliding-window"]) == (32768, 32768, 500000.0)

    model.apply_facts({"native_context": 32768, "default_context": 32768})
    model.refresh_from_db()
    assert model.facts is None and model.lengths_for("0.29.0") == (32768, 32768, None)
