"""The records. A render row is the truth about a render; queue messages are only hints."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone

from studio import pricing
from studio.catalog import MODEL_CHOICES, get_model
from studio.formatting import duration_in_words, without_exception_names


class State(models.TextChoices):
    PENDING = "pending", "Pending"
    SUBMITTING = "submitting", "Submitting"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DOWNLOADING = "downloading", "Downloading"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    BLOCKED = "blocked", "Blocked"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"
    SUBMIT_UNKNOWN = "submit_unknown", "Submit unknown"
    STALLED = "stalled", "Stalled"


TERMINAL = frozenset(
    {
        State.COMPLETED,
        State.FAILED,
        State.BLOCKED,
        State.CANCELLED,
        State.EXPIRED,
        State.SUBMIT_UNKNOWN,
        State.STALLED,
    }
)
IN_FLIGHT = frozenset(set(State) - TERMINAL)
AT_GATEWAY = frozenset({State.QUEUED, State.RUNNING})  # the gateway has the task: poll it
# Terminal states in which the gateway billed nothing, as far as the studio can know.
NOT_BILLED = frozenset({State.FAILED, State.BLOCKED})


def render_upload_path(render: Render, filename: str) -> str:
    """Media path of a render's files: one folder per render, named by its UUID, never by user input."""
    return f"renders/{render.pk}/{filename}"


class ReviewState(models.TextChoices):
    NEEDS_REVIEW = "needs_review", "Needs review"
    APPROVED = "approved", "Approved"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    REJECTED = "rejected", "Rejected"


class Role(models.TextChoices):
    """What a team member may do; each role includes the ones before it."""

    MEMBER = "member", "Member"  # renders, sees the team gallery, comments
    REVIEWER = "reviewer", "Reviewer"  # also reviews
    ADMIN = "admin", "Admin"  # also manages members (and budgets)


