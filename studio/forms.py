"""The render form: one form for both models, validated against the catalog for the chosen model; and the money
pages' forms (budgets, the rate card)."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal
from pathlib import PurePosixPath

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.files.uploadedfile import SimpleUploadedFile

from studio import access, pricing
from studio.actions.renders import RenderOrder
from studio.catalog import (
    MAX_PROMPT_CHARS,
    MAX_VARIANTS,
    MODEL_CHOICES,
    MODELS,
    SEED_MAX,
    SORA2,
    SORA2_PRO,
    ModelSpec,
    get_model,
)
from studio.media import MediaError, sniff_image
from studio.models import Budget, Invitation, Membership, Render, ReviewState, Role, Team
from studio.money import ledger
from studio.text import FORMAT, control_characters

ALL_SIZES = sorted({s for spec in MODELS.values() for s in spec.sizes})
ALL_RESOLUTIONS = sorted({r for spec in MODELS.values() for r in spec.resolutions})
ALL_ASPECTS = sorted({a for spec in MODELS.values() for a in spec.aspect_ratios})
ALL_STYLES = [s for spec in MODELS.values() for s in spec.style_presets]


def _choices(values) -> list[tuple[str, str]]:
    return [(v, v.replace("x", "×") if "x" in v else v) for v in values]


class PromptField(forms.CharField):
    """A prompt, with browser line breaks (CRLF) counted as one character, as the textarea's maxlength does."""

    def to_python(self, value):
        value = super().to_python(value)
        return value.replace("\r\n", "\n") if isinstance(value, str) else value


