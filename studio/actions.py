"""Writes with side effects: every one goes through a `do_*` function that owns its transaction and queueing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from studio import access, pricing
from studio.forms import RenderForm
from studio.models import AT_GATEWAY, Render, State, advance
from studio.money import ledger
from studio.tasks import enqueue, ensure_poller

ACTIVE_TEAM = object()  # do_submit_render's default: the author's active team


def do_submit_render(user, form: RenderForm, team=ACTIVE_TEAM) -> Render:
    """Record a validated render, hold its estimate against the budgets, and queue its submission on commit.

    Raises ledger.BudgetExceeded when a budget cannot cover the estimate: nothing is recorded or sent.
    A repeated `client_token` (a double-clicked submit) returns the render the first click made.
    """
    data = form.cleaned_data
    token = data.get("client_token")
    if token:
        existing = Render.objects.filter(user=user, client_token=token).first()
        if existing:
            return existing
    params = form.params
    quote = ledger.quote(data["model"], params)
    try:
        with transaction.atomic():
            render = Render.objects.create(
                user=user,
                team=access.active_team(user) if team is ACTIVE_TEAM else team,
                private=bool(data.get("private")),
                seconds=quote.seconds,
                model=data["model"],
                prompt=data["prompt"],
                params=params,
                client_token=token,
                estimated_cost=quote.total,
                rate_per_second=quote.rate_per_second,
                parent=data.get("parent"),  # the draft a promotion re-renders, validated by the form
            )
            ledger.hold(render)  # raises BudgetExceeded (rolling all of this back) before anything is sent
            image = data.get("init_image")
            draft = data.get("parent")
            if image:
                extension = {"jpeg": "jpg"}.get(image.studio_format, image.studio_format)
                render.init_image.save(f"init.{extension}", image, save=True)
            elif draft is not None and draft.init_image:
                # A promotion without a new upload keeps the draft's image: copied, so each render owns its folder.
                with draft.init_image.open("rb") as source:
                    render.init_image.save(PurePosixPath(draft.init_image.name).name, File(source), save=True)
            enqueue("submit_render", render.pk)
    except IntegrityError:
        return Render.objects.get(user=user, client_token=token)
    return render


@dataclass(frozen=True)
class CancelOutcome:
    render: Render
    message: str


def do_cancel_render(render: Render) -> CancelOutcome:
    """Cancel a render: at once and free before submission, through the gateway once it has the task."""
    now = timezone.now()
    if advance(
        render.pk, State.PENDING, State.CANCELLED, cancel_requested_at=now, billed_cost=0, billed_credits=0
    ):
        message = "Cancelled before it reached the gateway: nothing was billed."
    elif advance(
        render.pk,
        [State.SUBMITTING, *AT_GATEWAY],
        where=Q(cancel_requested_at__isnull=True),
        cancel_requested_at=now,
        next_poll_at=now,
    ):
        cost = render.cancel_cost
        # The cancel reaches the gateway on the poller's next tick: promise nothing the gateway may not honour.
        message = (
            "Cancelling: free if the gateway has not started rendering it; once it has, the seconds rendered are "
            "billed."
            if render.state != State.RUNNING
            else f"Cancelling: the seconds rendered by then are billed (at least {pricing.dollars(cost)})."
        )
        ensure_poller()
    elif render.cancel_requested_at and not render.is_terminal:
        message = "Already cancelling."
    else:
        message = f"Too late to cancel: the render is {render.get_state_display().lower()}."
    render.refresh_from_db()
    return CancelOutcome(render, message)


# --- review and comments (issue 4) -------------------------------------------------------------------------


def do_review_render(render: Render, reviewer, state: str, note: str = ""):
    """Record a review decision: a row in the history, and the render's latest state, who and when, at once.

    The render keeps the newest decision even when two reviewers click at the same moment: an older decision
    committed late is kept in the history but does not overwrite a newer one.
    """
    now = timezone.now()
    with transaction.atomic():
        review = render.reviews.create(reviewer=reviewer, state=state, note=note, created_at=now)
        Render.objects.filter(Q(reviewed_at__isnull=True) | Q(reviewed_at__lte=now), pk=render.pk).update(
            review_state=state, reviewed_by=reviewer, reviewed_at=now, updated_at=now
        )
    render.refresh_from_db(fields=["review_state", "reviewed_by", "reviewed_at", "updated_at"])
    if render.reviewed_by_id == reviewer.pk:
        render.reviewed_by = reviewer  # spare the page a query for who it was
    return review


def do_add_comment(render: Render, author, text: str, at_seconds: float | None = None):
    """Add a comment to a clip, optionally pinned to a moment in it (validated by the caller's form)."""
    return render.comments.create(author=author, text=text, at_seconds=at_seconds)


def do_toggle_private(render: Render, private: bool) -> Render:
    """Make a render private (only its author sees it) or shared with its team.

    The form says which way, so a double click sets the same value twice instead of flipping it back.
    """
    now = timezone.now()
    Render.objects.filter(pk=render.pk).update(private=private, updated_at=now)
    render.private, render.updated_at = private, now
    return render


# --- Gallery: stars and tags (anyone who may view a render may star and tag it; the view checks that) --------


def do_toggle_star(user, render: Render) -> bool:
    """Star the render for this user, or unstar it if starred; returns whether it is starred now."""
    from studio.models import Star

    deleted, _ = Star.objects.filter(user=user, render=render).delete()
    if deleted:
        return False
    Star.objects.get_or_create(user=user, render=render)  # a concurrent double click stars once
    return True


def do_add_tag(user, render: Render, name: str):
    """Tag the render (a name it already has is kept once); raises gallery.BadValue for a bad name or too many."""
    from studio.gallery import TAGS_PER_RENDER, clean_tag_name
    from studio.models import Tag
    from studio.params import BadValue

    name = clean_tag_name(name)
    existing = Tag.objects.filter(render=render, name__iexact=name).first()
    if existing:
        return existing
    # Tags are case-insensitive: a name the team already uses keeps its first spelling ("Spring Campaign").
    if render.team_id:
        name = (
            Tag.objects.filter(render__team=render.team_id, name__iexact=name)
            .values_list("name", flat=True)
            .first()
            or name
        )
    if Tag.objects.filter(render=render).count() >= TAGS_PER_RENDER:
        raise BadValue(f"A clip has at most {TAGS_PER_RENDER} tags.")
    tag, _ = Tag.objects.get_or_create(render=render, name=name, defaults={"created_by": user})
    return tag


def do_remove_tag(render: Render, name: str) -> None:
    """Remove a tag from the render; removing one it does not have changes nothing."""
    from studio.models import Tag

    Tag.objects.filter(render=render, name=name).delete()


# --- teams (issue 4) -------------------------------------------------------------------------------------------

# Appended in one edit while others append too; the lead may fold these into the imports at the top.
from django.utils.text import slugify  # noqa: E402

from studio.models import Membership, Profile, Role, Team  # noqa: E402


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


# --- re-run exactly (issue 4: promote, remix, re-run) ---------------------------------------------------------


@dataclass(frozen=True)
class RerunOutcome:
    render: Render | None  # the new render, or None when the original cannot be rendered again as it was
    message: str


def rerun_form(user, original: Render, client_token: str = "") -> RenderForm:
    """The render form bound from a render's own model, parameters, prompt and init image, checked as `user`.

    A Pro render keeps its draft as parent when the user may still see and promote it: another take of the same
    promotion belongs in the same lineage.
    """
    from django.core.files.uploadedfile import SimpleUploadedFile

    from studio.forms import promotion_refusal

    data = {"model": original.model, "prompt": original.prompt, "client_token": client_token}
    data.update({name: str(value) for name, value in original.params.items()})
    if original.private:
        data["private"] = "on"
    if original.parent_id:
        draft = Render.objects.for_user(user).filter(pk=original.parent_id).first()
        if draft is not None and promotion_refusal(draft) is None:
            data["parent"] = str(draft.pk)
    files = {}
    image_name = original.init_image.name
    if image_name:  # a FieldFile is false exactly when its name is empty: no image
        try:
            with original.init_image.open("rb") as handle:
                name = PurePosixPath(image_name).name
                files["init_image"] = SimpleUploadedFile(name, handle.read())
        except OSError:
            pass  # the form says the image is missing (see do_rerun_render)
    return RenderForm(data, files, user=user)


def do_rerun_render(user, original: Render, client_token: str = "") -> RerunOutcome:
    """Render a render again exactly (model, parameters, prompt, init image) as `user`'s own new render.

    It goes through the form's validation, as if the user had typed it in, and the budget check of any submit.
    """
    form = rerun_form(user, original, client_token)
    if original.init_image and "init_image" not in form.files:
        return RerunOutcome(
            None, "The original's init image is no longer stored: remix it and upload it again."
        )
    if not form.is_valid():
        problems = " ".join(str(error) for errors in form.errors.values() for error in errors)
        return RerunOutcome(None, f"This render cannot be re-run as it was: {problems}")
    try:
        render = do_submit_render(user, form)
    except ledger.BudgetExceeded as error:
        return RerunOutcome(None, error.message)
    return RerunOutcome(
        render,
        f"Re-running exactly: about {pricing.dollars(render.estimated_cost)}, billed when it finishes.",
    )


# --- money: budgets and the rate card (issue 5) ----------------------------------------------------------------


def do_set_budget(team, user, monthly_usd, *, by):
    """Set the monthly budget of a team (`user` None) or of one member in it; `monthly_usd` None removes it.

    The budget row is updated in place (a hold in progress holds its lock, so this waits for it); two admins
    creating the same budget at once end with one row and the later amount.
    """
    from studio.models import Budget

    rows = Budget.objects.filter(team=team, user=user)
    if monthly_usd is None:
        rows.delete()
        return None
    now = timezone.now()
    for _attempt in range(2):
        try:
            with transaction.atomic():
                if rows.update(monthly_usd=monthly_usd, updated_at=now, updated_by=by):
                    return rows.get()
                return Budget.objects.create(
                    team=team, user=user, monthly_usd=monthly_usd, updated_at=now, updated_by=by
                )
        except IntegrityError:  # another admin created it in the meantime: update theirs
            continue
    raise RuntimeError("The budget kept changing while it was being set.")  # pragma: no cover


def do_set_rate(rate, usd_per_second, *, by):
    """Set a line of the rate card; an admin's figure is kept when the gateway shows another one."""
    from studio.models import Rate, RateSource

    Rate.objects.filter(pk=rate.pk).update(
        usd_per_second=usd_per_second, source=RateSource.ADMIN, updated_by=by, updated_at=timezone.now()
    )
    rate.refresh_from_db()
    return rate
