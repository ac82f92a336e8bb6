"""The one place that decides what a user may see and do.

Every page, fragment, action and video file goes through these helpers:
- an outsider (not the author, not in the render's team, or the render is private) gets 404: they cannot tell
  it exists;
- a member who can see it but lacks the role (or is not the author, for author-only actions, or is not staff,
  for the operator actions) gets 403;
- anonymous users never get here: views are `login_required`, which sends them to the login page; the
  exceptions are a render's init image behind a signed, expiring token, for the gateway to fetch, and a share
  link (a signed ShareLink id whose row says it is live: `get_share_for_token`).
Access is computed from the Membership rows on every request, so removing a member takes effect at once.
Whose money a user may see (spend, the ledger, budgets, reconciliation) is a `MoneyScope`, from
`money_scope_for_user`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse

from studio.models import (
    ROLE_RANK,
    GatewayAlert,
    Invitation,
    LedgerEntry,
    Membership,
    Profile,
    Render,
    ReviewState,
    Role,
    SavedPrompt,
    ShareLink,
    State,
    Team,
)
from studio.params import BadValue

if TYPE_CHECKING:
    from django.contrib.auth.models import User

INIT_IMAGE_SALT = "studio.init-image"
INVITATION_SALT = "studio.invitation"
INIT_IMAGE_LINK_LIFETIME = timedelta(hours=24)


class Need(StrEnum):
    VIEW = "view"  # see it, play it, comment, star, tag, promote, remix, re-run (as one's own render)
    REVIEW = "review"  # approve / request changes / reject: a reviewer or admin of the render's team
    OWN = "own"  # cancel, make private: its author only
    OPERATE = "operate"  # the operator actions (attach, not sent, recheck): site staff who can see it
    SHARE = "share"  # share links outside the team: its author, or an admin of its team


def membership(user, team_id) -> Membership | None:
    """The user's membership of a team, if any."""
    if not user.is_authenticated or team_id is None:
        return None
    return Membership.objects.filter(user=user, team_id=team_id).first()


def get_render_for_user(user, render_id, need: Need = Need.VIEW) -> Render:
    """The render if this user may see it (else 404) and do what `need` says (else 403)."""
    render = (
        Render.objects.for_user(user)
        .select_related("user", "team", "reviewed_by")
        .filter(pk=render_id)
        .first()
    )
    if render is None:
        raise Http404("No such render.")
    if need == Need.OWN and render.user_id != user.pk:
        raise PermissionDenied("Only its author can do that.")
    if need == Need.REVIEW and not can_review(user, render):
        raise PermissionDenied("Only the team's reviewers can review this render.")
    if need == Need.OPERATE and not user.is_staff:
        raise PermissionDenied("Only the studio's operators can do that.")
    if need == Need.SHARE and not can_share(user, render):
        raise PermissionDenied("Only its author or an admin of its team can share it outside the team.")
    return render


def can_share(user, render: Render) -> bool:
    """Whether the user may make and revoke share links of this render: its author, or an admin of its team."""
    if render.user_id == user.pk:
        return True
    member = membership(user, render.team_id)
    return member is not None and member.allows(Role.ADMIN)


SHARE_SALT = "studio.share-link"


class ShareGone(Exception):
    """A share link that was real but no longer works (expired or revoked): the page says so (410)."""

    def __init__(self, link: ShareLink) -> None:
        super().__init__("This share link no longer works.")
        self.link = link


def _signed_id(salt: str, pk: uuid.UUID) -> str:
    """A row's id, signed: what a link carries so that no one can guess or forge another (share links,
    invitations). The row decides what the link may still do; the signature only names it."""
    return signing.Signer(salt=salt).sign(pk.hex)


def _id_from_token(salt: str, token: str, message: str) -> uuid.UUID:
    """The id a `_signed_id` token names; Http404 with `message` for a tampered or malformed one."""
    try:
        return uuid.UUID(hex=signing.Signer(salt=salt).unsign(token))
    except (signing.BadSignature, ValueError) as error:
        raise Http404(message) from error


