"""Views for teams: the user's teams, a team's members, roles and pending invitations, and the active-team
switcher. (The invitation's own page, for the person invited, is views/invitations.py.)

Every view goes through `access.get_team_for_user`: an outsider gets 404, a member without the role 403.
Membership changes are `do_*` actions; the last admin of a team is protected there, not here.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh, reswap, retarget

from studio import access
from studio.actions.teams import (
    TeamChangeRefused,
    do_add_member,
    do_create_invitation,
    do_create_team,
    do_remove_member,
    do_revoke_invitation,
    do_set_role,
    do_switch_team,
)
from studio.forms import InvitationForm, MemberForm, RoleForm, TeamForm
from studio.htmx import AuthenticatedHtmxRequest, render_partials
from studio.models import ROLE_RANK, Invitation, Membership, Role, Team

# --- context --------------------------------------------------------------------------------------------------


def _teams_context(request: AuthenticatedHtmxRequest, form: TeamForm) -> dict:
    return {"form": form, "my_memberships": access.viewer(request).memberships}


def _invitations(request: AuthenticatedHtmxRequest, team: Team, me: Membership) -> list[Invitation]:
    """The team's pending invitations with their links, newest first (for its admins; nobody else sees them)."""
    if not me.allows(Role.ADMIN):
        return []
    pending = list(Invitation.objects.open().filter(team=team).order_by("-created_at"))
    for invitation in pending:
        invitation.link = access.invitation_url(invitation, request)
    return pending


def _team_context(team: Team, me: Membership, form: MemberForm | None = None, **extra) -> dict:
    """The team page's members, sorted by role then name; each row knows whether it can lose its role."""
    members = sorted(
        team.memberships.select_related("user"),
        key=lambda m: (-ROLE_RANK[m.role], m.user.get_username().lower()),
    )
    admins = sum(1 for m in members if m.role == Role.ADMIN)
    for member in members:
        member.last_admin = member.role == Role.ADMIN and admins == 1
    return {
        "team": team,
        "me": me,
        "is_admin": me.allows(Role.ADMIN),
        "members": members,
        "roles": Role.choices,
        "member_form": form or MemberForm(team=team, initial={"role": Role.MEMBER}),
        "invitation_days": settings.STUDIO_INVITATION_DAYS,
        **extra,
    }


def _invitations_context(
    request,
    team: Team,
    me: Membership,
    form: InvitationForm | None = None,
    member_form_errors: MemberForm | None = None,
    **extra,
) -> dict:
    """The whole team page: members (with a refused member form, if any) and the pending invitations."""
    return _team_context(
        team,
        me,
        member_form_errors,
        invitations=_invitations(request, team, me),
        invitation_form=form or InvitationForm(team=team, initial={"role": Role.MEMBER}),
        **extra,
    )


def _members_response(request: AuthenticatedHtmxRequest, team: Team) -> HttpResponse:
    """After a change: the fresh member list (htmx), or the team page (a plain form post), or the teams page
    when the admin just removed themselves."""
    me = access.membership(request.user, team.pk)
    if me is None:
        if request.htmx:
            return HttpResponseClientRedirect(reverse("teams"))
        return redirect("teams")
    if not request.htmx:
        return redirect("team", team_id=team.pk)
    return render(request, "team.html#team-members", _team_context(team, me))


# --- views ----------------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def team_list(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """The user's teams and their role in each (GET); create a team, its creator its admin (POST)."""
    if request.method != "POST":
        return render(request, "teams.html", _teams_context(request, TeamForm()))
    form = TeamForm(request.POST)
    if not form.is_valid():
        return render(request, "teams.html", _teams_context(request, form), status=400)
    try:
        team = do_create_team(request.user, form.cleaned_data["name"])
    except TeamChangeRefused as refused:
        form.add_error("name", str(refused))
        return render(request, "teams.html", _teams_context(request, form), status=400)
    messages.success(request, f"Team {team.name} created: add its members below.")
    return redirect("team", team_id=team.pk)


@login_required
@require_http_methods(["GET", "HEAD"])
def team_detail(request: AuthenticatedHtmxRequest, team_id: uuid.UUID) -> HttpResponse:
    """A team's members and roles; its admins also manage them here."""
    team, me = access.get_team_for_user(request.user, team_id)
    return render(request, "team.html", _invitations_context(request, team, me))


@login_required
@require_POST
def member_add(request: AuthenticatedHtmxRequest, team_id: uuid.UUID) -> HttpResponse:
    """Add a user to the team by username, with a role (admins only)."""
    team, me = access.get_team_for_user(request.user, team_id, Role.ADMIN)
    form = MemberForm(request.POST, team=team)
    added = None
    if form.is_valid():
        try:
            added = do_add_member(team, form.cleaned_data["username"], form.cleaned_data["role"])
        except TeamChangeRefused as refused:  # added by another admin since the form was checked
            form.add_error("username", str(refused))
    if added is None:
        if not request.htmx:
            context = _invitations_context(request, team, me, form=None, member_form_errors=form)
            return render(request, "team.html", context, status=400)
        response = render(request, "team.html#member-form", _team_context(team, me, form))
        return reswap(retarget(response, "#member-form"), "outerHTML")
    messages.success(
        request, f"{added.user.get_username()} joined {team.name} as {added.get_role_display()}."
    )
    if not request.htmx:
        return redirect("team", team_id=team.pk)
    return render_partials(
        request,
        ("team.html#team-members", _team_context(team, me)),
        ("team.html#member-form", _team_context(team, me, oob_form=True)),
    )


