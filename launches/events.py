"""Applying a launch's events from the GPU worker to its row: store, order, refuse, apply.

Events are numbered per launch; they are stored as ``LaunchEvent`` rows and applied strictly in
order, each by the handler of its kind (``_on_<kind>``, which reads the kind's typed payload,
``contract.PAYLOADS``; ``contract.HISTORY_ONLY_KINDS`` have none and stay in the history); the
stored ``LaunchEvent.data`` is the dict as it arrived. An event that does not parse is kept as a
``RefusedEvent`` with its reason.
``Launch`` takes these methods from ``LaunchEventsMixin``; the models are looked up when an event is
applied, so this module and ``launches.models`` do not import each other at load time.

An ended launch is history. Once a launch is stopped, failed, crashed, cancelled or lost, whoever
ended it (its worker's own event, a stop of the whole stack, the control side's bounds or a silent
worker), an event that arrives later (a worker's outbox delivered after a restart, a report of a host
thought gone) is stored in the history and applied to nothing: the launch's status, outcome, reason,
served length and attempt rows stay as they ended. Only what the event says about the hardware or
the model is still learned (``FACTS_AFTER_THE_END``: a ``limit_learned`` is a real measurement of the
card, ``model_facts`` a reading of the model's config), into ``DetectedLimit`` and ``ModelSpec``,
never onto the ended launch's row.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from gpus.models import DetectedLimit
from launches.contract import (
    AcceptedPayload,
    AttemptFinishedPayload,
    AttemptStartedPayload,
    CancelledPayload,
    ContractError,
    CrashedPayload,
    EventKind,
    FailedPayload,
    LimitLearnedPayload,
    ModelFactsPayload,
    Outcome,
    ReadyPayload,
    RestartingPayload,
    StoppedPayload,
    parse_event,
    parse_payload,
)

log = logging.getLogger("launches.models")


def _from_epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, tz=UTC)
    return None


# The kinds still learned from when the launch has already ended (see the module docstring).
FACTS_AFTER_THE_END = frozenset({EventKind.LIMIT_LEARNED, EventKind.MODEL_FACTS})


class LaunchEventsMixin:
    """The event side of ``Launch``: ``apply_event`` and one ``_on_<kind>(payload, when)`` handler per
    kind, ``payload`` being the kind's ``contract.Payload`` and ``when`` the time the worker sent it."""

    def apply_event(self, seq: int, kind: str, data: dict[str, Any], emitted_at: str | None = None) -> bool:
        """Store a numbered event and apply every stored event that is next in line.

        An event that arrives ahead of a gap waits in LaunchEvent until the gap fills (the worker
        sends it again when a heartbeat shows the gap). A duplicated event (same launch and seq) is
        not stored again and changes nothing. An event that does not parse is stored as a
        ``RefusedEvent`` with its reason and takes no number, so the real event with that number still
        applies. Returns whether the event was new.
        """
        from launches.models import LaunchEvent, RefusedEvent

        try:
            parse_event(self.pk, seq, kind, data, emitted_at)
        except ContractError as exc:
            RefusedEvent.objects.get_or_create(
                launch_id=self.pk,
                seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                kind=str(kind)[:40],
                reason=str(exc),
                defaults={"data": data if isinstance(data, dict) else {"value": repr(data)[:2000]}},
            )
            # Events after it may be waiting for its number: apply them if it stays refused.
            self.apply_pending_events()
            log.warning("launch %s: event %s refused: %s", self.pk, seq, exc)
            return False
        _, created = LaunchEvent.objects.get_or_create(
            launch_id=self.pk,
            seq=seq,
            defaults={"kind": kind, "data": data, "emitted_at": parse_datetime(emitted_at or "") or None},
        )
        # Also after a duplicate: a redelivery after a crash between storing and applying finishes here.
        self.apply_pending_events()
        return created

    def apply_pending_events(self) -> int:
        from launches.models import LaunchEvent, RefusedEvent

        applied = 0
        while True:
            with transaction.atomic():
                last_seq = type(self).objects.filter(pk=self.pk).values_list("last_seq", flat=True).first()
                if last_seq is None:
                    return applied
                event = LaunchEvent.objects.filter(launch_id=self.pk, seq=last_seq + 1).first()
                if event is None:
                    if self._pass_refused(last_seq):
                        continue
                    return applied
                # Claim the event with a conditional UPDATE: a concurrent applier matches no row.
                claimed = (
                    type(self)
                    .objects.filter(pk=self.pk, last_seq=last_seq)
                    .update(last_seq=event.seq, last_event_at=timezone.now())
                )
                if not claimed:
                    continue
                self.refresh_from_db()
                handler = getattr(self, f"_on_{event.kind}", None)
                if self.is_terminal and event.kind not in FACTS_AFTER_THE_END:
                    # Late: kept in the history, applied to nothing (the module docstring's rule).
                    handler = None
                if handler is not None:
                    try:
                        # Parsed again from the stored row: the handler reads the typed payload.
                        payload = parse_payload(event.kind, event.data)
                        with transaction.atomic():
                            handler(payload, event.emitted_at or timezone.now())
                    except (KeyError, TypeError, ValueError) as exc:
                        # A payload that parsed but cannot be applied: kept with its reason, and the
                        # launch goes on with the next event instead of raising on it for ever.
                        RefusedEvent.objects.create(
                            launch_id=self.pk,
                            seq=event.seq,
                            kind=event.kind,
                            data=event.data,
                            reason=f"Could not be applied: {exc!r}",
                        )
                applied += 1

    def _pass_refused(self, last_seq: int) -> bool:
        """Step over the number of an event refused more than the reconcile grace ago.

        A refused event takes no number at once: the real event with that number may still come (a
        garbled copy arrived first). When none came within the grace (the worker itself sent it that
        way, and sent it again when asked), the launch goes on without it.
        """
        from launches.models import RefusedEvent

        cutoff = timezone.now() - timedelta(seconds=settings.RECONCILE_GRACE_SECONDS)
        if not RefusedEvent.objects.filter(
            launch_id=self.pk, seq=last_seq + 1, received_at__lt=cutoff
        ).exists():
            return False
        type(self).objects.filter(pk=self.pk, last_seq=last_seq).update(
            last_seq=last_seq + 1, last_event_at=timezone.now()
        )
        return True

    def _on_accepted(self, payload: AcceptedPayload, when: datetime) -> None:
        self.transition(self.Status.STARTING, started_at=when)

    def _on_model_facts(self, payload: ModelFactsPayload, when: datetime) -> None:
        if payload.error is None:
            self.model.apply_facts(payload.facts)

    def _on_attempt_started(self, payload: AttemptStartedPayload, when: datetime) -> None:
        from launches.models import LaunchAttempt

        self.transition(self.Status.STARTING, started_at=when)
        requested = payload.requested_len
        LaunchAttempt.objects.update_or_create(
            launch=self,
            number=payload.attempt,
            defaults={
                "requested_len": requested if isinstance(requested, int) else None,
                "requested_auto": requested == "auto",
                "argv": list(payload.argv),
                "started_at": when,
            },
        )

    def _on_attempt_finished(self, payload: AttemptFinishedPayload, when: datetime) -> None:
        from launches.models import LaunchAttempt

        attempt, _ = LaunchAttempt.objects.get_or_create(launch=self, number=payload.attempt)
        attempt.outcome = str(payload.outcome)
        attempt.parsed_len = payload.parsed_len
        attempt.exit_code = payload.exit_code
        attempt.stopped_by_launcher = payload.stopped_by_launcher
        attempt.message = payload.message
        attempt.log_tail = "\n".join(payload.log_tail)
        attempt.started_at = _from_epoch(payload.started_at) or attempt.started_at
        attempt.ended_at = _from_epoch(payload.ended_at) or when
        attempt.save()
        type(self).objects.filter(pk=self.pk).update(outcome=attempt.outcome)

    def _on_limit_learned(self, payload: LimitLearnedPayload, when: datetime) -> None:
        """Learn the limit for the launch's GPU profile; also onto the launch row unless it has ended."""
        if not payload.learned_from or self.gpu_profile_id is None:
            return
        DetectedLimit.objects.learn(
            self,
            payload.max_model_len,
            payload.learned_from,
            payload.kv_capacity_tokens,
            max_num_seqs=payload.max_num_seqs,
        )
        if self.is_terminal:
            return
        type(self).objects.filter(pk=self.pk).update(
            learned_limit=payload.max_model_len, kv_capacity_tokens=payload.kv_capacity_tokens
        )

    def _on_ready(self, payload: ReadyPayload, when: datetime) -> None:
        fields = {
            "context_length": payload.max_model_len,
            "server_url": self.public_url(payload.url),
            "pid": payload.pid,
            "kv_capacity_tokens": payload.kv_capacity_tokens,
            "ready_at": when,
        }
        if not self.transition(self.Status.READY, **fields):
            # Stopped during the start: keep what it served with; the stop decides the end state.
            type(self).objects.filter(pk=self.pk).update(**fields)

    def _on_failed(self, payload: FailedPayload, when: datetime) -> None:
        outcome = str(payload.outcome)
        if payload.outcome == Outcome.FAILED and self.outcome:
            # The launcher gave up after an attempt: its verdict (port in use, ...) is the outcome.
            outcome = self.outcome
        if payload.outcome == Outcome.CANCELLED:
            self.transition(
                self.Status.CANCELLED, reason=f"Cancelled{self._by()} during the start.", outcome=outcome
            )
        else:
            self.transition(self.Status.FAILED, reason=payload.reason or "The start failed.", outcome=outcome)

    def _on_cancelled(self, payload: CancelledPayload, when: datetime) -> None:
        self.transition(self.Status.CANCELLED, reason=payload.reason or "Cancelled.")

    def _on_stopped(self, payload: StoppedPayload, when: datetime) -> None:
        if payload.test_passed and payload.max_model_len:
            reason = self.yarn_test_verdict(payload.max_model_len)
        elif self.stopped_by_id:
            reason = f"Stopped{self._by()}."
        else:
            reason = payload.reason or "Stopped."
        self.transition(self.Status.STOPPED, reason=reason)

    def _on_crashed(self, payload: CrashedPayload, when: datetime) -> None:
        tail = "\n".join(payload.log_tail)
        reason = payload.reason or "The server exited."
        # Not the ready attempt's verdict: the server ended by crashing (or crashing too often).
        fields = {"next_restart_at": None, "outcome": str(payload.outcome)}
        self.transition(
            self.Status.CRASHED, reason=f"{reason}\nLast log lines:\n{tail}" if tail else reason, **fields
        )

    def _on_restarting(self, payload: RestartingPayload, when: datetime) -> None:
        """A server kept up crashed and is started again after a wait (see the GPU worker)."""
        type(self).objects.filter(pk=self.pk).update(
            restarts=payload.restarts,
            restart_limit=payload.restart_limit,
            next_restart_at=when + timedelta(seconds=payload.next_try_in),
        )
        self.transition(self.Status.STARTING, started_at=when)