def share_token(link: ShareLink) -> str:
    """What a share link's URL carries: its id, signed, so that no one can guess or forge another."""
    return _signed_id(SHARE_SALT, link.pk)


def get_share_for_token(token: str) -> ShareLink:
    """The live share link a token names, with its render; Http404 for a forged or unknown token, ShareGone
    for an expired or revoked link, or one whose clip is gone (it is not playable any more)."""
    link_id = _id_from_token(SHARE_SALT, token, "No such link.")
    link = ShareLink.objects.select_related("render").filter(pk=link_id).first()
    if link is None:
        raise Http404("No such link.")
    if not link.is_live or not link.render.playable:
        raise ShareGone(link)
    return link


def get_share_for_user(user, render_id, share_id) -> ShareLink:
    """One of a render's share links, for someone who may share the render (else 404/403 as the render says)."""
    render = get_render_for_user(user, render_id, Need.SHARE)
    link = ShareLink.objects.filter(pk=share_id, render=render).first()
    if link is None:
        raise Http404("No such link.")
    link.render = render
    return link


def get_variants_for_user(user, render_id) -> list[Render]:
    """The render (404 unless the user may see it) and the other takes of its "Render ×N" group that the user may
    see, first to last: the contact sheet. A render on its own is a sheet of one."""
    render = get_render_for_user(user, render_id)
    if render.variant_group is None:
        return [render]
    return list(
        Render.objects.for_user(user)
        .filter(variant_group=render.variant_group, user=render.user_id)
        .select_related("user", "team")
        .order_by("variant_index")
    )


def saved_prompts_for_user(user) -> QuerySet[SavedPrompt]:
    """Saved prompts the user may start from: their own, and those shared with a team they are in now."""
    return SavedPrompt.objects.for_user(user).select_related("user", "team")


def get_saved_prompt_for_user(user, prompt_id) -> SavedPrompt:
    """One of the user's own saved prompts, to change or delete; anyone else's is 404, shared or not."""
    prompt = SavedPrompt.objects.filter(pk=prompt_id, user=user).first() if user.is_authenticated else None
    if prompt is None:
        raise Http404("No such saved prompt.")
    return prompt


def team_to_share_with(user, team_id) -> Team | None:
    """A team the user belongs to, to share a saved prompt with; None when they are not in it (or no team)."""
    member = membership(user, team_id)
    return member.team if member is not None else None


def get_alert_for_operator(user, alert_id) -> GatewayAlert:
    """An open or resolved gateway alert, for site staff (else 403; an unknown id is 404)."""
    if not user.is_staff:
        raise PermissionDenied("Only the studio's operators can resolve alerts.")
    alert = GatewayAlert.objects.filter(pk=alert_id).first()
    if alert is None:
        raise Http404("No such alert.")
    return alert


def reviewable(render: Render, user_id, reviewer_teams: set) -> bool:
    """The review rule: a reviewer or admin of the render's team (`reviewer_teams`, from reviewer_team_ids)
    reviews its shared, finished clips. Nobody reviews their own clip (a second pair of eyes is the point of
    review, and the queue lists only others'), private renders are never reviewed, and neither is a render that
    did not finish (failed, cancelled, still rendering): there is no clip to judge."""
    return (
        render.state == State.COMPLETED
        and render.team_id is not None
        and render.team_id in reviewer_teams
        and not render.private
        and render.user_id != user_id
    )


def can_review(user, render: Render) -> bool:
    """Whether the user may review this render (see `reviewable`)."""
    return reviewable(render, user.pk, reviewer_team_ids(user))


def reviewer_team_ids(user) -> set:
    """Teams in which the user may review: for marking many cards at once without a query each."""
    if not user.is_authenticated:
        return set()
    roles = [role for role, rank in ROLE_RANK.items() if rank >= ROLE_RANK[Role.REVIEWER]]
    return set(Membership.objects.filter(user=user, role__in=roles).values_list("team_id", flat=True))


