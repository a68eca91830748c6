from django.apps import AppConfig


class LaunchesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "launches"
    verbose_name = "Launches"

    def ready(self) -> None:
        from launches import checks, signals  # noqa: F401  (registers the checks and receivers)
