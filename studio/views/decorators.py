"""Decorators shared by the views of several pages."""

from __future__ import annotations

from functools import wraps

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from studio.params import BadValue


def answers_400(view):
    """A bad query-string value (params.BadValue) is the client's mistake: 400 with the reason, never 500."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except BadValue as error:
            return HttpResponseBadRequest(str(error), content_type="text/plain; charset=utf-8")

    return wrapper