# Keyed by str: a Role is a str, and stored roles (Membership.role) come back from the database as plain str.
ROLE_RANK: dict[str, int] = {Role.MEMBER: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


class RenderQuerySet(models.QuerySet["Render"]):
    def for_user(self, user) -> RenderQuerySet:
        """Renders this user may see: their own, and their teams' renders that are not private."""
        if not user.is_authenticated:
            return self.none()
        teams = Membership.objects.filter(user=user).values("team_id")
        return self.filter(Q(user=user) | Q(team_id__in=teams, private=False))

    def mine(self, user) -> RenderQuerySet:
        return self.filter(user=user)

    def in_flight(self) -> RenderQuerySet:
        return self.filter(state__in=IN_FLIGHT)


class ShownCostKey(models.Func):
    """COALESCE(billed_cost, estimated_cost) spelled as the gallery's `gallery_cost` sort (a Coalesce) is in SQL,
    so the cost index matches it: SQLite casts a decimal Coalesce to NUMERIC, PostgreSQL does not. For indexes
    only: its float output field is what keeps Django from wrapping the index expression in a second CAST."""

    function = "COALESCE"
    output_field = models.FloatField()

    def as_sqlite(self, compiler, connection, **extra_context):
        template = "CAST(%(function)s(%(expressions)s) AS NUMERIC)"
        return self.as_sql(compiler, connection, template=template, **extra_context)


class Render(models.Model):
    """One render: its request, its progress at the gateway, its bill and its clip."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="renders")
    model = models.CharField(max_length=32, choices=MODEL_CHOICES)
    prompt = models.TextField()
    params = models.JSONField(default=dict)  # the model's own parameters, as validated by the form
    init_image = models.FileField(upload_to=render_upload_path, blank=True, max_length=255)
    client_token = models.UUIDField(null=True, blank=True)  # one per form load: a double submit is one render
    team = models.ForeignKey("Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="renders")
    private = models.BooleanField(default=False, help_text="Only its author sees it, even inside the team.")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="promotions"
    )  # the Sora 2 draft a Pro render was promoted from
    # Variants: "Render ×N" records N takes of one prompt as one group (the same id), numbered 1..N of N. A render
    # on its own has no group (index and count 0).
    variant_group = models.UUIDField(null=True, blank=True, db_index=True)
    variant_index = models.PositiveSmallIntegerField(default=0)
    variant_count = models.PositiveSmallIntegerField(default=0)
    seconds = models.PositiveSmallIntegerField(default=0, db_index=True)  # requested duration, for sorting
    review_state = models.CharField(
        max_length=20, choices=ReviewState.choices, default=ReviewState.NEEDS_REVIEW
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING, db_index=True)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    progress = models.PositiveSmallIntegerField(default=0)  # 0-100, as the gateway reports it

    gateway_task_id = models.CharField(max_length=128, blank=True, db_index=True)
    submit_attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)  # submit/download retry
    lease_until = models.DateTimeField(null=True, blank=True)  # who holds the download
    download_attempts = models.PositiveSmallIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    poll_count = models.PositiveIntegerField(default=0)
    poll_errors = models.PositiveIntegerField(default=0)  # consecutive failed polls
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_attempts = models.PositiveSmallIntegerField(
        default=0
    )  # cancel requests the gateway did not honour
    # What became of a cancel the gateway did not honour, in words for the card ("the gateway cannot cancel...").
    cancel_note = models.CharField(max_length=300, blank=True)
    damaged_downloads = models.PositiveSmallIntegerField(default=0)  # downloads that failed the full decode
    file_lost_at = models.DateTimeField(null=True, blank=True)  # the finished clip's file is gone for good

    estimated_cost = models.DecimalField(max_digits=12, decimal_places=4)
    rate_per_second = models.DecimalField(max_digits=12, decimal_places=6)
    gateway_estimated_credits = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    billed_credits = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    billed_cost = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)

    result_url = models.TextField(blank=True)  # pre-signed; never shown on a page
    result_expires_at = models.DateTimeField(null=True, blank=True)
    video = models.FileField(upload_to=render_upload_path, blank=True, max_length=255)
    poster = models.FileField(upload_to=render_upload_path, blank=True, max_length=255)
    video_bytes = models.BigIntegerField(null=True, blank=True)
    video_duration = models.FloatField(null=True, blank=True)
    video_width = models.PositiveIntegerField(null=True, blank=True)
    video_height = models.PositiveIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    submitted_at = models.DateTimeField(null=True, blank=True)  # the gateway accepted it
    started_at = models.DateTimeField(null=True, blank=True)  # the gateway started rendering
    gateway_completed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)  # reached a terminal state

    objects = RenderQuerySet.as_manager()

    # Not columns: what some pages set on the instances they show (declared here for the type checker only).
    reviewable: bool  # whether the viewer may review it: gallery.mark_reviewable
    rerun_cost: Decimal  # the lineage page's re-run price at today's rates (views.lineage)
    rerun_token: uuid.UUID  # the lineage page's re-run client token (views.lineage)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="render_user_recent"),
            # The gallery (gallery.gallery_renders): a scope (team or author), a state, then each sort's key and id,
            # largest first, so a page (first or after a cursor) is a short range scan, not a sort of the scope.
            *(
                models.Index(F(scope), F("state"), key, F("id").desc(), name=f"render_{scope}_{name}")
                for scope in ("team", "user")
                for name, key in (
                    ("newest", F("created_at").desc()),
                    ("cost", ShownCostKey("billed_cost", "estimated_cost").desc()),
                    ("duration", F("seconds").desc()),
                )
            ),
            # The "To review" count on every page (access.to_review): read from the index alone.
            models.Index(
                fields=["state", "review_state", "team", "private", "user"], name="render_review_queue"
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["user", "client_token"], name="render_client_token_once"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="render_progress_0_100"),
            models.CheckConstraint(condition=Q(estimated_cost__gte=0), name="render_estimate_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.model} render {self.pk} ({self.state})"

    def save(self, *args, **kwargs) -> None:
        if not self.seconds:
            self.seconds = int(self.params.get("duration_seconds") or self.spec.default_duration)
        super().save(*args, **kwargs)

    @property
    def spec(self):
        return get_model(self.model)

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def is_variant(self) -> bool:
        """Whether this render is one take of a "Render ×N" group (see `variant_group`)."""
        return self.variant_group is not None and self.variant_count > 1

    @property
    def is_cancellable(self) -> bool:
        return self.state in {State.PENDING, State.QUEUED, State.RUNNING} and not self.cancel_requested_at

    @property
    def quote(self) -> pricing.Estimate:
        """The estimate this render was submitted at (the rate card may have moved since)."""
        spec = self.spec
        return pricing.Estimate(
            self.model,
            self.duration_seconds,
            spec.rate_key(self.params),
            self.rate_per_second,
            self.estimated_cost,
        )

    @property
    def cancel_cost(self) -> Decimal:
        """What cancelling would cost at this moment."""
        return pricing.cancel_cost(self.quote, self.progress / 100, started=self.state == State.RUNNING)

    @property
    def clip_seconds(self) -> float:
        """How long the clip is: its measured duration once downloaded, else the duration asked for."""
        return self.video_duration or float(self.duration_seconds)

    @property
    def duration_seconds(self) -> int:
        return self.seconds or int(self.params.get("duration_seconds") or self.spec.default_duration)

    @property
    def shown_cost(self) -> Decimal:
        """What the render costs as far as we know: the bill once there is one, else the estimate."""
        return self.billed_cost if self.billed_cost is not None else self.estimated_cost

    @property
    def is_draft(self) -> bool:
        return self.spec.tier == "draft"

    def promotion_refusal(self) -> str | None:
        """Why this render cannot be promoted to Pro, or None when it can."""
        if not self.is_draft:
            return "Only Sora 2 drafts are promoted: this is already a Sora 2 Pro render. Remix it to render it again."
        if self.state != State.COMPLETED:
            return (
                f"This draft is {self.get_state_display().lower()}: "
                "promote a draft once it has finished and you have seen it."
            )
        return None

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.spec.frame_size(self.params)

    @property
    def nothing_billed(self) -> bool:
        # A clip the gateway completed was billed, even when it reported no bill and the download failed after.
        return (
            self.state in (NOT_BILLED | {State.CANCELLED})
            and not self.billed_cost
            and self.gateway_completed_at is None
        )

    @property
    def playable(self) -> bool:
        """Whether the page may offer the clip: finished, stored, and not known to be lost."""
        return self.state == State.COMPLETED and bool(self.video) and self.file_lost_at is None

    @property
    def file_note(self) -> str:
        """What the card says when a finished clip's file is not there to play ("" when it is, or never was)."""
        if self.file_lost_at:
            return (
                "The clip's file is gone, and the gateway's copy could not be downloaded again. "
                "It was billed; an operator has been told."
            )
        if self.state == State.DOWNLOADING and self.video:
            return "The clip's file went missing; it is being downloaded again from the gateway."
        return ""

    @property
    def waiting_note(self) -> str:
        """What the owner reads about a render that waits on an operator (submit unknown, stalled), in plain
        words; empty for every other render. Never the stored error, which may name internals."""
        held = (
            "Its estimate stays held, as the gateway may still bill it. An operator has been told and will check "
            "with the gateway."
        )
        if self.state == State.SUBMIT_UNKNOWN:
            return (
                "Sending this render to the gateway was cut off, so the studio cannot tell whether the gateway "
                "received it. It was not sent again, so that it is never paid for twice. "
                "An operator has been told: they will check with the gateway and either resume it or release "
                "the money it holds."
            )
        if self.state == State.STALLED and self.error_code == "lost":
            return (
                f"The gateway stopped reporting on this render, so the studio stopped waiting for it. {held}"
            )
        if self.state == State.STALLED:
            after = duration_in_words(settings.STUDIO_STALL_AFTER_SECONDS)
            return (
                f"The gateway had not finished this render after {after}, so the studio stopped waiting for it. "
                f"{held}"
            )
        return ""

    @property
    def shown_error(self) -> str:
        """The stored error as the card and the detail page show it: in words, never an exception's class name
        (older rows stored one, e.g. "(RemoteProtocolError)")."""
        return without_exception_names(self.error)

    @property
    def elapsed(self) -> timedelta:
        end = self.finished_at or timezone.now()
        return end - self.created_at

    @property
    def eta_seconds(self) -> int | None:
        """Rough seconds left, from the progress the gateway reports and the time it has taken so far."""
        if self.state != State.RUNNING or not self.started_at or self.progress <= 0:
            return None
        spent = (timezone.now() - self.started_at).total_seconds()
        return max(0, round(spent * (100 - self.progress) / self.progress))


class GatewayAlert(models.Model):
    """A condition an operator must see, e.g. rejected credentials that pause submissions."""

    class Kind(models.TextChoices):
        CREDENTIALS = "credentials", "Credentials rejected"
        WALLET = "wallet", "Wallet empty"
        STALLED = "stalled", "Render stalled"
        SUBMIT_UNKNOWN = "submit_unknown", "Submission outcome unknown"
        DAMAGED = "damaged", "Damaged file delivered"
        FILE_LOST = "file_lost", "Clip file lost"
        CANCEL_REFUSED = "cancel_refused", "Cancel refused"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    message = models.TextField()
    render = models.ForeignKey(Render, null=True, blank=True, on_delete=models.CASCADE)
    pauses_submissions_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"

    @classmethod
    def raise_alert(cls, kind: str, message: str, *, render=None, pause_seconds: float = 0) -> GatewayAlert:
        """Record an alert (one open alert per kind and render); optionally pause submissions."""
        pause = timezone.now() + timedelta(seconds=pause_seconds) if pause_seconds else None
        alert, created = cls.objects.get_or_create(
            kind=kind, render=render, resolved_at__isnull=True, defaults={"message": message}
        )
        if not created or pause:
            cls.objects.filter(pk=alert.pk).update(message=message, pauses_submissions_until=pause)
        return alert

    @classmethod
    def resolve(cls, kind: str) -> None:
        """Close the open alerts of a kind (e.g. credentials work again)."""
        cls.objects.filter(kind=kind, resolved_at__isnull=True).update(resolved_at=timezone.now())

    @classmethod
    def submissions_paused_until(cls):
        """When submissions may resume, if an open credentials alert pauses them now."""
        alert = (
            cls.objects.filter(resolved_at__isnull=True, pauses_submissions_until__gt=timezone.now())
            .order_by("-pauses_submissions_until")
            .first()
        )
        return alert.pauses_submissions_until if alert else None


class GatewayCapability(models.Model):
    """What one gateway (base URL) was seen to support per protocol, where its pages are silent (e.g. cancel)."""

    base_url = models.CharField(max_length=255)
    protocol = models.CharField(max_length=32)
    can_cancel = models.BooleanField(
        null=True
    )  # None: not known yet; False: its cancel path answered 404/405
    note = models.CharField(max_length=300, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["base_url", "protocol"], name="one_capability_row")]

    def __str__(self) -> str:
        return f"{self.base_url} {self.protocol}: cancel {'unknown' if self.can_cancel is None else self.can_cancel}"