def init_image_token(render: Render) -> str:
    """A token that opens this render's init image, without a login, for INIT_IMAGE_LINK_LIFETIME."""
    return signing.TimestampSigner(salt=INIT_IMAGE_SALT).sign(str(render.pk))


def init_image_path(render: Render) -> str:
    """The studio path of the render's init image behind a fresh token, for the gateway to fetch."""
    return reverse("init_image", args=[init_image_token(render)])


def get_render_for_init_image_token(token: str) -> Render:
    """The render whose init image a signed token names, while the token is fresh (else 404: it reveals nothing)."""
    try:
        render_id = signing.TimestampSigner(salt=INIT_IMAGE_SALT).unsign(
            token, max_age=INIT_IMAGE_LINK_LIFETIME
        )
    except signing.BadSignature as error:  # also SignatureExpired
        raise Http404("No such image.") from error
    render = Render.objects.filter(pk=render_id).exclude(init_image="").first()
    if render is None:
        raise Http404("No such image.")
    return render


def invitation_token(invitation: Invitation) -> str:
    """The signed token of an invitation's link. It only names the invitation: whether it can still be used
    (expiry, use, revocation) is the row's to say, so revoking works and nothing is decided by the link."""
    return _signed_id(INVITATION_SALT, invitation.pk)


def invitation_path(invitation: Invitation) -> str:
    """The studio path of an invitation's link."""
    return reverse("invitation", args=[invitation_token(invitation)])


def invitation_url(invitation: Invitation, request=None) -> str:
    """The whole link to send: under STUDIO_BASE_URL when set, else the address this request came to, else
    (the command line) http://127.0.0.1:8000, where `make run` serves."""
    path = invitation_path(invitation)
    if settings.STUDIO_BASE_URL:
        return settings.STUDIO_BASE_URL + path
    if request is not None:
        return request.build_absolute_uri(path)
    return "http://127.0.0.1:8000" + path


def get_invitation_for_token(token: str) -> Invitation:
    """The invitation a signed token names, in whatever state (its page says why it cannot be used); a
    tampered or unknown token is 404, saying nothing more."""
    invitation_id = _id_from_token(INVITATION_SALT, token, "This invitation link is not valid.")
    invitation = Invitation.objects.select_related("team").filter(pk=invitation_id).first()
    if invitation is None:
        raise Http404("This invitation link is not valid.")
    return invitation


def get_team_for_user(user, team_id, role: str = Role.MEMBER) -> tuple[Team, Membership]:
    """A team the user belongs to (else 404) with at least `role` (else 403)."""
    return _team_as(
        Membership.objects.select_related("team").filter(user=user, team_id=team_id).first(), role
    )


def _team_as(member: Membership | None, role: str) -> tuple[Team, Membership]:
    """The member's team if they have at least `role` in it (else 403); None, not a member: 404."""
    if member is None:
        raise Http404("No such team.")
    if not member.allows(role):
        raise PermissionDenied(f"Only the team's {Role(role).label.lower()}s can do that.")
    return member.team, member


def active_team(user) -> Team | None:
    """The team new renders go to: the one the user picked, while they are still a member of it."""
    if not user.is_authenticated:
        return None
    return _active_team(user, _memberships(user))


def _active_team(user, memberships: list[Membership]) -> Team | None:
    """`active_team` from the user's memberships (with their teams), as read for this request."""
    chosen = list(Profile.objects.filter(user=user).values_list("active_team_id", flat=True)[:1])
    if chosen == [None]:
        return None  # the user picked "Personal"
    teams = {m.team_id: m.team for m in memberships}
    if chosen and chosen[0] in teams:
        return teams[chosen[0]]
    # No choice yet (or the chosen team dropped them): their oldest team, else personal.
    return min(memberships, key=lambda m: m.created_at).team if memberships else None


def _memberships(user) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("team").order_by("team__name"))


