"""Indexes that keep the launch history fast at millions of rows.

On PostgreSQL: pg_trgm and a trigram index for the search in config names (the expression
launches.history.config_name_upper() compiles to), an index on the config's port for a search by
port, and statistics on filter columns that go together (a model is mostly started by the same few
people, a host runs a few models), so the planner does not multiply their selectivities and walk the
whole date index for a combination that matches nothing. SQLite has none of these (nor a need for them
in tests); there they are skipped.
"""

from django.conf import settings
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models

POSTGRES_INDEXES = {
    "launch_config_name_trgm": "USING gin ((UPPER(config_snapshot ->> 'name')) gin_trgm_ops)",
    "launch_config_port": "((config_snapshot -> 'port'))",
}


POSTGRES_STATISTICS = {
    "launch_model_user_stats": "model_id, requested_by_id",
    "launch_host_status_stats": "host_id, status",
    "launch_host_model_stats": "host_id, model_id",
    "launch_status_outcome_stats": "status, outcome",
}


def create_postgres_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in POSTGRES_INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON launches_launch {definition}")
    for name, columns in POSTGRES_STATISTICS.items():
        schema_editor.execute(
            f"CREATE STATISTICS IF NOT EXISTS {name} (dependencies, mcv) ON {columns} FROM launches_launch"
        )
    # Expression indexes and statistics are only used once ANALYZE has read them.
    schema_editor.execute("ANALYZE launches_launch")


def drop_postgres_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in POSTGRES_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    for name in POSTGRES_STATISTICS:
        schema_editor.execute(f"DROP STATISTICS IF EXISTS {name}")


class Migration(migrations.Migration):

    dependencies = [
        ('gpus', '0005_host_vllm_command_is_reported'),
        ('launches', '0004_config_change_roles'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Django's extension operation does nothing on databases other than PostgreSQL.
        TrigramExtension(),
        migrations.AddIndex(
            model_name='launch',
            index=models.Index(fields=['model', 'requested_by', '-created_at'], name='launch_model_user_created'),
        ),
        migrations.AddIndex(
            model_name='launch',
            index=models.Index(fields=['kind', 'outcome'], name='launch_kind_outcome'),
        ),
        migrations.AddIndex(
            model_name='launch',
            index=models.Index(fields=['-created_at', '-id'], name='launch_created_id'),
        ),
        migrations.RunPython(create_postgres_indexes, drop_postgres_indexes),
    ]
