"""Create the two role groups: Operators (edit configs, launch, stop) and Viewers (read everything)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_MODELS = {
    "gpus": ["host", "gpuprofile", "gpu", "modelspec", "detectedlimit"],
    "launches": ["launchconfig", "launch", "launchattempt", "launchevent"],
}
OPERATOR_EXTRA = [
    ("launches", "add_launchconfig"),
    ("launches", "change_launchconfig"),
    ("launches", "delete_launchconfig"),
    ("launches", "operate_launch"),
    ("gpus", "add_modelspec"),
    ("gpus", "change_modelspec"),
]


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def perm(app_label, codename):
        return Permission.objects.get(content_type__app_label=app_label, codename=codename)

    view_perms = [perm(app, f"view_{model}") for app, models in VIEW_MODELS.items() for model in models]
    viewers, _ = Group.objects.get_or_create(name="Viewers")
    viewers.permissions.set(view_perms)
    operators, _ = Group.objects.get_or_create(name="Operators")
    operators.permissions.set(view_perms + [perm(app, codename) for app, codename in OPERATOR_EXTRA])


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Viewers", "Operators"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("launches", "0001_initial"),
        ("gpus", "0002_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
