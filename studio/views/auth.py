"""Login with brute-force protection: repeated failures lock a username and an address out for a while."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError

MAX_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60


def _keys(request, username: str) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "unknown")
    return [f"login-fail:user:{username.lower()}", f"login-fail:addr:{address}"]


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuse to even check a password once a username or an address has failed too often."""

    def clean(self):
        username = (self.data.get("username") or "").strip()
        keys = _keys(self.request, username)
        if any(cache.get(key, 0) >= MAX_FAILURES for key in keys):
            raise ValidationError(
                f"Too many failed attempts. Try again in {LOCKOUT_SECONDS // 60} minutes.", code="locked"
            )
        try:
            return super().clean()
        except ValidationError:
            for key in keys:
                cache.add(key, 0, LOCKOUT_SECONDS)
                cache.incr(key)
            raise


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True
