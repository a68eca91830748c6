"""Admission: whether a launch may start now, its row and GPU lease, and the spec its host receives.

``admit`` is what ``Launch.objects.start`` runs, in this order:

1. the checks, each a small function that returns what it found or raises ``LaunchRefused`` with a
   sentence that says why and what to do (the model's facts, the host online and able to launch,
   its cards reported and of one kind, free, the port free);
2. the launch row and its GPU lease, in one transaction (the lease's unique key turns a card taken
   concurrently into a refusal);
3. the spec, built once from the row (``build_spec``) and stored on it;
4. sending the spec when the transaction commits, robust to a broker that is away (the
   reconciliation sends it again).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from gpus.models import DetectedLimit, Gpu, Host
from launches.contract import MEMORY_OPTION_FIELDS, LaunchSpec
from launches.models import GpuLease, Launch, LaunchConfig, LaunchRefused, snapshot_fingerprint


def admit(config: LaunchConfig, user, kind: str = Launch.Kind.LAUNCH) -> Launch:
    """Check that ``config`` can start on its host now, create the launch row (``kind``, asked for by
    ``user``; anonymous: nobody) with its GPU lease and spec, and send the spec to the host's queue
    when the current transaction commits. Returns the new row, status "queued".

    Raises ``LaunchRefused`` with the reason in words when any check fails or another request took
    one of the cards in the meantime.
    """
    host = config.host
    refuse_unless_facts_known(config)
    refuse_unless_online(host)
    refuse_if_host_cannot_launch(host)
    cards = reported_cards(config)
    refuse_unless_one_kind(cards)
    refuse_if_gpus_busy(host, config.gpu_index_list)
    refuse_if_port_taken(config)
    profile = cards[0].profile
    # Looked up for every kind: a re-detect ignores it but the live page says what it replaces.
    saved = DetectedLimit.objects.for_config(
        profile=profile,
        model=config.model,
        memory_options=config.memory_options(),
        vllm_version=host.vllm_version,
    ).first()
    try:
        with transaction.atomic():
            launch = create_row(config, user, kind, profile, saved)
            if kind != Launch.Kind.TEST_YARN:
                GpuLease.objects.take(launch, config.gpu_index_list)
            launch.spec = build_spec(launch, [card.uuid for card in cards], saved).to_dict()
            launch.save(update_fields=["spec"])
    except IntegrityError:
        # Another request took a card between the check above and the lease: say who holds it.
        refuse_if_gpus_busy(host, config.gpu_index_list)
        raise LaunchRefused(
            f"GPU {config.gpu_index_list} on {host.name} was just taken by another launch; try again."
        ) from None
    transaction.on_commit(launch.send_spec, robust=True)
    return launch


# --- the checks, in the order a launch meets them -------------------------------------------------


def refuse_unless_facts_known(config: LaunchConfig) -> None:
    """Refuse while the model's config.json is unread, being read, or could not be read."""
    if config.model.facts_problem:
        raise LaunchRefused(config.model.facts_problem)


def refuse_unless_online(host: Host) -> None:
    """Refuse a host whose GPU worker is silent: its queue would keep the spec until the worker comes
    back, maybe long after the launch ended."""
    if host.is_online:
        return
    seen = host.last_heartbeat
    since = (
        f"has not reported since {timezone.localtime(seen):%Y-%m-%d %H:%M:%S %Z}"
        if seen
        else "has never reported"
    )
    raise LaunchRefused(
        f"The host {host.name} is offline: its GPU worker {since}. "
        f"Start the GPU worker on {host.name}, then launch again."
    )


def refuse_if_host_cannot_launch(host: Host) -> None:
    """Refuse a host whose worker reported that it cannot start vLLM (no driver, no vLLM)."""
    if problem := host.launch_problem():
        raise LaunchRefused(problem)


def reported_cards(config: LaunchConfig) -> list[Gpu]:
    """The host's current cards at the config's GPU indices, by index; refuses when the host has
    not reported one of them."""
    cards = list(
        Gpu.objects.current()
        .filter(host=config.host, index__in=config.gpu_index_list)
        .select_related("profile")
        .order_by("index")
    )
    missing = sorted(set(config.gpu_index_list) - {card.index for card in cards})
    if missing:
        raise LaunchRefused(
            f"Host {config.host.name} has not reported GPU {', '.join(map(str, missing))}. "
            "Check that its GPU worker is running and the GPU indices in the config."
        )
    return cards


