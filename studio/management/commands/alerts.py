"""Gateway alerts from the command line: `manage.py alerts [--all] [--json]`, `manage.py alerts resolve ID|--kind K`.

Resolving a credentials alert sends the renders that waited on it at once, as resolving it in the admin does.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from studio.lifecycle import operator
from studio.models import GatewayAlert


class Command(BaseCommand):
    help = "List open gateway alerts, or resolve one (or every open one of a kind)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--all", action="store_true", help="resolved alerts too")
        parser.add_argument("--json", action="store_true", help="print a JSON array")
        actions = parser.add_subparsers(dest="action")
        resolve = actions.add_parser("resolve", help="resolve an alert by id, or every open one of --kind")
        resolve.add_argument("alert_id", nargs="?", type=int)
        resolve.add_argument("--kind", choices=GatewayAlert.Kind.values)

    def handle(self, *args, **options) -> None:
        if options.get("action") == "resolve":
            self._resolve(options.get("alert_id"), options.get("kind"))
            return
        alerts = (
            GatewayAlert.objects.all()
            if options["all"]
            else GatewayAlert.objects.filter(resolved_at__isnull=True)
        )
        rows = [
            {
                "id": alert.pk,
                "kind": alert.kind,
                "message": alert.message,
                "render": str(alert.render_id) if alert.render_id else None,
                "created_at": alert.created_at.isoformat(),
                "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            }
            for alert in alerts
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for row in rows:
            self.stdout.write(f"{row['id']:>6}  {row['kind']:<15} {row['message']}")

    def _resolve(self, alert_id: int | None, kind: str | None) -> None:
        if (alert_id is None) == (kind is None):
            raise CommandError("Give an alert id or --kind, not both.")
        alerts = GatewayAlert.objects.filter(resolved_at__isnull=True)
        alerts = alerts.filter(pk=alert_id) if alert_id is not None else alerts.filter(kind=kind)
        found = list(alerts)
        if not found:
            raise CommandError("No open alert matches.")
        for alert in found:
            self.stdout.write(f"{alert.pk}: {operator.resolve_alert(alert).message}")
