from django.apps import AppConfig


class LaunchesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "launches"
    verbose_name = "Launches"

    def ready(self) -> None:
        from launches import signals  # noqa: F401  (connects the receivers)