class Lease(models.Model):
    """A named lease held by one process at a time (the poller), taken by conditional update."""

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'} until {self.expires_at}"

    @classmethod
    def acquire(cls, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease; False while someone else holds it."""
        now = timezone.now()
        cls.objects.get_or_create(name=name, defaults={"expires_at": now - timedelta(seconds=1)})
        return (
            cls.objects.filter(Q(expires_at__lte=now) | Q(holder=holder), name=name).update(
                holder=holder, expires_at=now + timedelta(seconds=seconds)
            )
            == 1
        )

    @classmethod
    def release(cls, name: str, holder: str) -> None:
        cls.objects.filter(name=name, holder=holder).update(holder="", expires_at=timezone.now())

    @classmethod
    def is_held(cls, name: str) -> bool:
        return cls.objects.filter(name=name, expires_at__gt=timezone.now()).exclude(holder="").exists()


class Team(models.Model):
    """A group that shares renders and reviews them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=80, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's place in a team. Deleting the row removes access at once, video files included."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # No default ordering: it would join team and user into every access check. Lists order explicitly.
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="membership_once")]

    # Not a column: the team page marks the only admin, who cannot lose the role (views.teams), type checker only.
    last_admin: bool

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    def allows(self, role: str) -> bool:
        """Whether this membership's role includes `role`."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class Profile(models.Model):
    """Per-user studio preferences: the active team new renders go to."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studio_profile"
    )
    active_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)

    def __str__(self) -> str:
        return f"{self.user}: {self.active_team or 'no team'}"


class InvitationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Used"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


class InvitationQuerySet(models.QuerySet["Invitation"]):
    def open(self) -> InvitationQuerySet:
        """Invitations that can still be accepted: not used, not revoked, not expired."""
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())


class Invitation(models.Model):
    """A team admin's invitation to join a team with a role, opened through a signed link (access.py).

    Single use: accepting and revoking are conditional updates on `accepted_at`/`revoked_at` being empty, so two
    people opening the same link at once cannot both join. `username`/`email`, when set, say who it is for.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    username = models.CharField(max_length=150, blank=True)
    email = models.EmailField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )  # None: made on the command line
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["team", "-created_at"], name="invitation_team_recent")]

    # Not a column: the team page's copy of the whole link (views.teams), type checker only.
    link: str

    def __str__(self) -> str:
        return f"{self.team} as {self.role} ({self.status})"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return InvitationStatus.ACCEPTED
        if self.revoked_at:
            return InvitationStatus.REVOKED
        if self.expires_at <= timezone.now():
            return InvitationStatus.EXPIRED
        return InvitationStatus.PENDING

    @property
    def meant_for(self) -> str:
        """Who it names, in words ("" when anyone holding the link may use it)."""
        return " · ".join(part for part in (self.username, self.email) if part)


class Review(models.Model):
    """One review decision; the render keeps the latest, this keeps the history."""

    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=20, choices=ReviewState.choices)
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.reviewer} marked {self.render_id} {self.state}"


class Comment(models.Model):
    """A comment on a clip, optionally pinned to a moment in it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    text = models.TextField(max_length=2000)
    at_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(at_seconds__isnull=True) | Q(at_seconds__gte=0), name="comment_at_not_negative"
            )
        ]

    def __str__(self) -> str:
        return f"{self.author} on {self.render_id}"


