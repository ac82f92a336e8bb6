"""Create (or reset) the demo login and print it: part of `make run`."""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "Create the demo login (username demo) and print its password."

    def handle(self, *args, **options) -> None:
        password = os.environ.get("STUDIO_DEMO_PASSWORD", "studio-demo")
        user, created = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Reset"
        self.stdout.write(f"{verb} the demo login: username {DEMO_USERNAME!r}, password {password!r}")
