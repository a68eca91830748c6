"""Admin building blocks shared by both apps."""

from __future__ import annotations

from django.contrib import admin


class NoEditing:
    """History and learned knowledge: visible to everyone with the view right, edited by nobody.

    Rows are written by the control worker alone; hand edits would make the audit trail a lie.
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(NoEditing, admin.ModelAdmin):
    pass


class ReadOnlyInline(NoEditing, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True
