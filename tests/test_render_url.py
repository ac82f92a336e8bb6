"""`{% render_url %}`: a card's links are the ones `{% url %}` gives, under any URL prefix, for every render."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse, set_script_prefix

from studio.templatetags.studio_tags import render_url

ROUTES = ["detail", "video", "poster", "viewer", "star", "tag_add", "review", "variants"]


@pytest.mark.parametrize("name", ROUTES)
def test_a_render_url_is_the_reversed_route(name):
    for render_id in (uuid.uuid4(), uuid.uuid4()):
        assert render_url(name, render_id) == reverse(name, args=[render_id])


def test_a_render_url_follows_the_url_prefix_it_is_served_under():
    render_id = uuid.uuid4()
    try:
        set_script_prefix("/studio/")
        under_prefix = render_url("detail", render_id)
        expected = reverse("detail", args=[render_id])
    finally:
        set_script_prefix("/")
    assert under_prefix == expected == f"/studio/renders/{render_id}/detail/"
    assert render_url("detail", render_id) == f"/renders/{render_id}/detail/"
