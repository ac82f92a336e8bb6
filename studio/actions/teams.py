"""Team actions: create a team, add members, change roles, remove members, switch the active team; invite
people, revoke invitations, and join a team through one.

A team always keeps one admin: changes to one team's memberships happen one at a time under its row lock.
An invitation is used once: accepting it is a conditional update on its row, in the transaction that makes the
membership (and the new account), so of two people accepting at once one joins and the other is told it was used.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from studio.models import Invitation, InvitationStatus, Membership, Profile, Role, Team


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


# --- invitations ----------------------------------------------------------------------------------------------


class InvitationUnusable(Exception):
    """An invitation that cannot be accepted (used, revoked, expired, or meant for someone else), and why."""

    def __init__(self, message: str, status: int = 410) -> None:
        super().__init__(message)
        self.status = status  # 410 Gone: used, revoked or expired; 403: not for this person; 409: in the team


UNUSABLE = {
    InvitationStatus.ACCEPTED: "This invitation has already been used. Ask the team's admin for a new one.",
    InvitationStatus.REVOKED: "This invitation was withdrawn by the team's admin. Ask them for a new one.",
    InvitationStatus.EXPIRED: "This invitation has expired. Ask the team's admin for a new one.",
}


def do_create_invitation(
    team: Team, role: str, *, created_by=None, username: str = "", email: str = "", days: int | None = None
) -> Invitation:
    """Invite someone (anyone with the link, or the named username/e-mail) to join `team` with `role`."""
    days = settings.STUDIO_INVITATION_DAYS if days is None else days
    return Invitation.objects.create(
        team=team,
        role=role,
        username=username,
        email=email,
        created_by=created_by,
        expires_at=timezone.now() + timedelta(days=days),
    )


def do_revoke_invitation(invitation: Invitation) -> bool:
    """Withdraw an invitation that was not used yet; False when it had been used (or revoked) already."""
    open_ones = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True)
    return open_ones.update(revoked_at=timezone.now()) == 1


def check_invitation(invitation: Invitation, user=None) -> None:
    """Raise InvitationUnusable if the invitation cannot be used (by `user`, when given): what its page says."""
    if invitation.status != InvitationStatus.PENDING:
        raise InvitationUnusable(UNUSABLE[InvitationStatus(invitation.status)])
    if user is None:
        return
    if invitation.username and invitation.username.casefold() != user.get_username().casefold():
        raise InvitationUnusable(
            f"This invitation is for {invitation.username}, and you are logged in as {user.get_username()}: "
            "log out, then open the link again.",
            status=403,
        )
    if invitation.email and invitation.email.casefold() != (user.email or "").casefold():
        raise InvitationUnusable(
            f"This invitation was sent to {invitation.email}, which is not your account's e-mail address: "
            "log in with that account, or ask the team's admin to invite you by username.",
            status=403,
        )
    if Membership.objects.filter(team_id=invitation.team_id, user=user).exists():
        raise InvitationUnusable(f"You are already in {invitation.team.name}.", status=409)


def _claim(invitation: Invitation, user) -> Membership:
    """Inside a transaction: mark the invitation used by `user` if it still can be (the conditional update that
    makes it single use), then add the membership."""
    claimed = (
        Invitation.objects.open()
        .filter(pk=invitation.pk)
        .update(accepted_at=timezone.now(), accepted_by=user)
    )
    if claimed != 1:  # used, revoked or expired since it was read: say which
        check_invitation(Invitation.objects.select_related("team").get(pk=invitation.pk))
        raise InvitationUnusable(UNUSABLE[InvitationStatus.ACCEPTED])
    try:
        with transaction.atomic():
            return Membership.objects.create(team_id=invitation.team_id, user=user, role=invitation.role)
    except IntegrityError:  # added by an admin in the meantime
        raise InvitationUnusable(f"You are already in {invitation.team.name}.", status=409) from None


def do_accept_invitation(invitation: Invitation, user) -> Membership:
    """A logged-in user joins the invitation's team with its role; it becomes their active team."""
    check_invitation(invitation, user)
    with transaction.atomic():
        membership = _claim(invitation, user)
        do_switch_team(user, invitation.team)
    return membership


def do_join_by_invitation(invitation: Invitation, username: str, password: str, email: str = ""):
    """A new person makes their account (the caller validated the username and the password) and joins the
    invitation's team with its role, all or nothing; returns the new user."""
    check_invitation(invitation)
    with transaction.atomic():
        user = get_user_model().objects.create_user(
            username=username, email=invitation.email or email, password=password
        )
        _claim(invitation, user)
        do_switch_team(user, invitation.team)
    return user
