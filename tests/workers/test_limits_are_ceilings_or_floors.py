"""A measured ceiling is the known limit; a length that merely fitted is a floor.

Above a floor, the KV capacity vLLM logged is passed on as a hint for where to start.
"""

from decimal import Decimal

import pytest
from django.db import transaction

from gpus.models import DetectedLimit
from launches.models import Launch
from tests.factories import make_config, make_gpu, make_host, make_model, make_profile

pytestmark = pytest.mark.django_db


@pytest.fixture
def config():
    host = make_host("desk")
    make_gpu(host, profile=make_profile())
    return make_config(host=host, model=make_model(native_context=40960))


def _launch(config, operator=None, kind: str = Launch.Kind.LAUNCH) -> Launch:
    # One launch at a time per GPU: the earlier ones of a test have ended.
    Launch.objects.filter(host=config.host).update(status=Launch.Status.STOPPED)
    with transaction.atomic():
        return Launch.objects.start(config, operator, kind=kind)


def _learn(launch, tokens, learned_from, kv=None) -> DetectedLimit:
    return DetectedLimit.objects.learn(launch, tokens, learned_from, kv)


def test_a_length_that_fitted_never_overwrites_a_measured_ceiling_but_refreshes_the_kv_capacity(config):
    launch = _launch(config)
    _learn(launch, 26624, "refusal", 26800)
    limit = _learn(launch, 20000, "fits", 27000)
    assert (limit.max_model_len, limit.learned_from, limit.kv_capacity_tokens) == (26624, "refusal", 27000)


def test_a_larger_fitting_length_raises_the_floor_and_a_refusal_replaces_it(config):
    launch = _launch(config)
    _learn(launch, 40960, "fits", 90000)
    assert _learn(launch, 30000, "fits").max_model_len == 40960
    assert _learn(launch, 81920, "fits").max_model_len == 81920
    limit = _learn(launch, 85000, "refusal")
    assert (limit.max_model_len, limit.learned_from) == (85000, "refusal")
    assert DetectedLimit.objects.count() == 1


def test_a_measured_ceiling_becomes_the_known_limit_of_the_next_launch(config):
    _learn(_launch(config), 26624, "refusal", 26800)
    config.enable_yarn, config.yarn_factor = True, Decimal("4.0")
    config.save()
    spec = _launch(config).spec
    assert (spec["known_limit"], spec["ceiling_hint"]) == (26624, None)


def test_above_a_fitting_floor_only_the_kv_capacity_guides_the_next_start(config):
    _learn(_launch(config), 40960, "fits", 90000)
    plain = _launch(config)
    assert (plain.spec["known_limit"], plain.spec["ceiling_hint"]) == (40960, None)
    config.enable_yarn, config.yarn_factor = True, Decimal("4.0")
    config.save()
    yarn = _launch(config)
    assert (yarn.known_limit, yarn.spec["ceiling_hint"], yarn.wanted_context) == (None, 90000, 163840)


def test_a_re_detect_starts_without_the_known_limit_and_replaces_it_whatever_it_finds(config):
    _learn(_launch(config), 26624, "refusal")
    redetect = _launch(config, kind=Launch.Kind.REDETECT)
    assert redetect.known_limit is None and redetect.spec["known_limit"] is None
    limit = _learn(redetect, 40960, "fits", 52000)
    assert (limit.max_model_len, limit.learned_from, limit.launch_id) == (40960, "fits", redetect.pk)


def test_a_hybrid_models_kv_capacity_below_the_length_that_served_is_never_a_hint(config):
    # Kimi-Linear logged 75,840 tokens of KV cache and served 120,000.
    _learn(_launch(config), 40960, "fits", 30000)
    config.enable_yarn, config.yarn_factor = True, Decimal("4.0")
    config.save()
    yarn = _launch(config)
    assert (yarn.known_limit, yarn.spec["ceiling_hint"]) == (None, None)


def test_a_launch_with_a_memory_changing_extra_flag_learns_under_a_different_fingerprint(config):
    plain = _launch(config)
    _learn(plain, 26624, "refusal")
    config.extra_args = "--block-size 32 --chat-template /t.jinja"
    config.save()
    changed = _launch(config)
    assert changed.fingerprint != plain.fingerprint
    assert changed.known_limit is None
    _learn(changed, 20000, "refusal")
    assert sorted(DetectedLimit.objects.values_list("max_model_len", flat=True)) == [20000, 26624]
    config.extra_args = "--chat-template /t.jinja --enable-auto-tool-choice"
    config.save()
    neutral = _launch(config)
    assert (neutral.fingerprint, neutral.known_limit) == (plain.fingerprint, 26624)


def test_a_max_num_seqs_vllm_named_is_learned_and_sent_with_the_next_launch(config):
    first = _launch(config)
    first.apply_event(
        1,
        "limit_learned",
        {"max_model_len": 40960, "learned_from": "fits", "kv_capacity_tokens": 30000, "max_num_seqs": 969},
    )
    assert DetectedLimit.objects.get().max_num_seqs == 969
    assert _launch(config).spec["max_num_seqs"] == 969