@login_required
@require_POST
def member_role(request: AuthenticatedHtmxRequest, team_id: uuid.UUID, membership_id: int) -> HttpResponse:
    """Change a member's role (admins only); the last admin keeps theirs."""
    team, _ = access.get_team_for_user(request.user, team_id, Role.ADMIN)
    member = get_object_or_404(Membership.objects.select_related("user"), pk=membership_id, team=team)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick a role: member, reviewer or admin.")
    else:
        try:
            changed = do_set_role(member, form.cleaned_data["role"])
            messages.success(request, f"{changed.user.get_username()} is now {changed.get_role_display()}.")
        except TeamChangeRefused as refused:
            messages.error(request, str(refused))
    return _members_response(request, team)


@login_required
@require_POST
def member_remove(request: AuthenticatedHtmxRequest, team_id: uuid.UUID, membership_id: int) -> HttpResponse:
    """Remove a member (admins only): their access to the team's renders ends at once."""
    team, _ = access.get_team_for_user(request.user, team_id, Role.ADMIN)
    member = get_object_or_404(Membership.objects.select_related("user"), pk=membership_id, team=team)
    try:
        do_remove_member(member)
        messages.success(request, f"{member.user.get_username()} was removed from {team.name}.")
    except TeamChangeRefused as refused:
        messages.error(request, str(refused))
    return _members_response(request, team)


@login_required
@require_POST
def invitation_create(request: AuthenticatedHtmxRequest, team_id: uuid.UUID) -> HttpResponse:
    """Invite someone with a role, optionally naming them (admins only); the link is listed at once."""
    team, me = access.get_team_for_user(request.user, team_id, Role.ADMIN)
    form = InvitationForm(request.POST, team=team)
    if not form.is_valid():
        status = 200 if request.htmx else 400  # htmx swaps only 2xx answers: the form with its errors
        return render(
            request,
            _invitation_template(request),
            _invitations_context(request, team, me, form),
            status=status,
        )
    invitation = do_create_invitation(
        team,
        form.cleaned_data["role"],
        created_by=request.user,
        username=form.cleaned_data["username"],
        email=form.cleaned_data["email"],
    )
    messages.success(request, f"Invitation created: send its link to {invitation.meant_for or 'the person'}.")
    if not request.htmx:
        return redirect("team", team_id=team.pk)
    return render(
        request, "team.html#team-invitations", _invitations_context(request, team, me, created=invitation.pk)
    )


@login_required
@require_POST
def invitation_revoke(
    request: AuthenticatedHtmxRequest, team_id: uuid.UUID, invitation_id: uuid.UUID
) -> HttpResponse:
    """Withdraw a pending invitation (admins only): its link stops working at once."""
    team, me = access.get_team_for_user(request.user, team_id, Role.ADMIN)
    invitation = get_object_or_404(Invitation, pk=invitation_id, team=team)
    if do_revoke_invitation(invitation):
        messages.success(request, "Invitation withdrawn: its link no longer works.")
    else:
        messages.error(request, "That invitation was already used or withdrawn.")
    if not request.htmx:
        return redirect("team", team_id=team.pk)
    return render(request, "team.html#team-invitations", _invitations_context(request, team, me))


def _invitation_template(request: AuthenticatedHtmxRequest) -> str:
    return "team.html#team-invitations" if request.htmx else "team.html"


@login_required
@require_POST
def team_switch(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """Pick the team new renders go to (empty: personal); only a team the user belongs to."""
    value = request.POST.get("team", "")
    team = None
    if value:
        try:
            team_id = uuid.UUID(value)
        except ValueError:
            raise Http404("No such team.") from None
        team, _ = access.get_team_for_user(request.user, team_id)
    do_switch_team(request.user, team)
    messages.info(request, f"New renders go to {team.name}." if team else "New renders are personal.")
    if request.htmx:
        # HX-Refresh: the whole page follows the new team; the toast waits in the session for it.
        response = HttpResponseClientRefresh()
        response.status_code = 204  # nothing to swap
        return response
    next_url = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure())
    return redirect(next_url if safe and next_url else "studio")


urlpatterns = [
    path("teams/", team_list, name="teams"),
    path(
        "teams/", team_list, name="team_create"
    ),  # the same view; POST creates (a name for forms to post to)
    path("teams/switch/", team_switch, name="team_switch"),
    path("teams/<uuid:team_id>/", team_detail, name="team"),
    path("teams/<uuid:team_id>/members/", member_add, name="member_add"),
    path("teams/<uuid:team_id>/members/<int:membership_id>/role/", member_role, name="member_role"),
    path("teams/<uuid:team_id>/members/<int:membership_id>/remove/", member_remove, name="member_remove"),
    path("teams/<uuid:team_id>/invitations/", invitation_create, name="invitation_create"),
    path(
        "teams/<uuid:team_id>/invitations/<uuid:invitation_id>/revoke/",
        invitation_revoke,
        name="invitation_revoke",
    ),
]
