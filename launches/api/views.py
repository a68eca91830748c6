"""The API's endpoints. Every one asks launches/permissions.py (through ReadForViewersActForOperators)
and acts through the same model methods as the admin: Launch.objects.start, Launch.request_stop,
ModelSpec.queue_facts_read, and the config form's validation."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from gpus.models import DetectedLimit, Gpu, GpuProfile, Host, ModelSpec
from launches.api import serializers as api
from launches.api.errors import Conflict
from launches.contract import Outcome
from launches.history import search_launches
from launches.models import Launch, LaunchConfig, LaunchRefused
from launches.views import events_after


class ReadOnly(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    cursor_ordering = "id"


class HostViewSet(ReadOnly):
    """GPU hosts with their current cards and whether their worker is online."""

    serializer_class = api.HostSerializer
    queryset = Host.objects.prefetch_related(
        Prefetch(
            "gpus",
            queryset=Gpu.objects.current().select_related("profile").order_by("index"),
            to_attr="current_gpus",
        )
    )


class GpuProfileViewSet(ReadOnly):
    """Kinds of GPU; hosts with the same kind share what was learned on it."""

    serializer_class = api.GpuProfileSerializer
    queryset = GpuProfile.objects.all()


class ModelSpecViewSet(mixins.CreateModelMixin, ReadOnly):
    """Models by Hugging Face repo id or folder. Adding one reads its config.json in the background,
    as the admin does: ``native_context`` and the other facts appear when the control worker has read
    it (``facts_error`` says what went wrong)."""

    serializer_class = api.ModelSpecSerializer
    queryset = ModelSpec.objects.all()

    def perform_create(self, serializer) -> None:
        try:
            with transaction.atomic():
                model = serializer.save()
        except IntegrityError:
            raise ValidationError(
                {"__all__": ["Model with this Source and Revision already exists."]}
            ) from None
        model.queue_facts_read()

    @extend_schema(request=None, responses={202: api.ModelSpecSerializer})
    @action(detail=True, methods=["post"], url_path="read-config")
    def read_config(self, request: Request, pk: str) -> Response:
        """Read the model's config.json again (after a fix on the hub or in the folder)."""
        model = self.get_object()
        model.queue_facts_read()
        return Response(self.get_serializer(model).data, status=status.HTTP_202_ACCEPTED)


class DetectedLimitViewSet(ReadOnly):
    """What was learned per GPU profile × model × memory fingerprint. Read-only: only launches teach."""

    serializer_class = api.DetectedLimitSerializer
    queryset = DetectedLimit.objects.select_related("profile", "model")


LaunchCreated = api.LaunchSerializer


class LaunchConfigViewSet(
    mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, ReadOnly
):
    """Launch configs: created and changed with the config form's rules (YaRN included); launch,
    test YaRN, re-detect and stop act on them. Deleting one keeps its launches and recorded changes."""

    serializer_class = api.LaunchConfigSerializer
    queryset = LaunchConfig.objects.select_related("model", "host")

    @extend_schema(responses={200: api.DeletedSerializer})
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete the config; the answer's ``detail`` says what stays in the history."""
        config = self.get_object()
        if problem := config.delete_problem():
            raise LaunchRefused(problem)
        kept = config.kept_history()
        config.delete()
        return Response({"detail": f"Deleted the launch config {config.name}. {kept}"})

    def _start(self, request: Request, kind: str) -> Response:
        config = self.get_object()
        with transaction.atomic():
            launch = Launch.objects.start(config, request.user, kind)
        launch = Launch.objects.select_related("host", "model", "gpu_profile", "requested_by").get(
            pk=launch.pk
        )
        return Response(api.LaunchSerializer(launch).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={201: api.LaunchSerializer})
    @action(detail=True, methods=["post"])
    def launch(self, request: Request, pk: str) -> Response:
        """Start a server from this config (409 with the reason when it cannot start now)."""
        return self._start(request, Launch.Kind.LAUNCH)

    @extend_schema(request=None, responses={201: api.LaunchSerializer})
    @action(detail=True, methods=["post"], url_path="test-yarn")
    def test_yarn(self, request: Request, pk: str) -> Response:
        """Start, report the context it came up with, and stop."""
        return self._start(request, Launch.Kind.TEST_YARN)

    @extend_schema(request=None, responses={201: api.LaunchSerializer})
    @action(detail=True, methods=["post"])
    def redetect(self, request: Request, pk: str) -> Response:
        """Launch ignoring the learned limit, and replace it with what this start finds."""
        return self._start(request, Launch.Kind.REDETECT)

    @extend_schema(request=None, responses={202: api.LaunchSerializer(many=True)})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        """Stop every running or starting launch of this config."""
        config = self.get_object()
        active = list(config.launches.active().select_related("host", "model", "gpu_profile", "requested_by"))
        if not active:
            raise Conflict(f"Nothing of {config} is running or starting.")
        for launch in active:
            with transaction.atomic():
                launch.request_stop(request.user)
        return Response(api.LaunchSerializer(active, many=True).data, status=status.HTTP_202_ACCEPTED)


