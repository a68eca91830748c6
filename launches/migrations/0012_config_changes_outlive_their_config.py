"""A config's recorded changes outlive it: the link is cleared on delete and the change row keeps the
config's name (filled in here for the rows written before)."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def fill_config_names(apps, schema_editor):
    LaunchConfig = apps.get_model("launches", "LaunchConfig")
    LaunchConfigChange = apps.get_model("launches", "LaunchConfigChange")
    name = LaunchConfig.objects.filter(pk=OuterRef("config_id")).values("name")[:1]
    LaunchConfigChange.objects.filter(config__isnull=False).update(config_name=Subquery(name))


class Migration(migrations.Migration):
    dependencies = [
        ("launches", "0011_launch_saved_limit"),
    ]

    operations = [
        migrations.AddField(
            model_name="launchconfigchange",
            name="config_name",
            field=models.CharField(blank=True, help_text="The config's name when changed.", max_length=100),
        ),
        migrations.AlterField(
            model_name="launchconfigchange",
            name="config",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="changes",
                to="launches.launchconfig",
            ),
        ),
        migrations.RunPython(fill_config_names, migrations.RunPython.noop),
    ]
