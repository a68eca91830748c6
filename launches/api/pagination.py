"""Cursor pagination: page 10,000 costs what page 1 costs (no OFFSET, no COUNT)."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class NewestFirstCursorPagination(CursorPagination):
    """Orders by the view's ``cursor_ordering`` (newest first by default) and seeks past the cursor.

    ``?page_size=`` asks for up to 200 rows a page.
    """

    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_ordering(self, request, queryset, view) -> tuple[str, ...]:
        ordering = getattr(view, "cursor_ordering", self.ordering)
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)
