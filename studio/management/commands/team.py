"""Manage teams from scripts: `python manage.py team create|add|role|remove|list|invite`.

The same actions and rules as the team pages: a team keeps at least one admin; a user is added once; an
invitation's link (printed, under STUDIO_BASE_URL, default http://127.0.0.1:8000) works once, until it expires.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studio import access
from studio.actions.teams import (
    TeamChangeRefused,
    do_add_member,
    do_create_invitation,
    do_create_team,
    do_remove_member,
    do_set_role,
)
from studio.forms import InvitationForm
from studio.models import Membership, Role, Team

ROLES = [role.value for role in Role]


class Command(BaseCommand):
    help = "Create teams and manage their members and roles."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(
            dest="action", required=True, metavar="{create,add,role,remove,list,invite}"
        )
        create = sub.add_parser("create", help="create a team; prints its slug")
        create.add_argument("name", help="the team's name")
        create.add_argument("--admin", required=True, help="the username of its first admin")
        add = sub.add_parser("add", help="add a user to a team")
        add.add_argument("slug")
        add.add_argument("username")
        add.add_argument("--role", choices=ROLES, default=Role.MEMBER.value)
        role = sub.add_parser("role", help="change a member's role")
        role.add_argument("slug")
        role.add_argument("username")
        role.add_argument("role", choices=ROLES)
        remove = sub.add_parser("remove", help="remove a user from a team (access ends at once)")
        remove.add_argument("slug")
        remove.add_argument("username")
        listing = sub.add_parser("list", help="list teams with their members and roles")
        listing.add_argument("--json", action="store_true", help="print a JSON array")
        invite = sub.add_parser("invite", help="make an invitation link (printed) to join a team with a role")
        invite.add_argument("slug")
        invite.add_argument("--role", choices=ROLES, default=Role.MEMBER.value)
        invite.add_argument("--email", default="", help="only the account with this e-mail can use it")
        invite.add_argument("--username", default="", help="only this username can use it")
        invite.add_argument(
            "--days", type=int, default=None, help=f"valid for (default {settings.STUDIO_INVITATION_DAYS})"
        )

    def handle(self, *args, **options) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except TeamChangeRefused as refused:
            raise CommandError(str(refused)) from refused

    def _create(self, options: dict) -> None:
        name = " ".join(options["name"].split())
        if not name or len(name) > 80:
            raise CommandError("A team name has 1 to 80 characters.")
        team = do_create_team(self._user(options["admin"]), name)
        self.stdout.write(team.slug)

    def _add(self, options: dict) -> None:
        team, user = self._team(options["slug"]), self._user(options["username"])
        do_add_member(team, user, options["role"])
        self.stdout.write(f"{user.get_username()} joined {team.slug} as {options['role']}.")

    def _role(self, options: dict) -> None:
        member = self._membership(options["slug"], options["username"])
        do_set_role(member, options["role"])
        self.stdout.write(f"{options['username']} is now {options['role']} in {options['slug']}.")

    def _remove(self, options: dict) -> None:
        member = self._membership(options["slug"], options["username"])
        do_remove_member(member)
        self.stdout.write(f"{options['username']} was removed from {options['slug']}.")

    def _list(self, options: dict) -> None:
        rows: list[dict[str, Any]] = [  # as JSON: {"slug", "name", "members": [{"username", "role"}]}
            {
                "slug": team.slug,
                "name": team.name,
                "members": [
                    {"username": m.user.get_username(), "role": m.role}
                    for m in sorted(team.memberships.all(), key=lambda m: m.user.get_username())
                ],
            }
            for team in Team.objects.order_by("slug").prefetch_related("memberships__user")
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for row in rows:
            people = ", ".join(f"{m['username']} ({m['role']})" for m in row["members"]) or "no members"
            self.stdout.write(f"{row['slug']:<24} {row['name']}: {people}")

    def _invite(self, options: dict) -> None:
        team = self._team(options["slug"])
        fields = {key: options[key] for key in ("role", "username", "email")}
        form = InvitationForm(fields, team=team)  # validated exactly as on the team page
        if not form.is_valid():
            problems = "; ".join(
                f"--{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()
            )
            raise CommandError(problems)
        if options["days"] is not None and not 1 <= options["days"] <= 365:
            raise CommandError("--days is a number of days from 1 to 365.")
        data = form.cleaned_data
        invitation = do_create_invitation(
            team, data["role"], username=data["username"], email=data["email"], days=options["days"]
        )
        self.stdout.write(access.invitation_url(invitation))

    def _user(self, username: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        return user

    def _team(self, slug: str) -> Team:
        team = Team.objects.filter(slug=slug).first()
        if team is None:
            raise CommandError(f"No team {slug!r} (`manage.py team list` shows them).")
        return team

    def _membership(self, slug: str, username: str) -> Membership:
        team, user = self._team(slug), self._user(username)
        member = Membership.objects.select_related("user", "team").filter(team=team, user=user).first()
        if member is None:
            raise CommandError(f"{username} is not in {slug}.")
        return member
