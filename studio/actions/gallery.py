"""Gallery actions: stars and tags. Anyone who may view a render may star and tag it; the view checks that."""

from __future__ import annotations

from studio.gallery import TAGS_PER_RENDER, BadValue, clean_tag_name
from studio.models import Render, Star, Tag


def do_toggle_star(user, render: Render) -> bool:
    """Star the render for this user, or unstar it if starred; returns whether it is starred now."""
    deleted, _ = Star.objects.filter(user=user, render=render).delete()
    if deleted:
        return False
    Star.objects.get_or_create(user=user, render=render)  # a concurrent double click stars once
    return True


def do_add_tag(user, render: Render, name: str):
    """Tag the render (a name it already has is kept once); raises gallery.BadValue for a bad name or too many."""
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
    Tag.objects.filter(render=render, name=name).delete()
