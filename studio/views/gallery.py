"""Views for the gallery pages (issue 4). Each view: decorators, access helper, one action, a page or partial."""

from __future__ import annotations

urlpatterns: list = []
