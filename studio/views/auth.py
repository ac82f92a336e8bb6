"""Login with throttling that holds (studio/throttle.py), and the password pages (Django's views, our templates).

A locked username or address is refused before the password is even checked, and such a refusal is not counted
as a failure. The address is `netaddr.client_address`: X-Forwarded-For only behind a declared proxy.
"""

from __future__ import annotations

import logging

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.core.exceptions import ValidationError
from django.urls import path

from studio import throttle
from studio.netaddr import client_address

log = logging.getLogger(__name__)


def _wait_in_words(seconds: int) -> str:
    minutes = -(-seconds // 60)  # rounded up: "in 1 minute" even for 20 s
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


class ThrottledAuthenticationForm(AuthenticationForm):
    """The studio's login form: it refuses to check a password while the username or the address is locked,
    and counts wrong passwords against each. A right password refused for another reason (a non-staff user at
    the admin's login) is not a guess, so it is not counted."""

    def clean(self):
        username = (self.data.get("username") or "").strip()
        address = client_address(self.request)
        wait = throttle.locked_seconds(username, address)
        if wait:
            raise ValidationError(
                f"Too many failed attempts. Try again in {_wait_in_words(wait)}, or reset your password.",
                code="locked",
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            if self.user_cache is None:
                throttle.record_failure(username, address)
            raise
        if self.user_cache is not None:  # not when a field was left empty: no password was checked
            throttle.record_success(username)
        return cleaned


class ThrottledAdminAuthenticationForm(ThrottledAuthenticationForm, AdminAuthenticationForm):
    """The admin site's login form: the same counts, so /admin/login/ is no way around them."""


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True


class ThrottledPasswordResetForm(PasswordResetForm):
    """Django's reset form, sending at most STUDIO_RESET_EMAIL_LIMIT e-mails an hour to one address: past it the
    e-mail is dropped (logged), and the page says "sent" all the same, as for an address no account has."""

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email, **kwargs):
        if not throttle.reset_allowed("email", to_email):
            log.warning("Password reset e-mail not sent: the hour's limit for that address is reached")
            return
        super().send_mail(subject_template_name, email_template_name, context, from_email, to_email, **kwargs)


class PasswordResetView(auth_views.PasswordResetView):
    """Ask for a reset link; a client address that asks more than STUDIO_RESET_ADDRESS_LIMIT times an hour is
    told to wait (the form, with the reason, on the e-mail field), whatever the addresses it gives."""

    form_class = ThrottledPasswordResetForm

    def form_valid(self, form):
        if not throttle.reset_allowed("address", client_address(self.request)):
            form.add_error("email", "Too many reset requests from your network. Try again in an hour.")
            return self.form_invalid(form)
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Set a new password from the e-mailed link; it also lifts the lock on the username (whoever holds the
    mailbox is the account's owner), so "reset your password" is a way out of a lock."""

    def form_valid(self, form):
        throttle.record_success(form.user.get_username())
        return super().form_valid(form)


# Django's password views under their usual names; the templates are templates/registration/password_*.
urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("account/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("account/reset/", PasswordResetView.as_view(), name="password_reset"),
    path("account/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "account/reset/<uidb64>/<token>/",
        PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "account/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]
