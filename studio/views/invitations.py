"""The invitation's own page, `/invite/<token>/`: the one way into the studio without an existing account.

No login needed: the signed token is the key. A new person picks a username and a password and joins; someone
logged in accepts and joins; either way the team becomes their active team and they land in the studio. A
tampered link is 404, and a used, revoked or expired one 410, a link meant for someone else 403, each a page that
says so in words (never a 500). There is no other sign-up.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods

from studio import access
from studio.actions.teams import (
    InvitationUnusable,
    check_invitation,
    do_accept_invitation,
    do_join_by_invitation,
)
from studio.forms import JoinForm
from studio.models import Invitation


def _unusable(request: HttpRequest, invitation: Invitation | None, message: str, status: int) -> HttpResponse:
    context = {"invitation": invitation, "problem": message, "status": status}
    return render(request, "invitation.html", context, status=status)


def _page(
    request: HttpRequest, invitation: Invitation, form: JoinForm | None, status: int = 200
) -> HttpResponse:
    context: dict[str, object] = {"invitation": invitation, "form": form}
    if form is not None and invitation.username:
        # The invitation names an account that exists: its owner logs in to accept; no form to fill.
        accounts = get_user_model().objects.filter(username__iexact=invitation.username)
        context["existing"] = accounts.exists()
    return render(request, "invitation.html", context, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """See the invitation (GET); join as a new person or accept as the logged-in user (POST)."""
    try:
        invitation = access.get_invitation_for_token(token)
    except Http404:
        message = "This invitation link is not valid: check that you copied the whole link."
        return _unusable(request, None, message, 404)
    user = request.user if request.user.is_authenticated else None
    try:
        check_invitation(invitation, user)
        if request.method != "POST":
            return _page(request, invitation, None if user else JoinForm(invitation=invitation))
        if user is not None:
            do_accept_invitation(invitation, user)
            return _joined(request, invitation)
        form = JoinForm(request.POST, invitation=invitation)
        if not form.is_valid():
            return _page(request, invitation, form, status=400)
        data = form.cleaned_data
        try:
            new_user = do_join_by_invitation(invitation, data["username"], data["password1"], data["email"])
        except IntegrityError:  # the same username, taken a moment ago
            form.add_error("username", "A user with that username already exists.")
            return _page(request, invitation, form, status=400)
    except InvitationUnusable as unusable:
        return _unusable(request, invitation, str(unusable), unusable.status)
    login(request, new_user, backend="django.contrib.auth.backends.ModelBackend")
    return _joined(request, invitation)


def _joined(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    role = invitation.get_role_display().lower()
    messages.success(
        request, f"Welcome to {invitation.team.name}: you joined as {role}, and new renders go there."
    )
    return redirect("studio")


urlpatterns = [path("invite/<str:token>/", invitation, name="invitation")]