class Star(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="stars")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "render"], name="star_once")]

    def __str__(self) -> str:
        return f"{self.user} starred {self.render_id}"


class Tag(models.Model):
    """A free-form label on a render (e.g. a campaign name), shared with everyone who sees the render."""

    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=40)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["render", "name"], name="tag_once")]
        indexes = [
            models.Index(fields=["name"], name="tag_name"),
            # The gallery's tag filter (name__iexact) on PostgreSQL: UPPER(name) = UPPER(...). SQLite says LIKE.
            models.Index(Upper("name"), name="tag_name_upper"),
        ]

    def __str__(self) -> str:
        return self.name


# --- share links (issue 12) -------------------------------------------------------------------------------------


SHARE_LIFETIMES = {1: "1 day", 7: "7 days", 30: "30 days"}  # days -> label; the form offers these
SHARE_DEFAULT_DAYS = 7


class ShareLink(models.Model):
    """A signed, expiring, revocable link that shows one finished clip and its prompt to anyone, without a login.

    The URL carries a signature of this row's id (access.share_token); the row says whether it still works.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="share_links")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    views = models.PositiveIntegerField(default=0)  # page views; the video's range requests are not counted

    url: str  # not a column: its public URL, which the detail page's share panel sets (views.shares)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["render", "-created_at"], name="share_render_recent")]

    def __str__(self) -> str:
        return f"share of {self.render_id} until {self.expires_at:%Y-%m-%d %H:%M}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_live(self) -> bool:
        """Whether the link still opens its clip: not revoked, not expired."""
        return self.revoked_at is None and not self.is_expired


# --- money (issue 5) -------------------------------------------------------------------------------------------


class RateSource(models.TextChoices):
    DEFAULT = "default", "Studio default"
    GATEWAY = "gateway", "Learned from the gateway"
    ADMIN = "admin", "Set by an admin"


class Rate(models.Model):
    """One line of the rate card: dollars per second of footage for a model at a resolution."""

    model = models.CharField(max_length=32, choices=MODEL_CHOICES)
    rate_key = models.CharField(max_length=16)  # "any" for sora2, the resolution for sora-2-pro
    usd_per_second = models.DecimalField(max_digits=12, decimal_places=6)
    source = models.CharField(max_length=16, choices=RateSource.choices, default=RateSource.DEFAULT)
    last_seen_at = models.DateTimeField(null=True, blank=True)  # when the gateway last showed this rate
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # Not columns: what the rate card page shows beside each line (views.money._rates_context), type checker only.
    label: str  # the model's name
    example_seconds: int  # an example render's length...
    example: Decimal  # ...and its cost at this rate
    error: str  # the failed edit's error on this line
    value: Decimal | str  # the input's value: the rate, or what the failed edit sent

    class Meta:
        ordering = ["model", "rate_key"]
        constraints = [models.UniqueConstraint(fields=["model", "rate_key"], name="rate_once")]

    def __str__(self) -> str:
        return f"{self.model} {self.rate_key}: ${self.usd_per_second}/s"


class Budget(models.Model):
    """A monthly spending limit in dollars: a team's (user empty) or one member's within a team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="budgets")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    monthly_usd = models.DecimalField(max_digits=12, decimal_places=2)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="budget_once_per_member"),
            models.UniqueConstraint(
                fields=["team"], condition=Q(user__isnull=True), name="budget_once_per_team"
            ),
            models.CheckConstraint(condition=Q(monthly_usd__gte=0), name="budget_not_negative"),
        ]

    def __str__(self) -> str:
        who = self.user or "the team"
        return f"{self.team}: {who} ${self.monthly_usd}/month"


