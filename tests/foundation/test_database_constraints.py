"""The database itself refuses values the forms refuse, so no path around the forms stores them."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from gpus.models import DetectedLimit, Gpu
from launches.models import LaunchConfig, LaunchEvent
from tests.factories import make_config, make_gpu, make_host, make_launch, make_model, make_profile

pytestmark = pytest.mark.django_db


def _update_refused(config: LaunchConfig, **fields) -> bool:
    try:
        with transaction.atomic():
            LaunchConfig.objects.filter(pk=config.pk).update(**fields)
    except IntegrityError:
        return True
    return False


@pytest.mark.parametrize("factor", ["0.5", "1.2", "1.3", "8.5", "9.0"])
def test_a_yarn_factor_off_the_half_steps_or_outside_1_to_8_is_refused_by_the_database(factor):
    config = make_config()
    assert _update_refused(config, yarn_factor=Decimal(factor))


@pytest.mark.parametrize("factor", ["1.0", "1.5", "4.0", "8.0"])
def test_every_half_step_yarn_factor_is_stored(factor):
    config = make_config()
    assert not _update_refused(config, yarn_factor=Decimal(factor))
    config.refresh_from_db()
    assert config.yarn_factor == Decimal(factor)


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_gpu_memory_utilization_outside_zero_to_one_is_refused_by_the_database(value):
    assert _update_refused(make_config(), gpu_memory_utilization=value)


@pytest.mark.parametrize("port", [80, 70000])
def test_a_port_outside_1024_to_65535_is_refused_by_the_database(port):
    assert _update_refused(make_config(), port=port)


def test_a_context_cap_of_zero_is_refused_by_the_database():
    assert _update_refused(make_config(), context_cap=0)


def test_a_launch_event_number_is_stored_once_per_launch():
    launch = make_launch(make_config())
    LaunchEvent.objects.create(launch=launch, seq=1, kind="attempt_started")
    with pytest.raises(IntegrityError), transaction.atomic():
        LaunchEvent.objects.create(launch=launch, seq=1, kind="attempt_started")


def test_a_limit_is_learned_once_per_gpu_profile_model_and_fingerprint():
    profile, model = make_profile(), make_model()
    fields = {"profile": profile, "model": model, "fingerprint": "abc", "fingerprint_fields": {}}
    DetectedLimit.objects.create(max_model_len=26624, learned_from="refusal", **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        DetectedLimit.objects.create(max_model_len=20000, learned_from="refusal", **fields)
    DetectedLimit.objects.create(
        max_model_len=20000, learned_from="refusal", **{**fields, "fingerprint": "other"}
    )


def test_a_host_slot_holds_one_current_card_but_keeps_retired_ones():
    from django.utils import timezone

    host = make_host()
    old = make_gpu(host, index=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_gpu(host, index=0)
    Gpu.objects.filter(pk=old.pk).update(retired_at=timezone.now(), retired_reason="UUID changed")
    make_gpu(host, index=0)
    assert Gpu.objects.filter(host=host, index=0).count() == 2
    assert Gpu.objects.current().filter(host=host, index=0).count() == 1
