"""Team actions: create a team, add members, change roles, remove members, switch the active team.

A team always keeps one admin: changes to one team's memberships happen one at a time under its row lock.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from studio.models import Membership, Profile, Role, Team


class TeamChangeRefused(Exception):
    """A membership change that would break a team rule, e.g. leave the team without an admin."""


def _locked_team(team_id):
    """Lock the team's row: membership changes to one team happen one at a time, so two admins demoting each
    other at the same moment cannot leave it without an admin (SQLite takes its write lock at BEGIN IMMEDIATE)."""
    return Team.objects.select_for_update().get(pk=team_id)


def _refuse_if_last_admin(membership) -> None:
    if membership.role != Role.ADMIN:
        return
    others = Membership.objects.filter(team_id=membership.team_id, role=Role.ADMIN).exclude(pk=membership.pk)
    if not others.exists():
        raise TeamChangeRefused(
            f"{membership.user.get_username()} is the team's only admin: make someone else an admin first."
        )


def do_create_team(user, name: str):
    """Create a team with a unique slug made from its name; its creator becomes its admin."""
    base = slugify(name)[:70].strip("-") or "team"
    for number in range(1, 1000):
        slug = base if number == 1 else f"{base}-{number}"
        if Team.objects.filter(slug=slug).exists():
            continue
        try:
            with transaction.atomic():
                team = Team.objects.create(name=name, slug=slug)
                Membership.objects.create(team=team, user=user, role=Role.ADMIN)
                return team
        except IntegrityError:  # someone took the slug in the meantime: try the next one
            continue
    raise TeamChangeRefused(f"Too many teams are called {name!r}: pick another name.")


def do_add_member(team, user, role: str):
    """Add a user to a team with a role; a user already in it is refused (change their role instead)."""
    try:
        with transaction.atomic():
            return Membership.objects.create(team=team, user=user, role=role)
    except IntegrityError:
        raise TeamChangeRefused(f"{user.get_username()} is already in {team.name}.") from None


def do_set_role(membership, role: str):
    """Change a member's role; the team's last admin keeps theirs."""
    with transaction.atomic():
        _locked_team(membership.team_id)
        current = Membership.objects.select_related("user").filter(pk=membership.pk).first()
        if current is None:
            raise TeamChangeRefused(f"{membership.user.get_username()} is no longer in the team.")
        if role != Role.ADMIN:
            _refuse_if_last_admin(current)
        Membership.objects.filter(pk=current.pk).update(role=role)
    current.role = role
    return current


def do_remove_member(membership) -> None:
    """Remove a member: their access ends with this commit, video files included. The last admin stays."""
    with transaction.atomic():
        _locked_team(membership.team_id)
        current = Membership.objects.select_related("user").filter(pk=membership.pk).first()
        if current is None:
            return  # already removed: removing twice is the same as once
        _refuse_if_last_admin(current)
        current.delete()


def do_switch_team(user, team):
    """Make `team` (one the caller checked the user belongs to), or None for personal, where new renders go."""
    profile, _ = Profile.objects.update_or_create(user=user, defaults={"active_team": team})
    return profile
