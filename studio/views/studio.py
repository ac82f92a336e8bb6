"""Views: small, typed, access-checked; each calls at most one action and returns a page or a partial."""

from __future__ import annotations

import uuid
from dataclasses import replace
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import reswap, retarget

from studio import access, catalog, pricing
from studio.actions.renders import do_cancel_render, do_submit_variants
from studio.catalog import MODELS, SORA2
from studio.cursor import Cursor, catch_up, parse_time
from studio.forms import RenderForm
from studio.gallery import group_variants
from studio.htmx import AuthenticatedHtmxRequest, card_answer, group_answer, render_partials, request_cursor
from studio.models import Render
from studio.money import ledger
from studio.ranged import serve_clip, stored_file_response
from studio.views.live import live_parts

PAGE_SIZE = 50
ERROR_FIELDS = [
    "model",
    "prompt",
    "duration_seconds",
    "size",
    "resolution",
    "aspect_ratio",
    "seed",
    "style_preset",
    "parent",
    "variants",
]


def _form_context(form: RenderForm, **extra) -> dict:
    estimate = extra.pop("estimate") if "estimate" in extra else None
    if estimate is None:
        estimate = form.estimate() if form.is_bound else _initial_estimate(form)
    return {
        "form": form,
        "estimate": estimate,
        **_variants_context(form, estimate),
        **_catalog_context(),
        **extra,
    }


def _variants_context(form: RenderForm, estimate) -> dict:
    """ "Render ×N": how many takes the form asks for and what they cost together (what the budget must hold)."""
    count = 1
    if form.is_bound and hasattr(form, "cleaned_data"):
        count = form.cleaned_data.get("variants") or 1
    elif not form.is_bound:
        count = form.initial.get("variants") or 1
    return {
        "variants": count,
        "variant_choices": range(1, catalog.MAX_VARIANTS + 1),
        "batch_total": estimate.total * count if estimate else None,
    }


def _budget_note(request: AuthenticatedHtmxRequest, context: dict) -> dict:
    """The context plus what the estimate says when the render (all its takes) would exceed the team's or the
    member's budget."""
    total = context["batch_total"]  # None exactly when there is no estimate
    if total is None:
        return context
    team = access.viewer(request).active_team
    return {**context, "over_budget": ledger.over_budget(request.user, team, total, context["variants"])}


def _catalog_context() -> dict:
    """What the form shows of the catalog, read when it is drawn: each tier's model, the limits, the hints."""
    return {
        "specs": {"draft": catalog.for_tier("draft"), "pro": catalog.for_tier("pro")},
        "max_prompt_chars": catalog.MAX_PROMPT_CHARS,
        "seed_max": catalog.SEED_MAX,
        "model_hints": _model_hints,  # called by the template: the rate card is read only where hints are shown
    }


def _model_hints() -> list[tuple[str, str]]:
    """Each model's key and the hint under the form's model choice, with the rate card's price of today."""
    card = ledger.rate_card()
    hints = []
    for spec in MODELS.values():
        rate = pricing.per_second(card[spec.key][spec.rate_key({})])  # "$0.10/s": a sentence spells it out
        hints.append((spec.key, spec.hint(rate.removesuffix("/s") + " per second")))
    return hints


def _studio_context(request: AuthenticatedHtmxRequest, form: RenderForm | None = None) -> dict:
    form = form or RenderForm(initial={"client_token": uuid.uuid4(), "model": SORA2})
    now = (
        timezone.now()
    )  # before the query: a card changed while the page renders is polled again, never lost
    fetched = list(Render.objects.mine(request.user).order_by("-created_at", "-pk")[: PAGE_SIZE + 1])
    renders, more = fetched[:PAGE_SIZE], len(fetched) > PAGE_SIZE
    cursor = Cursor.for_page(now, renders, full=more)
    # `items`: the cards with each "Render ×N" group framed together; `prompt_teams`: whom to share a prompt with.
    return _form_context(
        form,
        renders=renders,
        items=group_variants(renders),
        polling=any(not r.is_terminal for r in renders),
        cursor=cursor,
        prompt_teams=[m.team for m in access.viewer(request).memberships],  # by name
        older_query=_older_query(renders[-1]) if more else "",
    )


