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


class DeletesItsOwnRecords:
    """An editable row whose delete takes rows nobody edits with it (a host's card records): the
    right to delete the row decides, not the records' admin, which refuses every delete of its own.

    Rows kept by a protecting link (launches, learned limits) still block the delete, and the page
    lists them.
    """

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        records = {
            model._meta.verbose_name
            for model, model_admin in self.admin_site._registry.items()
            if isinstance(model_admin, NoEditing)
        }
        return deleted, counts, perms_needed - records, protected
