"""Keeping the launch history fast when it holds millions of rows.

The admin's change list counts the rows it pages through; on a large table an exact COUNT(*) is the
slowest query of the page. Here the count is either PostgreSQL's own estimate (unfiltered list) or an
exact count that stops at a cap, so every page costs the same few queries whatever the history's size.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.paginator import EmptyPage, Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Upper
from django.http import HttpRequest
from django.utils.functional import cached_property

from launches.contract import EventKind
from launches.verdicts import OUTCOME_LABELS


class HistoryPaginator(Paginator):
    """A paginator whose count never scans the whole table.

    ``count_is_exact`` tells the template whether to print "N" or "about N" / "more than N".
    """

    count_cap = 10_000
    # Below this many rows the estimate is not worth trusting: an exact count is cheap there.
    estimate_threshold = 100_000

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.count_is_exact = True
        self.count_is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset: QuerySet = self.object_list
        estimate = self._table_estimate(queryset)
        threshold = self.estimate_threshold
        if estimate is None:
            # A filter the planner expects to match more than the cap: its estimate, since counting
            # even up to the cap reads that many rows.
            estimate, threshold = plan_estimate(queryset), self.count_cap
        if estimate is not None and estimate > threshold:
            self.count_is_exact = False
            self.count_is_estimate = True
            return estimate
        # Counting over LIMIT cap+1 reads at most cap+1 index entries, whatever the filter matches.
        capped = queryset.order_by()[: self.count_cap + 1].count()
        if capped > self.count_cap:
            self.count_is_exact = False
            return self.count_cap
        return capped

    def validate_number(self, number) -> int:
        """Past the capped or estimated count is allowed: those pages exist when they have rows."""
        try:
            return super().validate_number(number)
        except EmptyPage:
            if self.count_is_exact:
                raise
            return int(number)

    def page(self, number):
        """A later page's rows found by id first: OFFSET skips through an index alone, then one short
        query reads the page's rows (a deep page otherwise reads every skipped row from the table).
        The first page is read directly, in one query."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        queryset: QuerySet = self.object_list
        if bottom == 0:
            return super().page(number)
        ids = list(queryset.values_list("pk", flat=True)[bottom : bottom + self.per_page])
        if not ids:
            raise EmptyPage("That page contains no results")
        rows = {row.pk: row for row in queryset.filter(pk__in=ids)}
        return self._get_page([rows[pk] for pk in ids if pk in rows], number, self)

    @staticmethod
    def _table_estimate(queryset: QuerySet) -> int | None:
        """PostgreSQL's row estimate for an unfiltered list (kept current by autovacuum's ANALYZE)."""
        if queryset.query.where or queryset.query.distinct:
            return None
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [queryset.model._meta.db_table],
            )
            row = cursor.fetchone()
        # -1 means the table was never analysed: no estimate.
        return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


def plan_estimate(queryset: QuerySet) -> int | None:
    """PostgreSQL's planner estimate of how many rows a filtered list holds (one EXPLAIN, no scan)."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    plan = json.loads(queryset.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


def config_name_upper() -> Upper:
    """UPPER(config_snapshot ->> 'name'): the expression the trigram index is built on (PostgreSQL)."""
    return Upper(KeyTextTransform("name", "config_snapshot"))


def search_launches(queryset: QuerySet, term: str) -> QuerySet:
    """Launches whose model, config name, user or host contains ``term``, or whose id or port it is.

    Models, hosts and users are small tables: they are searched first (three short queries, whatever
    the term) and the launch table is then asked by their ids through its indexes; the config name
    goes through a trigram index on PostgreSQL. The admin's search box and the API's ``search`` both
    use this, so both answer the same launches.
    """
    from gpus.models import Host, ModelSpec

    term = term.strip()
    if not term:
        return queryset
    limit = 1000
    models = list(ModelSpec.objects.filter(source__icontains=term).values_list("pk", flat=True)[:limit])
    hosts = list(Host.objects.filter(name__icontains=term).values_list("pk", flat=True)[:limit])
    users = list(
        get_user_model().objects.filter(username__icontains=term).values_list("pk", flat=True)[:limit]
    )
    match = Q(config_name_upper__contains=term.upper())
    if models:
        match |= Q(model_id__in=models)
    if hosts:
        match |= Q(host_id__in=hosts)
    if users:
        match |= Q(requested_by_id__in=users)
    if term.isdigit() and len(term) < 19:
        match |= Q(pk=int(term))
    port = term.removeprefix(":")
    if port.isdigit() and len(port) <= 5:
        # A port the host picked (the config left it empty) is known from the server's URL only.
        match |= Q(config_snapshot__port=int(port)) | Q(server_url__endswith=f":{port}")
    return queryset.alias(config_name_upper=config_name_upper()).filter(match)


class ChoicesFilter(admin.SimpleListFilter):
    """A filter over a fixed list of values: unlike the admin's default for a plain CharField, it
    does not read the distinct values of the (huge) history table on every page."""

    choices_map: dict[str, str] = {}

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return list(self.choices_map.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.parameter_name: value}) if value else queryset


class OutcomeFilter(ChoicesFilter):
    title = "outcome"
    parameter_name = "outcome"
    choices_map = OUTCOME_LABELS


class EventKindFilter(ChoicesFilter):
    title = "kind"
    parameter_name = "kind"
    choices_map = {str(kind): kind.replace("_", " ") for kind in EventKind}
