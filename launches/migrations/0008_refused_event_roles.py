"""Let both roles read the events the control side refused (a launch page links to them)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant_view(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure this one exists now.
    app_config = apps.get_app_config("launches")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.get(content_type__app_label="launches", codename="view_refusedevent")
    for group in Group.objects.filter(name__in=["Viewers", "Operators"]):
        group.permissions.add(view)


def revoke_view(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name__in=["Viewers", "Operators"]):
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="launches", codename="view_refusedevent")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("launches", "0007_gpu_leases_refused_events_stop_requested"),
    ]

    operations = [migrations.RunPython(grant_view, revoke_view)]