class Viewer:
    """What one request knows of its signed-in user's teams, read at most once: their memberships (with their
    teams, by name), the teams they review, and their active team. Kept on the request by `viewer(request)`, so the
    view and the context processors (the team switcher, the review badge) share one read instead of each asking
    again. It lives no longer than the request: access is still computed from the rows on every request. A view
    that changes memberships or the active team reads it only after the change."""

    def __init__(self, user) -> None:
        self.user = user

    @cached_property
    def memberships(self) -> list[Membership]:
        return _memberships(self.user) if self.user.is_authenticated else []

    @cached_property
    def reviewer_team_ids(self) -> set:
        return {m.team_id for m in self.memberships if m.allows(Role.REVIEWER)}

    @cached_property
    def active_team(self) -> Team | None:
        return _active_team(self.user, self.memberships) if self.user.is_authenticated else None

    def can_review(self, render: Render) -> bool:
        """`can_review`, from the teams already read."""
        return reviewable(render, self.user.pk, self.reviewer_team_ids)


def viewer(request) -> Viewer:
    """The request's Viewer, made on first use."""
    found = getattr(request, "_studio_viewer", None)
    if found is None or found.user is not request.user:
        found = Viewer(request.user)
        setattr(request, "_studio_viewer", found)  # noqa: B010 (not an HttpRequest attribute)
    return found


def to_review(user, team_ids: set | None = None):
    """Finished renders waiting for this user's review: in teams they review, not their own, not private."""
    return (
        Render.objects.filter(
            team_id__in=reviewer_team_ids(user) if team_ids is None else team_ids,
            private=False,
            state=State.COMPLETED,
            review_state=ReviewState.NEEDS_REVIEW,
        )
        .exclude(user=user)
        .select_related("user", "team")
    )


# --- whose money ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoneyScope:
    """Whose money a page shows, and whether the viewer may see every member's lines.

    A team's (every member's lines for its admins; the team's totals and their own line for everyone else), or the
    viewer's personal renders (no team, no budgets).
    """

    team: Team | None  # None: the viewer's personal renders
    viewer: User | AnonymousUser  # AnonymousUser: the `money` command's operator (no lines of its own)
    sees_everyone: bool  # a team admin, or anyone looking at their own personal spend

    @property
    def personal(self) -> bool:
        return self.team is None

    @property
    def param(self) -> str:
        return "personal" if self.team is None else str(self.team.pk)

    def person(self) -> User:
        """The viewer, where the scope needs a person: personal renders, one's own lines. The operator only looks
        at a team's money and sees every line, so never gets here."""
        if isinstance(self.viewer, AnonymousUser):
            raise ValueError("The operator has no personal renders and no lines of their own.")
        return self.viewer

    def ledger(self) -> QuerySet:
        """Every ledger entry of the scope (team totals are shown to all its members)."""
        if self.team is None:
            return LedgerEntry.objects.filter(team__isnull=True, user=self.person())
        return LedgerEntry.objects.filter(team=self.team)

    def ledger_lines(self) -> QuerySet:
        """The entries the viewer may see line by line: all for admins, their own for other members."""
        rows = self.ledger()
        return rows if self.sees_everyone else rows.filter(user=self.person())

    def renders(self) -> QuerySet:
        if self.team is None:
            return Render.objects.filter(team__isnull=True, user=self.person())
        return Render.objects.filter(team=self.team)


def money_scope_for_user(viewer: Viewer, value: str, role: str = Role.MEMBER) -> MoneyScope:
    """Whose money: a team the user (the request's `viewer`) belongs to with `role` (else 404/403), or their
    personal renders.

    `value` is the query string's `team`: a team id, "personal", or empty for the user's active team. Anything
    else is a BadValue.
    """
    user = viewer.user
    if value == "personal":
        return MoneyScope(None, user, sees_everyone=True)
    if value:
        try:
            team_id = uuid.UUID(value)
        except ValueError:
            raise BadValue("team must be a team id or “personal”.") from None
    else:
        team = viewer.active_team
        if team is None:
            return MoneyScope(None, user, sees_everyone=True)
        team_id = team.pk
    team, me = _team_as(next((m for m in viewer.memberships if m.team_id == team_id), None), role)
    return MoneyScope(team, user, sees_everyone=me.allows(Role.ADMIN))
