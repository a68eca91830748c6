"""The Celery app, wired as Celery's Django guide shows."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aifred_site.settings")

app = Celery("aifred_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
