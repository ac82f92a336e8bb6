"""List renders, and act on the ones that wait on an operator.

    python manage.py renders [--user NAME] [--state STATE] [--json]
    python manage.py renders attach RENDER_ID TASK_ID      # it did reach the gateway as TASK_ID: poll it
    python manage.py renders not-sent RENDER_ID [--resubmit] # it never did: release the hold (or send again)
    python manage.py renders recheck RENDER_ID              # ask the gateway now about a stalled render
    python manage.py renders cancel RENDER_ID               # what the owner's cancel button does
Each action is a conditional update, safe to repeat; it exits non-zero when the render was not in a state the
action applies to.
"""

from __future__ import annotations

import json
import uuid

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studio.actions.renders import do_cancel_render
from studio.lifecycle import operator
from studio.models import Render
from studio.serializers import render_as_dict


def _render_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a render id.") from None


class Command(BaseCommand):
    help = "List renders, newest first, as a table or as JSON; attach, not-sent, recheck or cancel one."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", help="only this user's renders")
        parser.add_argument("--state", help="only renders in this state")
        parser.add_argument("--json", action="store_true", help="print a JSON array")
        actions = parser.add_subparsers(dest="action", title="operator actions")
        attach = actions.add_parser("attach", help="the render reached the gateway as TASK_ID: poll it")
        attach.add_argument("render_id")
        attach.add_argument("task_id")
        not_sent = actions.add_parser(
            "not-sent", help="the render never reached the gateway: release its hold"
        )
        not_sent.add_argument("render_id")
        not_sent.add_argument(
            "--resubmit", action="store_true", help="send it again as a new attempt instead"
        )
        recheck = actions.add_parser(
            "recheck", help="poll a stalled render now and resume it if the gateway answers"
        )
        recheck.add_argument("render_id")
        cancel = actions.add_parser("cancel", help="cancel it, as its owner's button does")
        cancel.add_argument("render_id")

    def handle(self, *args, **options) -> None:
        action = options.get("action")
        if action:
            self._act(action, options)
            return
        renders = Render.objects.select_related("user").prefetch_related("ledger").order_by("-created_at")
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

    def _act(self, action: str, options: dict) -> None:
        render_id = _render_id(options["render_id"])
        if not Render.objects.filter(pk=render_id).exists():
            raise CommandError(f"No render {render_id}.")
        if action == "attach":
            outcome = operator.attach(render_id, options["task_id"])
        elif action == "not-sent":
            outcome = operator.not_sent(render_id, resubmit=options["resubmit"])
        elif action == "recheck":
            outcome = operator.recheck(render_id)
        else:
            cancelled = do_cancel_render(Render.objects.get(pk=render_id))
            self.stdout.write(cancelled.message)
            return
        if not outcome.done:
            raise CommandError(outcome.message)
        self.stdout.write(outcome.message)