class RenderForm(forms.Form):
    """Prompt and parameters of a render. Bound the same way by the page, the estimate and the CLI."""

    model = forms.ChoiceField(choices=MODEL_CHOICES, initial=SORA2)
    prompt = PromptField(
        max_length=MAX_PROMPT_CHARS,
        widget=forms.Textarea(
            attrs={"rows": 5, "placeholder": "A red apple rolls slowly across a wooden table…"}
        ),
    )
    duration_seconds = forms.IntegerField(label="Duration (seconds)", required=False)
    size = forms.ChoiceField(choices=_choices(ALL_SIZES), required=False)
    resolution = forms.ChoiceField(choices=_choices(ALL_RESOLUTIONS), required=False)
    aspect_ratio = forms.ChoiceField(label="Aspect ratio", choices=_choices(ALL_ASPECTS), required=False)
    seed = forms.IntegerField(required=False, min_value=0, max_value=SEED_MAX)
    style_preset = forms.ChoiceField(label="Style preset", choices=_choices(ALL_STYLES), required=False)
    init_image = forms.FileField(
        label="Init image", required=False, help_text="PNG, JPEG or WebP, up to 10 MB"
    )
    client_token = forms.UUIDField(required=False, widget=forms.HiddenInput)
    private = forms.BooleanField(required=False, label="Keep private (only you see it, even in your team)")
    # The Sora 2 draft this render promotes; checked against what the user may see (clean_parent).
    parent = forms.UUIDField(required=False, widget=forms.HiddenInput)
    # "Render ×N": how many takes of this prompt to render at once, as one group (blank: one).
    variants = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_VARIANTS,
        error_messages={
            "invalid": f"Render 1 to {MAX_VARIANTS} variants at once.",
            "min_value": f"Render 1 to {MAX_VARIANTS} variants at once.",
            "max_value": f"Render 1 to {MAX_VARIANTS} variants at once.",
        },
    )

    # Which fields belong to which model; the page shows and enables only the chosen model's fields.
    MODEL_FIELDS = {
        key: {
            "duration_seconds",
            "init_image",
            *(["size"] if spec.sizes else []),
            *(["resolution"] if spec.resolutions else []),
            *(["aspect_ratio"] if spec.aspect_ratios else []),
            *(["style_preset"] if spec.style_presets else []),
            *(["seed"] if spec.supports_seed else []),
        }
        for key, spec in MODELS.items()
    }

    def __init__(
        self, *args, check_image: bool = True, user=None, draft: Render | None = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.check_image = check_image
        self.user = user  # who submits: a `parent` is checked against what they may see
        self._draft = draft  # the draft this form promotes: pre-filled, or set by clean_parent

    @classmethod
    def promoting(cls, draft: Render) -> RenderForm:
        """The form pre-filled to re-render a finished Sora 2 draft on Sora 2 Pro (see `promotion_initial`)."""
        return cls(initial=promotion_initial(draft), draft=draft)

    @classmethod
    def remixing(cls, source: Render) -> RenderForm:
        """The form pre-filled with a render's model, parameters and prompt, to change and render anew."""
        initial = {**source.params, "model": source.model, "prompt": source.prompt, "private": source.private}
        return cls(initial={**initial, "client_token": uuid.uuid4()})

    @property
    def draft(self) -> Render | None:
        """The draft this form promotes: as pre-filled, or once bound, as validated (even if other fields fail)."""
        return self._draft

    @property
    def spec(self):
        key = self.data.get("model") if self.is_bound else self.initial.get("model")
        return get_model(key if key in MODELS else SORA2)

    def clean_prompt(self) -> str:
        prompt = self.cleaned_data["prompt"]
        bad = control_characters(prompt, allow="\n\t")
        if bad:
            raise forms.ValidationError(
                f"The prompt contains control characters (e.g. U+{ord(bad[0]):04X}); remove them."
            )
        if not prompt:
            raise forms.ValidationError("Write a prompt.")
        return prompt

    def clean_init_image(self):
        upload = self.cleaned_data.get("init_image")
        if not upload or not self.check_image:
            return upload
        try:
            info = sniff_image(
                upload, max_bytes=settings.STUDIO_MAX_IMAGE_BYTES, max_pixels=settings.STUDIO_MAX_IMAGE_PIXELS
            )
        except MediaError as error:
            raise forms.ValidationError(str(error)) from error
        upload.studio_format = info.format.lower()
        return upload

    def clean_parent(self) -> Render | None:
        parent_id = self.cleaned_data.get("parent")
        if parent_id is None:
            return None
        draft = None
        if self.user is not None:
            draft = Render.objects.for_user(self.user).filter(pk=parent_id).first()
        if draft is None:
            raise forms.ValidationError("The draft to promote does not exist or is not shared with you.")
        refusal = draft.promotion_refusal()
        if refusal:
            raise forms.ValidationError(refusal)
        self._draft = draft
        return draft

    def clean(self):
        data = super().clean()
        draft = data.get("parent")
        if draft is not None and data.get("model") != PROMOTE_TO:
            self.add_error(
                "parent",
                "A promotion renders on Sora 2 Pro: choose it again, or start over without promoting.",
            )
        elif draft is not None and draft.init_image and not data.get("init_image"):
            if not draft.init_image.storage.exists(draft.init_image.name):
                self.add_error("init_image", "The draft's init image is no longer stored: upload it again.")
        spec = get_model(data.get("model") or SORA2) if data.get("model") in MODELS else None
        if spec is None:
            return data
        duration = data.get("duration_seconds")
        if duration is None:
            if "duration_seconds" not in self.errors:
                self.add_error("duration_seconds", "Choose a duration.")
        elif duration not in spec.durations:
            allowed = (
                f"{spec.min_duration} to {spec.max_duration} seconds"
                if spec.duration_is_range
                else ", ".join(map(str, spec.durations[:-1])) + f" or {spec.durations[-1]} seconds"
            )
            self.add_error("duration_seconds", f"{spec.label} renders {allowed}.")
        self._check_choice(data, "size", spec.sizes, spec.default_size, spec.label)
        self._check_choice(data, "resolution", spec.resolutions, spec.default_resolution, spec.label)
        self._check_choice(data, "aspect_ratio", spec.aspect_ratios, spec.default_aspect_ratio, spec.label)
        self._check_choice(data, "style_preset", spec.style_presets, None, spec.label)
        if not spec.supports_seed:
            data["seed"] = None
        count, seed = data.get("variants") or 1, data.get("seed")
        if seed is not None and seed + count - 1 > SEED_MAX:
            # Variants count their seeds up from this one: the last must still be a seed.
            self.add_error(
                "seed",
                f"With ×{count} the seeds run up from this one: choose at most {SEED_MAX - count + 1}.",
            )
        return data

    def _check_choice(self, data: dict, name: str, allowed, default, label: str) -> None:
        value = data.get(name) or None
        if not allowed:
            data[name] = None
        elif value is None:
            data[name] = default
        elif value not in allowed:
            self.add_error(name, f"{label} supports {', '.join(allowed)}.")

    @property
    def params(self) -> dict:
        """The validated parameters of the chosen model, as stored on the render and sent to the gateway."""
        data = self.cleaned_data
        wanted = self.MODEL_FIELDS[data["model"]] - {"init_image"}
        return {name: data[name] for name in sorted(wanted) if data.get(name) not in (None, "")}

    def order(self) -> RenderOrder:
        """What a valid form asks for, as the action that records it takes it."""
        data = self.cleaned_data
        return RenderOrder(
            model=data["model"],
            prompt=data["prompt"],
            params=self.params,
            init_image=data.get("init_image"),
            private=bool(data.get("private")),
            parent=data.get("parent"),
            client_token=data.get("client_token"),
            variants=data.get("variants") or 1,
        )

    def estimate(self) -> pricing.Estimate | None:
        """The cost of what the form holds, when it is valid enough to price."""
        if not hasattr(self, "cleaned_data") or self.errors.keys() & {
            "model",
            "duration_seconds",
            "resolution",
        }:
            return None
        if "model" not in self.cleaned_data or self.cleaned_data.get("duration_seconds") is None:
            return None
        return ledger.quote(self.cleaned_data["model"], self.params)
        return ledger.quote(self.cleaned_data["model"], self.params)  # the live rate card, from the database


# --- promotion: a finished Sora 2 draft re-rendered on Sora 2 Pro ------------------------------------------------

PROMOTE_TO = SORA2_PRO
PROMOTE_RESOLUTION = "1080p"


def nearest_aspect_ratio(width: int, height: int, choices) -> str:
    """The aspect ratio among `choices` ("16:9", ...) closest to width:height (compared as log ratios)."""

    def distance(choice: str) -> float:
        w, h = (int(part) for part in choice.split(":"))
        return abs(math.log(width / height) - math.log(w / h))

    return min(choices, key=distance)


def nearest_duration(seconds: int, spec: ModelSpec) -> int:
    """The allowed duration of `spec` closest to `seconds` (the longer one on a tie)."""
    return min(spec.durations, key=lambda allowed: (abs(allowed - seconds), -allowed))


def promotion_initial(draft: Render) -> dict:
    """What the Pro form starts from: the draft's prompt, seed (if any), shape, duration and privacy, at 1080p."""
    pro = get_model(PROMOTE_TO)
    width, height = draft.frame_size
    initial = {
        "model": PROMOTE_TO,
        "prompt": draft.prompt,
        "duration_seconds": nearest_duration(draft.duration_seconds, pro),
        "resolution": PROMOTE_RESOLUTION if PROMOTE_RESOLUTION in pro.resolutions else pro.default_resolution,
        "aspect_ratio": nearest_aspect_ratio(width, height, pro.aspect_ratios),
        "private": draft.private,
        "parent": draft.pk,
        "client_token": uuid.uuid4(),
    }
    if pro.supports_seed and draft.params.get("seed") is not None:
        initial["seed"] = draft.params["seed"]
    return initial


# --- re-run exactly: a render's own settings, validated again as if the user had typed them in -------------------


class RerunRefused(Exception):
    """The render cannot be rendered again as it was; the message says why."""


def rerun_form(user, original: Render, client_token: str = "") -> RenderForm:
    """The render form bound from a render's own model, parameters, prompt and init image, checked as `user`.

    A Pro render keeps its draft as parent when the user may still see and promote it: another take of the same
    promotion belongs in the same lineage.
    """
    data = {"model": original.model, "prompt": original.prompt, "client_token": client_token}
    data.update({name: str(value) for name, value in original.params.items()})
    if original.private:
        data["private"] = "on"
    if original.parent_id:
        draft = Render.objects.for_user(user).filter(pk=original.parent_id).first()
        if draft is not None and draft.promotion_refusal() is None:
            data["parent"] = str(draft.pk)
    files = {}
    image_name = original.init_image.name
    if image_name:  # a FieldFile is false exactly when its name is empty: no image
        try:
            with original.init_image.open("rb") as handle:
                name = PurePosixPath(image_name).name
                files["init_image"] = SimpleUploadedFile(name, handle.read())
        except OSError:
            pass  # the form says the image is missing (see rerun_order)
    return RenderForm(data, files, user=user)


def rerun_order(user, original: Render, client_token: str = "") -> RenderOrder:
    """What re-running `original` exactly asks for, validated as `user`'s own submit; RerunRefused otherwise."""
    form = rerun_form(user, original, client_token)
    if original.init_image and "init_image" not in form.files:
        raise RerunRefused("The original's init image is no longer stored: remix it and upload it again.")
    if not form.is_valid():
        problems = " ".join(str(error) for errors in form.errors.values() for error in errors)
        raise RerunRefused(f"This render cannot be re-run as it was: {problems}")
    return form.order()


# --- review and comments ------------------------------------------------------------------------------------------

MAX_TEXT = 2000


def _clean_text(value: str, label: str) -> str:
    """Text as stored: newlines normalised to \\n, no other control characters, at most MAX_TEXT characters."""
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if control_characters(value, allow="\n"):
        raise forms.ValidationError(f"{label} may not contain control characters.")
    if len(value) > MAX_TEXT:
        raise forms.ValidationError(f"{label} is {len(value)} characters long; the most is {MAX_TEXT}.")
    return value


class ReviewForm(forms.Form):
    state = forms.ChoiceField(
        choices=ReviewState.choices,
        error_messages={
            "required": "Choose a review state.",
            "invalid_choice": "“%(value)s” is not a review state.",
        },
    )
    note = forms.CharField(required=False, strip=False)

    def clean_note(self) -> str:
        return _clean_text(self.cleaned_data["note"], "The note")


class CommentForm(forms.Form):
    text = forms.CharField(strip=False, error_messages={"required": "Write a comment first."})
    at = forms.FloatField(
        required=False,
        min_value=0,
        error_messages={
            "invalid": "The time must be a number.",
            "min_value": "The time cannot be before the start.",
        },
    )

    def __init__(self, *args, clip_seconds: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clip_seconds = clip_seconds

    def clean_text(self) -> str:
        text = _clean_text(self.cleaned_data["text"], "A comment")
        if not text:
            raise forms.ValidationError("Write a comment first.")
        return text

    def clean_at(self) -> float | None:
        at = self.cleaned_data["at"]
        if at is not None and at > self.clip_seconds:
            raise forms.ValidationError(f"The time is past the end of the clip ({self.clip_seconds:g} s).")
        return at


class FrameForm(forms.Form):
    """The moment of a clip whose frame "Save this frame" asks for: within the clip, in seconds."""

    t = forms.FloatField(
        min_value=0,
        error_messages={
            "required": "Say which moment: t, in seconds from the start.",
            "invalid": "t must be a number of seconds.",
            "min_value": "t cannot be before the start of the clip.",
        },
    )

    def __init__(self, *args, clip_seconds: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clip_seconds = clip_seconds

    def clean_t(self) -> float:
        t = self.cleaned_data["t"]
        if t >= self.clip_seconds:
            raise forms.ValidationError(f"t is past the end of the clip ({self.clip_seconds:g} s).")
        return t


# --- teams --------------------------------------------------------------------------------------------------------


class TeamForm(forms.Form):
    name = forms.CharField(max_length=80, strip=True)

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if control_characters(name, also=FORMAT):
            raise forms.ValidationError("Use letters, digits, spaces and punctuation only.")
        return name


class MemberForm(forms.Form):
    """Who to add (a username, as people know each other) and with which role."""

    username = forms.CharField(max_length=150, strip=True)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args, team: Team, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.team = team

    def clean_username(self):
        name = self.cleaned_data["username"]
        users = get_user_model().objects.filter(is_active=True)
        user = users.filter(username=name).first()
        if user is None:  # "Bob" finds bob, unless bob and Bob both exist
            alike = list(users.filter(username__iexact=name)[:2])
            user = alike[0] if len(alike) == 1 else None
        if user is None:
            raise forms.ValidationError(f"There is no user called “{name}”.")
        if Membership.objects.filter(team=self.team, user=user).exists():
            raise forms.ValidationError(f"{user.get_username()} is already in this team.")
        return user


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class InvitationForm(forms.Form):
    """An invitation: the role it gives, and optionally who it is for (then only they can use the link)."""

    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)
    username = forms.CharField(
        max_length=150, required=False, strip=True, validators=[UnicodeUsernameValidator()]
    )
    email = forms.EmailField(required=False)

    def __init__(self, *args, team: Team, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.team = team

    def clean_username(self) -> str:
        name = self.cleaned_data["username"]
        if name and Membership.objects.filter(team=self.team, user__username__iexact=name).exists():
            raise forms.ValidationError(f"{name} is already in this team.")
        return name


class JoinForm(UserCreationForm):
    """A new account from an invitation: a username (the invitation's, if it names one), an e-mail address for
    password resets (the invitation's, if it names one), and a password Django's validators accept."""

    email = forms.EmailField(required=False, help_text="Optional: lets you reset a forgotten password.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")

    def __init__(self, *args, invitation: Invitation, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.invitation = invitation
        if invitation.username:  # shown, not editable: the invitation is for this name
            self.fields["username"].initial = invitation.username
            self.fields["username"].disabled = True
        if invitation.email:
            self.fields["email"].initial = invitation.email
            self.fields["email"].disabled = True


# --- money: budgets and the rate card -------------------------------------------------------------------------


class MoneyField(forms.DecimalField):
    """Dollars, 0 or more, cents at most; "$1,250.50" is fine; blank means no budget."""

    widget = forms.TextInput

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, min_value=Decimal(0), max_digits=12, decimal_places=2, **kwargs)
        self.widget.attrs.update({"inputmode": "decimal", "autocomplete": "off", "placeholder": "No budget"})

    def to_python(self, value):
        if isinstance(value, str):
            value = value.strip().removeprefix("$").strip().replace(",", "")
        return super().to_python(value)


class BudgetsForm(forms.Form):
    """The team's monthly budget and one per member, on one form; only changed fields are saved."""

    def __init__(self, *args, team, members: list, budgets: list[Budget], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current = {budget.user_id: budget for budget in budgets}
        self.people = {None: None, **{user.pk: user for user in members}}
        for user_id, user in self.people.items():
            budget = self.current.get(user_id)
            label = f"Team {team.name}" if user is None else user.get_username()
            self.fields[self.field_name(user_id)] = MoneyField(
                label=label, initial=budget.monthly_usd if budget else None
            )

    @staticmethod
    def field_name(user_id) -> str:
        return "team_budget" if user_id is None else f"member_{user_id}"

    def changes(self) -> list[tuple[object, Decimal | None]]:
        """(user or None for the team, new amount or None to remove) for every field that changed."""
        changed = []
        for user_id, user in self.people.items():
            amount = self.cleaned_data[self.field_name(user_id)]
            budget = self.current.get(user_id)
            if (budget.monthly_usd if budget else None) != amount:
                changed.append((user, amount))
        return changed


class RateForm(forms.Form):
    """One line of the rate card, set by staff: dollars per second of footage, above $0."""

    usd_per_second = forms.DecimalField(
        min_value=Decimal("0.000001"),
        max_digits=12,
        decimal_places=6,
        error_messages={"min_value": "A rate must be more than $0 per second."},
    )


# --- prompt memory --------------------------------------------------------------------------------------------


class SavePromptForm(forms.Form):
    """The name and the sharing of a saved prompt; its prompt, model and parameters come from the render form."""

    name = forms.CharField(
        max_length=80, strip=True, error_messages={"required": "Name the prompt to save it."}
    )
    share = forms.UUIDField(required=False)

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if control_characters(name, also=FORMAT):
            raise forms.ValidationError("A name uses letters, digits, spaces and punctuation only.")
        return name

    def clean_share(self) -> Team | None:
        team_id = self.cleaned_data.get("share")
        if team_id is None:
            return None
        team = access.team_to_share_with(self.user, team_id)
        if team is None:
            raise forms.ValidationError("You can share a prompt only with a team you are in.")
        return team
