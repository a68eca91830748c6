"""Create the first administrator if there is none; print a generated password once."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create an admin user when no superuser exists (password from AIFRED_ADMIN_PASSWORD or generated)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=os.environ.get("AIFRED_ADMIN_USER", "admin"))
        parser.add_argument("--email", default=os.environ.get("AIFRED_ADMIN_EMAIL", ""))

    def handle(self, *args, username: str, email: str, **options) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An administrator exists already; nothing to do.")
            return
        password = os.environ.get("AIFRED_ADMIN_PASSWORD") or ""
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=email, password=password)
        if generated:
            # Shown once, on the operator's own terminal; it is stored only as a hash.
            self.stdout.write(
                self.style.SUCCESS(f"Created administrator '{username}' with password: {password}")
                + "\nIt is not shown again; change it in the admin after logging in."
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created administrator '{username}' (password from AIFRED_ADMIN_PASSWORD)."
                )
            )