def refuse_unless_one_kind(cards: list[Gpu]) -> None:
    """Refuse cards of different GPU profiles: a learned limit belongs to one profile."""
    if len({card.profile_id for card in cards}) > 1:
        raise LaunchRefused("The GPUs of one launch must be of the same kind; choose cards of one model.")


def refuse_if_gpus_busy(host: Host, indices: list[int]) -> None:
    """Refuse when an active launch (a YaRN test aside) of this host uses one of ``indices``, naming it."""
    busy = Launch.objects.active().filter(host=host).exclude(kind=Launch.Kind.TEST_YARN)
    for other in busy.only("id", "config_snapshot"):
        if set(other.config_snapshot.get("gpu_indices", [])) & set(indices):
            raise LaunchRefused(
                f"Launch #{other.pk} is still using GPU "
                f"{', '.join(map(str, other.config_snapshot.get('gpu_indices') or []))} "
                f"on {host.name}; stop it first (one launch at a time per GPU)."
            )


def refuse_if_port_taken(config: LaunchConfig) -> None:
    """Refuse a fixed port that is the site's own or taken on the host (``LaunchConfig.port_problem``)."""
    if problem := config.port_problem():
        raise LaunchRefused(problem)


# --- the row and the spec ---------------------------------------------------------------------------


def create_row(config: LaunchConfig, user, kind: str, profile, saved: DetectedLimit | None) -> Launch:
    """The launch row, status "queued": the config's snapshot, its memory fingerprint, the wanted
    length under the host's vLLM version, and what was learned for it (``saved``; a re-detect does
    not start from it). Call inside the transaction that leases the cards."""
    snapshot = config.snapshot()
    wanted = config.wanted_context()
    known = saved if kind != Launch.Kind.REDETECT else None
    return Launch.objects.create(
        kind=kind,
        config=config,
        config_snapshot=snapshot,
        host=config.host,
        model=config.model,
        gpu_profile=profile,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        fingerprint=snapshot_fingerprint(snapshot)[0],
        known_limit=known.start_values(wanted)[0] if known else None,
        saved_limit=saved.max_model_len if saved else None,
        saved_limit_is_ceiling=saved.is_ceiling if saved else None,
        wanted_context=wanted,
        task_id=str(uuid.uuid4()),
    )


def build_spec(launch: Launch, gpu_uuids: list[str], saved: DetectedLimit | None) -> LaunchSpec:
    """The spec the host runs, from the launch row: its snapshot (options, port, cards, YaRN, cap),
    its model's lengths under the vLLM version of the snapshot, its known limit; ``gpu_uuids`` the
    reported cards in index order (the host refuses when they changed), ``saved`` the limit learned
    for this profile, model and fingerprint (its ceiling hint and ``max_num_seqs``, unless the launch
    is a re-detect)."""
    snapshot = launch.config_snapshot
    lengths = launch.model.lengths_for(snapshot.get("vllm_version"), snapshot.get("extra_args") or [])
    known = saved if launch.kind != Launch.Kind.REDETECT else None
    return LaunchSpec(
        launch_id=launch.pk,
        spec_id=launch.task_id,
        kind=launch.kind,
        model=launch.model.source,
        revision=launch.model.revision or None,
        native_context=lengths.native_context,
        default_context=lengths.default_context,
        rope_theta=lengths.rope_theta,
        max_num_seqs=known.max_num_seqs if known else None,
        known_limit=launch.known_limit,
        ceiling_hint=known.start_values(launch.wanted_context)[1] if known else None,
        yarn_factor=float(snapshot["yarn_factor"]) if snapshot.get("enable_yarn") else 1.0,
        context_cap=snapshot.get("context_cap"),
        gpu_indices=list(snapshot["gpu_indices"]),
        gpu_uuids=list(gpu_uuids),
        port=snapshot.get("port"),
        served_model_name=snapshot.get("served_model_name") or None,
        options={name: snapshot.get(name) for name in (*MEMORY_OPTION_FIELDS, "extra_args")},
        detect_only=launch.kind == Launch.Kind.TEST_YARN,
        keep_up=bool(launch.config and launch.config.keep_up) and launch.kind == Launch.Kind.LAUNCH,
        restart_limit=settings.RESTART_LIMIT,
        restart_window_s=settings.RESTART_WINDOW_MINUTES * 60,
    )
