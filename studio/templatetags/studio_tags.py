"""Template helpers for the studio's pages."""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from studio import pricing

register = template.Library()


@register.simple_tag
def field_error(form, name: str, oob: bool = False) -> str:
    """The error slot under a field; `oob` makes it an out-of-band swap for the live estimate."""
    errors = " ".join(str(e) for e in form.errors.get(name, [])) if form is not None and form.is_bound else ""
    return format_html(
        '<div class="field-error" id="err-{}" role="alert"{}>{}</div>',
        name,
        mark_safe(' hx-swap-oob="true"') if oob else "",  # noqa: S308 - a constant
        errors,
    )


@register.filter
def per_second(rate) -> str:
    """A rate per second as people read it: "$0.10/s", "$0.23125/s"."""
    return pricing.per_second(rate)


@register.filter
def short_duration(value) -> str:
    """A timedelta as the cards' ticking clock shows it: "8 s", "2 min 05 s"."""
    seconds = max(0, round(value.total_seconds())) if value is not None else 0
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
