"""The launch spec and the events parse once on arrival, and what does not parse names its field."""

from __future__ import annotations

import json

import pytest

from launches import contract
from launches.contract import (
    HISTORY_ONLY_KINDS,
    MEMORY_OPTION_FIELDS,
    MEMORY_OPTION_FLAGS,
    ContractError,
    EventKind,
    LaunchSpec,
    MemoryOptions,
    Outcome,
    parse_event,
    wanted_length,
)
from launches.verdicts import OUTCOME_LABELS

SPEC = LaunchSpec(launch_id=7, spec_id="0b1c", model="Qwen/Qwen3-8B-AWQ", port=8001, gpu_indices=[0, 1])


def test_a_launch_spec_survives_a_trip_through_json() -> None:
    assert LaunchSpec.from_dict(json.loads(json.dumps(SPEC.to_dict()))) == SPEC


def test_a_spec_stored_with_fields_no_host_reads_still_parses_without_them() -> None:
    stored = {
        **SPEC.to_dict(),
        "base_command": ["vllm", "serve"],
        "vllm_version": "0.32.0",
        "fingerprint": "0f3a",
        "fingerprint_fields": {"quantization": "awq"},
    }
    assert LaunchSpec.from_dict(stored) == SPEC
    assert not {"base_command", "vllm_version", "fingerprint", "fingerprint_fields"} & set(SPEC.to_dict())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"spec_id": None}, "spec_id"),
        ({"launch_id": "7"}, "launch_id"),
        ({"port": 70000}, "port"),
        ({"gpu_indices": []}, "gpu_indices"),
        ({"yarn_factor": 9}, "yarn_factor"),
        ({"known_limit": 0}, "known_limit"),
        ({"options": []}, "options"),
    ],
)
def test_a_bad_launch_spec_is_refused_with_the_field_named(change: dict, field: str) -> None:
    with pytest.raises(ContractError, match=rf"^{field}:"):
        LaunchSpec.from_dict({**SPEC.to_dict(), **change})


def test_every_event_kind_parses_with_the_keys_it_needs() -> None:
    ready = parse_event(7, 3, "ready", {"url": "http://h:8001", "max_model_len": 26624})
    assert ready.kind is EventKind.READY and ready.seq == 3


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((7, 0, "ready", {}), "seq"),
        ((7, 1, "exploded", {}), "kind"),
        ((7, 1, "ready", []), "data"),
        ((7, 1, "ready", {"max_model_len": 4096}), "data.url"),
        ((7, 1, "limit_learned", {"max_model_len": "4096"}), "data.max_model_len"),
        ((7, 1, "attempt_started", {"attempt": "1", "argv": []}), "data.attempt"),
        ((7, 1, "failed", {"reason": True}), "data.reason"),
    ],
)
def test_a_malformed_event_is_refused_with_the_field_named(args: tuple, field: str) -> None:
    with pytest.raises(ContractError, match=rf"^{field}:"):
        parse_event(*args)


@pytest.mark.django_db
def test_an_event_the_worker_itself_garbled_is_stepped_over_once_the_grace_has_passed(settings) -> None:
    from launches.models import Launch
    from tests.factories import make_config, make_gpu, make_host

    host = make_host()
    make_gpu(host, 0)
    launch = Launch.objects.start(make_config(host=host), user=None)
    launch.apply_event(1, "accepted", {"host": host.name})
    launch.apply_event(2, "attempt_started", {"attempt": "one", "argv": []})
    launch.apply_event(3, "attempt_started", {"attempt": 1, "argv": ["vllm", "serve"]})
    launch.refresh_from_db()
    # The real event 2 may still come: event 3 waits.
    assert launch.last_seq == 1 and launch.refused_events.get().seq == 2

    settings.RECONCILE_GRACE_SECONDS = 0
    launch.apply_event(3, "attempt_started", {"attempt": 1, "argv": ["vllm", "serve"]})
    launch.refresh_from_db()
    assert launch.last_seq == 3 and launch.attempts.get().argv == ["vllm", "serve"]


def test_every_outcome_has_the_words_people_see_and_the_labels_come_from_the_enum() -> None:
    assert all(outcome.label for outcome in Outcome)
    assert {str(outcome): outcome.label for outcome in Outcome} == OUTCOME_LABELS


def test_the_control_worker_registers_every_task_name_the_contract_sends_to_it(settings) -> None:
    from aifred_site.celery import app
    from launches import tasks  # noqa: F401  (registers the control tasks)

    names = [value for name, value in vars(contract).items() if name.endswith("_TASK")]
    control = [name for name in names if name.startswith("launches.control.")]
    assert control and all(name in app.tasks for name in control)
    assert settings.CELERY_BEAT_SCHEDULE["mark-lost-launches"]["task"] == contract.MARK_LOST_LAUNCHES_TASK


def test_the_gpu_worker_registers_every_task_name_the_site_sends_to_it() -> None:
    from launches.gpu import tasks  # noqa: F401
    from launches.gpu.app import app

    for name in (contract.RUN_LAUNCH_TASK, contract.STOP_LAUNCH_TASK, contract.RECONCILE_TASK):
        assert name in app.tasks


@pytest.mark.parametrize(
    ("native", "factor", "cap", "wanted"),
    [
        (32768, 1.0, None, 32768),
        (32768, 2.5, None, 81920),
        (32768, 4.0, 100000, 100000),
        (40960, 1.5, 0, 61440),
    ],
)
def test_the_wanted_length_is_native_times_the_factor_lowered_to_the_cap(native, factor, cap, wanted) -> None:
    assert wanted_length(native, factor, cap) == wanted


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_event_kind_a_worker_sends_is_applied_or_kept_as_history_only(kind: EventKind) -> None:
    from launches.models import Launch

    assert hasattr(Launch, f"_on_{kind}") != (kind in HISTORY_ONLY_KINDS)


def test_the_history_filter_offers_every_event_kind() -> None:
    from launches.history import EventKindFilter

    assert set(EventKindFilter.choices_map) == {str(kind) for kind in EventKind}


def test_every_memory_option_is_fingerprinted_served_managed_and_offered_on_the_form() -> None:
    from gpus.fingerprint import FINGERPRINT_FIELDS
    from launches.admin import LaunchConfigAdmin
    from launches.models import LaunchConfig
    from launches.vllm.argv import ServeOptions, build_argv
    from launches.vllm.flags import MANAGED_FLAGS

    form_fields = [name for _title, options in LaunchConfigAdmin.fieldsets for name in options["fields"]]
    changed = MemoryOptions(0.8, "float16", "awq", "fp8", 2, 4096, True)
    argv = build_argv(
        ["vllm", "serve"],
        ServeOptions(model="m", **changed.to_dict()),
        max_model_len=4096,
        vllm_version="0.32.0",
    )
    for name in MEMORY_OPTION_FIELDS:
        LaunchConfig._meta.get_field(name)
        assert name in FINGERPRINT_FIELDS and name in form_fields
        assert MANAGED_FLAGS[MEMORY_OPTION_FLAGS[name]] == name
        assert MEMORY_OPTION_FLAGS[name] in argv


def test_memory_options_read_from_a_spec_take_vllm_defaults_for_what_is_missing() -> None:
    assert MemoryOptions.from_dict({}) == MemoryOptions()
    assert MemoryOptions.from_dict({"quantization": "", "dtype": None}) == MemoryOptions()
    assert (
        MemoryOptions.from_dict(MemoryOptions(0.5, tensor_parallel_size=2).to_dict()).tensor_parallel_size
        == 2
    )