def _older_query(last: Render) -> str:
    """The query string of the "Show older renders" button: the keyset of the last card shown."""
    return urlencode({"before": last.created_at.isoformat(), "id": str(last.pk)})


def _initial_estimate(form: RenderForm):
    """The cost of what an unbound form starts with (pre-filled by promote or remix), else of the defaults."""
    if form.initial.get("duration_seconds") is None:
        return _default_estimate()
    data = {k: v for k, v in form.initial.items() if k not in ("parent", "client_token", "private")}
    priced = RenderForm(data, check_image=False)  # priced the way the live estimate prices it
    priced.is_valid()
    return priced.estimate()


def _default_estimate():
    form = RenderForm({"model": "sora2", "prompt": "x", "duration_seconds": 5}, check_image=False)
    form.is_valid()
    return form.estimate()


@login_required
@require_safe
def studio(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """The prompt studio: the form (pre-filled by ?promote=<id> or ?remix=<id>), the estimate and "My renders"."""
    form, notice = _prefilled(request)
    context = _budget_note(request, _studio_context(request, form))
    return render(request, "studio.html", {**context, **notice})


def _prefilled(request: AuthenticatedHtmxRequest) -> tuple[RenderForm | None, dict]:
    """The form pre-filled from a render the user may see (404 otherwise), and what the page says about it."""
    key = "promote" if "promote" in request.GET else "remix" if "remix" in request.GET else None
    if key is None:
        return None, {}
    try:
        source_id = uuid.UUID(request.GET[key])
    except ValueError:
        raise Http404("No such render.") from None
    source = access.get_render_for_user(request.user, source_id)
    if key == "remix":
        return RenderForm.remixing(source), {"remix_of": source}
    refusal = source.promotion_refusal()
    if refusal:
        return None, {"prefill_message": refusal}
    return RenderForm.promoting(source), {}


@login_required
@require_POST
def estimate(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """The live estimate of what the form holds, with each field's error swapped next to its field."""
    form = RenderForm(request.POST, check_image=False, user=request.user)
    form.is_valid()
    # An empty prompt does not change the price: say so on submit, not while the user is still choosing.
    fields = [f for f in ERROR_FIELDS if f != "prompt" or request.POST.get("prompt", "").strip()]
    context = _budget_note(request, _form_context(form, oob_errors=True, error_fields=fields))
    return render(request, "studio.html#estimate", context)


@login_required
@require_POST
def submit(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """Validate and queue a render; the new card goes to the top of "My renders"."""
    form = RenderForm(request.POST, request.FILES, user=request.user)
    if not form.is_valid():
        return _form_with_errors(request, form)
    try:
        new = do_submit_variants(request.user, form.order())
    except ledger.BudgetExceeded as refused:
        form.add_error(None, refused.message)  # refused before anything was recorded or sent
        return _form_with_errors(request, form)
    if not request.htmx:
        return redirect("studio")
    # A promotion is done once submitted: the fresh form keeps the settings but promotes nothing.
    fresh = RenderForm(
        initial={**form.cleaned_data, "client_token": uuid.uuid4(), "init_image": None, "parent": None}
    )
    form_part = ("studio.html#studio-form", _form_context(fresh, estimate=form.estimate(), oob_form=True))
    if len(new) > 1:
        return group_answer(request, new, form_part)
    return card_answer(request, new[0], form_part)


def _form_with_errors(request: AuthenticatedHtmxRequest, form: RenderForm) -> HttpResponse:
    """The form again with its errors: in place for htmx, as the whole page (400) otherwise."""
    if not request.htmx:
        return render(request, "studio.html", _studio_context(request, form), status=400)
    response = render(request, "studio.html#studio-form", _form_context(form))
    return reswap(retarget(response, "#studio-form"), "outerHTML")


@login_required
@require_safe
def poll(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """One poller per page: the cards new to it and changed on it, the review badge and the notices, out of band.

    It never stops: every second while a render is in flight, every 5 s otherwise, so a render started elsewhere
    (the command line, another tab) appears; the page holds it back while hidden (static/studio/app.js)."""
    cursor = Cursor.from_query(request.GET)
    if cursor is None:
        return HttpResponseBadRequest("since must be an ISO-8601 timestamp with a time zone")
    now = timezone.now()  # before the queries: a change made meanwhile is polled again, never lost
    mine = Render.objects.mine(request.user)
    new, changed, later = catch_up(cursor, mine, now, PAGE_SIZE)
    in_flight = mine.in_flight().exists()
    return render_partials(
        request,
        ("studio.html#poll", {"polling": in_flight, "cursor": later}),
        ("studio.html#new-renders", {"items": group_variants(new)}),
        *[("studio.html#render", {"render": item, "oob_card": "true"}) for item in changed],
        *live_parts(request, cursor.since),
    )


@login_required
@require_safe
def older(request: AuthenticatedHtmxRequest) -> HttpResponse:
    """The next page of "My renders", older than the card `before`/`id`, for the end of the list; the page's cursor
    (sent along) learns that they are on the page, so their changes arrive too."""
    cursor = Cursor.from_query(request.GET) or Cursor.fresh(timezone.now())
    mine = Render.objects.mine(request.user).order_by("-created_at", "-pk")
    if "before" in request.GET:
        before = parse_time(request.GET["before"])
        try:
            last_id = uuid.UUID(request.GET.get("id", ""))
        except ValueError:
            last_id = None
        if before is None or last_id is None:
            return HttpResponseBadRequest(
                "before must be an ISO-8601 timestamp with a time zone, id a render id"
            )
        mine = mine.filter(Q(created_at__lt=before) | Q(created_at=before, pk__lt=last_id))
    fetched = list(mine[: PAGE_SIZE + 1])
    renders, more = fetched[:PAGE_SIZE], len(fetched) > PAGE_SIZE
    for item in renders:
        cursor = cursor.adding(item)
    cursor = replace(cursor, oldest=renders[-1].created_at if more else None)
    return render_partials(
        request,
        ("studio.html#older", {"older_query": _older_query(renders[-1]) if more else ""}),
        ("studio.html#older-renders", {"items": group_variants(renders)}),
        ("studio.html#poll", {"polling": True, "cursor": cursor, "oob_poll": True}),
    )


@login_required
@require_POST
def cancel(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """Cancel a render the user owns; the card says what it cost."""
    outcome = do_cancel_render(access.get_render_for_user(request.user, render_id, access.Need.OWN))
    messages.info(request, outcome.message)
    return render_partials(
        request,
        ("studio.html#render", {"render": outcome.render}),
        ("studio.html#poll", {"polling": True, "cursor": request_cursor(request), "oob_poll": True}),
    )


@login_required
@require_safe
def card(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse:
    """One render's card."""
    item = access.get_render_for_user(request.user, render_id)
    return render(request, "studio.html#render", {"render": item})


@login_required
@require_safe
def video(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse | StreamingHttpResponse:
    """The finished clip, with Range support so the player can seek (streamed, or a pre-signed link to the store)."""
    return serve_clip(request, access.get_render_for_user(request.user, render_id))


@login_required
@require_safe
def poster(request: AuthenticatedHtmxRequest, render_id: uuid.UUID) -> HttpResponse | StreamingHttpResponse:
    """The clip's poster frame."""
    item = access.get_render_for_user(request.user, render_id)
    if not item.poster:
        return HttpResponse("This render has no poster yet.", status=404, content_type="text/plain")
    return stored_file_response(request, item.poster.name, "image/jpeg")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A rejected form (stale page or missing CSRF token) explains itself instead of a bare 403."""
    text = "This form was stale or its security token was missing. Reload the page and try again."
    if getattr(request, "htmx", False) or request.headers.get("HX-Request"):
        return HttpResponse(text, status=403, content_type="text/plain")
    return render(request, "403_csrf.html", {"text": text}, status=403)
