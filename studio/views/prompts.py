"""Prompt memory (issue 12): my recent prompts and the saved prompts I may use, searchable; save the studio form
under a name (private, or shared with one of my teams); delete my own. Picking one fills the form (studio.js)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST, require_safe

from studio import access
from studio.actions.prompts import do_delete_prompt, do_save_prompt
from studio.forms import RenderForm, SavePromptForm
from studio.htmx import AuthenticatedHtmxRequest
from studio.models import Render
from studio.text import LINE_BREAKS, control_characters

RECENT = 12  # distinct recent prompts listed
RECENT_SCAN = 300  # renders read to find them (a burst of re-runs of one prompt counts once)
SAVED = 50
SEARCH_MAX_LENGTH = 200


@dataclass(frozen=True)
class RecentPrompt:
    prompt: str
    model: str
    params: dict
    created_at: datetime

    @property
    def fill(self) -> str:
        return json.dumps({"prompt": self.prompt, "model": self.model, "params": self.params})

    @property
    def ago(self) -> str:
        """When it was last rendered, as the list says it: "just now", "3 hours, 5 minutes ago"."""
        if timezone.now() - self.created_at < timedelta(minutes=1):
            return "just now"
        return f"{timesince(self.created_at)} ago"


def _search(request: AuthenticatedHtmxRequest) -> str:
    """The search text, cut to a sane length; control characters are dropped rather than refused (it is typing)."""
    q = request.GET.get("q", "") if request.method == "GET" else request.POST.get("q", "")
    q = q.strip()[:SEARCH_MAX_LENGTH]
    return "" if control_characters(q, also=LINE_BREAKS) else q


def recent_prompts(user, q: str = "") -> list[RecentPrompt]:
    """The user's own distinct prompts, newest first, each with the model and parameters it was last rendered with."""
    rows = Render.objects.mine(user).order_by("-created_at")
    if q:
        rows = rows.filter(prompt__icontains=q)
    seen: set[str] = set()
    found = []
    for prompt, model, params, created_at in rows.values_list("prompt", "model", "params", "created_at")[
        :RECENT_SCAN
    ]:
        if prompt in seen:
            continue
        seen.add(prompt)
        found.append(RecentPrompt(prompt, model, params, created_at))
        if len(found) == RECENT:
            break
    return found


def _list(request: AuthenticatedHtmxRequest, status: int = 200) -> HttpResponse:
    q = _search(request)
    saved = access.saved_prompts_for_user(request.user)
    if q:
        saved = saved.filter(Q(name__icontains=q) | Q(prompt__icontains=q))
    context = {"saved": list(saved[:SAVED]), "recent": recent_prompts(request.user, q), "q": q}
    return render(request, "prompt_list.html", context, status=status)


@login_required
@require_safe
def prompts(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """The prompt memory's list: saved prompts I may use and my recent ones, matching `q` if given."""
    return _list(request)


@login_required
@require_POST
def prompt_save(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """Save what the studio form holds (prompt, model, parameters) under a name; a problem is said in a toast."""
    form = RenderForm(request.POST, check_image=False, user=request.user)
    named = SavePromptForm(request.POST, user=request.user)
    if not (named.is_valid() and form.is_valid()):
        problems = [str(e) for errors in named.errors.values() for e in errors]
        problems += [str(e) for name, errors in form.errors.items() if name != "parent" for e in errors]
        if problems:
            return HttpResponse("Not saved: " + " ".join(problems), status=400, content_type="text/plain")
    data = form.cleaned_data
    team = named.cleaned_data["share"]
    do_save_prompt(
        request.user,
        name=named.cleaned_data["name"],
        model=data["model"],
        prompt=data["prompt"],
        params=form.params,
        team=team,
    )
    messages.success(
        request, f"Saved “{named.cleaned_data['name']}”" + (f" for {team.name}." if team else ".")
    )
    return _list(request)


@login_required
@require_POST
def prompt_delete(request: AuthenticatedHtmxRequest, prompt_id: uuid.UUID) -> HttpResponse:
    """Delete one of my saved prompts (anyone else's is 404); answers with the list."""
    do_delete_prompt(access.get_saved_prompt_for_user(request.user, prompt_id))
    return _list(request)


urlpatterns = [
    path("prompts/", prompts, name="prompts"),
    path("prompts/save/", prompt_save, name="prompt_save"),
    path("prompts/<uuid:prompt_id>/delete/", prompt_delete, name="prompt_delete"),
]
