"""List renders: `python manage.py renders [--user NAME] --json`."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studio.models import Render
from studio.serializers import render_as_dict


class Command(BaseCommand):
    help = "List renders, newest first, as a table or as JSON."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", help="only this user's renders")
        parser.add_argument("--state", help="only renders in this state")
        parser.add_argument("--json", action="store_true", help="print a JSON array")

    def handle(self, *args, **options) -> None:
        renders = Render.objects.select_related("user").order_by("-created_at")
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user named {options['user']!r}.")
            renders = renders.filter(user=user)
        if options["state"]:
            renders = renders.filter(state=options["state"])
        rows = [render_as_dict(r) for r in renders]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for row in rows:
            cost = row["billed_cost"] or row["estimated_cost"]
            self.stdout.write(
                f"{row['id']}  {row['state']:<15} {row['model']:<11} ${cost:<8} {' '.join(row['prompt'].split())[:60]}"
            )