HISTORY_FILTERS = {
    "status": ("status", str),
    "kind": ("kind", str),
    "outcome": ("outcome", str),
    "host": ("host_id", int),
    "gpu_profile": ("gpu_profile_id", int),
    "model": ("model_id", int),
    "requested_by": ("requested_by_id", int),
}

# The field a related filter also accepts in words: a host's name, a model's source, a user's name.
FILTER_NAMES = {"host": "name", "model": "source", "requested_by": "username"}


def _moment(name: str, raw: str) -> datetime:
    moment = parse_datetime(raw)
    if moment is None and parse_date(raw) is not None:
        moment = parse_datetime(f"{raw}T00:00:00+00:00")
    if moment is None:
        raise ValidationError(
            {name: [f"{raw!r} is not a date; use e.g. 2025-11-20 or 2025-11-20T08:00:00Z."]}
        )
    return moment


def _accepted(field: str) -> list[str]:
    """The values a text filter accepts: the model field's choices, else the outcome codes."""
    choices = Launch._meta.get_field(field).choices
    return [value for value, _ in choices] if choices else [str(outcome) for outcome in Outcome]


def filter_history(queryset: QuerySet, params) -> QuerySet:
    """The history's filters (the admin's, by id) and its search, from query parameters.

    ``host``, ``model`` and ``requested_by`` take an id or a host name, model source or username.
    Raises ValidationError (400) naming every bad parameter at once: an id or name that matches no
    row, a status, kind or outcome that is not one of the accepted values (listed in the sentence).
    """
    problems: dict[str, list[str]] = {}
    for name, (field, kind) in HISTORY_FILTERS.items():
        raw = params.get(name)
        if raw in (None, ""):
            continue
        if kind is str:
            if raw not in (accepted := _accepted(field)):
                problems[name] = [f"{raw!r} is not a known {name}; use one of {', '.join(accepted)}."]
                continue
            queryset = queryset.filter(**{field: raw})
            continue
        relation = field.removesuffix("_id")
        related = Launch._meta.get_field(relation).related_model
        what = related._meta.verbose_name
        words = FILTER_NAMES.get(name)
        if raw.isdigit():
            match, said = {"pk": int(raw)}, f"There is no {what} with id {raw}; give the number of one."
        elif words:
            match = {words: raw}
            said = f"There is no {what} with id or {words} {raw!r}; give the number or {words} of one."
        else:
            problems[name] = [f"{raw!r} is not an id; give the number of the {name.replace('_', ' ')}."]
            continue
        if not related._default_manager.filter(**match).exists():
            problems[name] = [said]
            continue
        # A model's source may name several revisions: the launches of each.
        queryset = queryset.filter(**{f"{relation}__{key}": value for key, value in match.items()})
    for name, lookup in (("created_after", "created_at__gte"), ("created_before", "created_at__lt")):
        if not params.get(name):
            continue
        try:
            queryset = queryset.filter(**{lookup: _moment(name, params[name])})
        except ValidationError as error:
            problems.update(error.detail)
    if problems:
        raise ValidationError(problems)
    return search_launches(queryset, params.get("search", ""))


@extend_schema(
    parameters=[
        *(
            OpenApiParameter(
                name,
                OpenApiTypes.STR,
                description=f"An id or a {FILTER_NAMES[name]}." if name in FILTER_NAMES else "",
            )
            for name in HISTORY_FILTERS
        ),
        OpenApiParameter("created_after", OpenApiTypes.DATETIME),
        OpenApiParameter("created_before", OpenApiTypes.DATETIME),
        OpenApiParameter(
            "search", OpenApiTypes.STR, description="Model, config name, user, host, port or id."
        ),
    ]
)
class LaunchViewSet(ReadOnly):
    """The launch history, newest first: filters, search, attempts and events. Nobody edits it."""

    serializer_class = api.LaunchSerializer
    cursor_ordering = "-created_at"

    def get_queryset(self) -> QuerySet:
        queryset = Launch.objects.select_related("host", "model", "gpu_profile", "requested_by")
        if self.action == "list":
            return filter_history(queryset, self.request.query_params)
        if self.action == "retrieve":
            return queryset.prefetch_related("attempts", "events")
        return queryset

    def get_serializer_class(self):
        return api.LaunchDetailSerializer if self.action == "retrieve" else api.LaunchSerializer

    @extend_schema(request=None, responses={202: api.LaunchSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        """Stop the server, or abandon the start in progress (409 when it has already ended)."""
        launch = self.get_object()
        try:
            with transaction.atomic():
                launch.request_stop(request.user)
        except LaunchRefused as refusal:
            raise Conflict(str(refusal)) from None
        return Response(api.LaunchSerializer(launch).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[OpenApiParameter("after", OpenApiTypes.INT, description="The last seq already seen.")],
        responses={200: api.LaunchEventsSerializer},
    )
    @action(detail=True, methods=["get"])
    def events(self, request: Request, pk: str) -> Response:
        """The launch's state and its events after ``?after=<seq>`` (what the live page polls)."""
        return Response(events_after(self.get_object(), request.query_params.get("after", "0"), request.user))