class LedgerKind(models.TextChoices):
    HOLD = "hold", "Hold"  # the estimate, reserved at submit
    SETTLE = "settle", "Settle"  # what the gateway billed; ends the hold
    RELEASE = "release", "Release"  # nothing billed; ends the hold


class LedgerQuerySet(models.QuerySet):
    """Bulk writes would bypass the row-level guard: the ledger refuses them too."""

    def update(self, **kwargs):
        raise ValueError("Ledger entries are append-only: they are never edited.")

    def delete(self):
        raise ValueError("Ledger entries are append-only: they are never deleted.")


class LedgerEntry(models.Model):
    """Append-only money journal: one entry per render and kind, never edited or deleted."""

    render = models.ForeignKey(Render, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=8, choices=LedgerKind.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=4)  # dollars
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=32)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["render", "kind"], name="ledger_once_per_render_and_kind"),
            # A hold ends once: settled (billed) or released (nothing billed), never both.
            models.UniqueConstraint(
                fields=["render"], condition=Q(kind__in=["settle", "release"]), name="ledger_one_outcome"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="ledger_amount_not_negative"),
        ]
        indexes = [models.Index(fields=["team", "created_at"], name="ledger_team_time")]

    def __str__(self) -> str:
        return f"{self.kind} ${self.amount} for {self.render_id}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("Ledger entries are append-only: they are never edited.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Ledger entries are append-only: they are never deleted.")


# --- prompt memory (issue 12) ----------------------------------------------------------------------------------


class SavedPromptQuerySet(models.QuerySet["SavedPrompt"]):
    def for_user(self, user) -> SavedPromptQuerySet:
        """Saved prompts this user may start from: their own, and those shared with a team they belong to."""
        if not user.is_authenticated:
            return self.none()
        teams = Membership.objects.filter(user=user).values("team_id")
        return self.filter(Q(user=user) | Q(team_id__in=teams))


class SavedPrompt(models.Model):
    """A named prompt with its model and parameters, to start a render from: private, or shared with one team."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_prompts")
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="saved_prompts"
    )  # shared with this team's members; None: only its author sees it
    name = models.CharField(max_length=80)
    model = models.CharField(max_length=32, choices=MODEL_CHOICES)
    prompt = models.TextField()
    params = models.JSONField(default=dict)  # the model's own parameters, as the render form validated them
    created_at = models.DateTimeField(default=timezone.now)

    objects = SavedPromptQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="savedprompt_user_recent"),
            models.Index(fields=["team", "-created_at"], name="savedprompt_team_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.user}{f', {self.team}' if self.team_id else ''})"

    @property
    def fill(self) -> str:
        """What the studio form is filled with when this prompt is picked (JSON for the page's script)."""
        return json.dumps({"prompt": self.prompt, "model": self.model, "params": self.params})
