"""Template helpers for the studio's pages: the catalog's models, a form field's error slot, and money, durations and
moments in a clip as people read them (the formats themselves live in studio.formatting and studio.pricing)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from django import template
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from studio import catalog, formatting, pricing

register = template.Library()


_NO_RENDER = uuid.UUID(int=0)
_render_urls: dict[tuple, str] = {}


@register.simple_tag
def render_url(name: str, render_id: uuid.UUID) -> str:
    """`{% url name render.pk %}` for a route whose one argument is a render's id: the pattern is reversed once per
    process (and URL prefix) and the id put in. A page of cards reversed the same few routes hundreds of times,
    ~15 % of drawing it."""
    key = (name, get_script_prefix(), get_urlconf())
    pattern = _render_urls.get(key)
    if pattern is None:
        pattern = _render_urls[key] = reverse(name, args=[_NO_RENDER])
    return pattern.replace(str(_NO_RENDER), str(render_id))


@register.filter
def model_spec(key: str) -> catalog.ModelSpec:
    """The catalog's model of a key, for its labels and limits: `{{ estimate.model|model_spec }}`."""
    return catalog.get_model(key)


@register.simple_tag
def tier_model(tier: str) -> catalog.ModelSpec:
    """The catalog's model of a tier, where a page has no render to ask: `{% tier_model "draft" as draft %}`."""
    return catalog.for_tier(tier)


@register.filter
def default_rate(spec: catalog.ModelSpec) -> str:
    """The built-in per-second rate of a model priced at one rate, as people read it: "$0.10/s"."""
    return pricing.per_second(pricing.RATE_CARD[spec.key][spec.rate_key({})])


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
def thousands(number) -> str:
    """A whole number with thousands separators, as the prompt counter shows it: "3,812"."""
    try:
        return f"{int(number):,}"
    except (TypeError, ValueError):
        return str(number)


@register.filter
def per_second(rate) -> str:
    """A rate per second as people read it: "$0.10/s", "$0.23125/s"."""
    return pricing.per_second(rate)


@register.filter
def signed_dollars(amount: Decimal | None) -> str:
    """A difference in dollars with its sign: "+$0.02", "−$0.10", "$0.00"."""
    if amount is None:
        return "—"
    sign = "+" if amount > 0 else "−" if amount < 0 else ""
    return f"{sign}${abs(amount):.2f}"


@register.filter
def span(delta: timedelta | None) -> str:
    """A duration as people read it: "42 s", "3 min 05 s", "1 h 02 min"; "—" for none."""
    return "—" if delta is None else formatting.duration(delta.total_seconds())


@register.filter
def short_duration(delta: timedelta | None) -> str:
    """A card's elapsed time as its ticking clock shows it (app.js): "8 s", "2 min 05 s", "65 min 00 s"."""
    return formatting.duration(delta.total_seconds() if delta is not None else 0, hours=False)


@register.filter
def clip_time(seconds) -> str:
    """A moment in a clip: 12.34 -> "0:12.3"."""
    return "" if seconds is None else formatting.clip_time(seconds)
