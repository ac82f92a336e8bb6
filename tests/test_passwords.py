"""Passwords: change one's own from the account link; reset a forgotten one by e-mail, end to end through
Django's locmem outbox; and the e-mail settings (STUDIO_EMAIL_URL, DEFAULT_FROM_EMAIL), read strictly."""

from __future__ import annotations

import re
import socketserver
import threading

import pytest
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from studio import throttle
from tests.fixtures import client_for
from tests.test_settings import load_settings

NEW = "violet-harbour-87"


@pytest.fixture(autouse=True)
def fresh_cache(db):
    cache.clear()
    yield
    cache.clear()


def logs_in(username: str, password: str) -> bool:
    response = Client().post("/login/", {"username": username, "password": password})
    return response.status_code == 302


# --- change --------------------------------------------------------------------------------------------------


def test_every_page_links_to_the_password_change(owner):
    assert 'href="/account/password/"' in client_for(owner).get("/").content.decode()


def test_a_user_changes_their_password_and_stays_logged_in(owner):
    olivia = client_for(owner)
    page = olivia.get("/account/password/")
    assert page.status_code == 200 and "Change your password" in page.content.decode()
    wrong = olivia.post(
        "/account/password/", {"old_password": "nope", "new_password1": NEW, "new_password2": NEW}
    )
    assert wrong.status_code == 200 and "Your old password was entered incorrectly" in wrong.content.decode()
    weak = olivia.post(
        "/account/password/",
        {"old_password": "pw-olivia", "new_password1": "password", "new_password2": "password"},
    )
    assert "This password is too common" in weak.content.decode()
    done = olivia.post(
        "/account/password/", {"old_password": "pw-olivia", "new_password1": NEW, "new_password2": NEW}
    )
    assert done.status_code == 302 and done["Location"] == "/account/password/done/"
    assert olivia.get("/").status_code == 200  # the session was kept
    assert logs_in("olivia", NEW) and not logs_in("olivia", "pw-olivia")


def test_the_password_change_needs_a_login(db):
    response = Client().get("/account/password/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- reset by e-mail -------------------------------------------------------------------------------------------


def test_a_forgotten_password_is_reset_through_the_e_mailed_link(make_user):
    make_user("nina", email="nina@example.com")
    assert "Forgot your password?" in Client().get("/login/").content.decode()
    browser = Client()
    sent = browser.post("/account/reset/", {"email": "NINA@example.com"})
    assert sent.status_code == 302 and sent["Location"] == "/account/reset/sent/"
    (message,) = mail.outbox
    assert message.to == ["nina@example.com"] and message.from_email == settings.DEFAULT_FROM_EMAIL
    assert message.subject == "Reset your studio password" and '"nina"' in message.body
    link = re.search(r"http://testserver(/account/reset/\S+/)", message.body).group(1)
    form_url = browser.get(link)["Location"]  # Django swaps the token for a session-held one
    assert "Choose a new password" in browser.get(form_url).content.decode()
    done = browser.post(form_url, {"new_password1": NEW, "new_password2": NEW})
    assert done.status_code == 302 and done["Location"] == "/account/reset/done/"
    assert logs_in("nina", NEW) and not logs_in("nina", "pw-nina")
    again = Client().get(link, follow=True)  # the link works once
    assert "This password reset link was already used" in again.content.decode()


def test_a_reset_for_an_unknown_address_sends_nothing_and_says_the_same(db):
    response = Client().post("/account/reset/", {"email": "nobody@example.com"}, follow=True)
    assert "If an account has that address" in response.content.decode()
    assert mail.outbox == []


def test_a_reset_lifts_the_lock_on_the_username(make_user):
    make_user("nina", email="nina@example.com")
    for _ in range(settings.STUDIO_LOGIN_USER_FAILURES):
        throttle.record_failure("nina", "198.51.100.10")
    assert throttle.locked_seconds("nina", "192.0.2.1") > 0
    browser = Client()
    browser.post("/account/reset/", {"email": "nina@example.com"})
    link = re.search(r"http://testserver(/account/reset/\S+/)", mail.outbox[0].body).group(1)
    browser.post(browser.get(link)["Location"], {"new_password1": NEW, "new_password2": NEW})
    assert throttle.locked_seconds("nina", "192.0.2.1") == 0
    assert logs_in("nina", NEW)


def test_one_address_gets_at_most_the_hours_reset_e_mails_and_the_page_says_sent_all_the_same(make_user):
    make_user("nina", email="nina@example.com")
    limit = settings.STUDIO_RESET_EMAIL_LIMIT
    for n in range(limit + 2):  # from as many client addresses: the mailbox's own count is what stops them
        response = Client(REMOTE_ADDR=f"192.0.2.{n + 1}").post(
            "/account/reset/", {"email": "nina@example.com"}
        )
        assert response.status_code == 302 and response["Location"] == "/account/reset/sent/"
    assert len(mail.outbox) == limit
    make_user("omar", email="omar@example.com")
    Client(REMOTE_ADDR="192.0.2.1").post("/account/reset/", {"email": "omar@example.com"})
    assert mail.outbox[-1].to == ["omar@example.com"]  # another mailbox has its own count


def test_a_reset_count_on_the_database_cache_lasts_the_hour_not_the_caches_five_minutes(settings):
    # The database cache's incr saves the value again with its default timeout (300 s): the count must outlive it.
    settings.CACHES = {
        **settings.CACHES,
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "studio_cache"},
    }
    from django.core.cache import cache as database_cache  # the overridden backend
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("createcachetable", verbosity=0)  # scaled out, the cache is Redis and the table was not made

    for _ in range(2):
        assert throttle.reset_allowed("email", "nina@example.com")
    key = database_cache.make_and_validate_key(f"reset:email:{throttle._hashed('nina@example.com')}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM studio_cache WHERE cache_key = %s", [key])
        (expires,) = cursor.fetchone()
    if timezone.is_naive(expires):
        expires = timezone.make_aware(expires, timezone.UTC)
    left = (expires - timezone.now()).total_seconds()
    assert settings.STUDIO_RESET_WINDOW_SECONDS - 60 < left <= settings.STUDIO_RESET_WINDOW_SECONDS


def test_a_client_address_that_asks_too_often_is_told_to_wait_on_the_e_mail_field(make_user):
    make_user("nina", email="nina@example.com")
    flood = Client(REMOTE_ADDR="198.51.100.7")
    for n in range(settings.STUDIO_RESET_ADDRESS_LIMIT):
        assert flood.post("/account/reset/", {"email": f"someone{n}@example.com"}).status_code == 302
    refused = flood.post("/account/reset/", {"email": "nina@example.com"})
    assert refused.status_code == 200 and mail.outbox == []
    html = refused.content.decode()
    assert re.search(
        r'id="err-email"[^>]*>Too many reset requests from your network\. Try again in an hour\.<', html
    )
    elsewhere = Client(REMOTE_ADDR="203.0.113.9").post("/account/reset/", {"email": "nina@example.com"})
    assert elsewhere.status_code == 302 and len(mail.outbox) == 1


# --- the e-mail settings ------------------------------------------------------------------------------------


def test_e_mails_are_printed_on_the_console_by_default(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, tmp_path)
    assert loaded["MAILERS"] == {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
    assert loaded["DEFAULT_FROM_EMAIL"] == "studio@localhost"


@pytest.mark.parametrize(
    ("url", "options"),
    [
        (
            "smtp://mailer:s%40cret@mail.example.com:587?tls=1",
            {"host": "mail.example.com", "port": 587, "username": "mailer", "password": "s@cret"}
            | {"use_tls": True, "use_ssl": False, "timeout": 30},
        ),
        (
            "smtps://mail.example.com?timeout=10",
            {"host": "mail.example.com", "port": 465, "username": "", "password": ""}
            | {"use_tls": False, "use_ssl": True, "timeout": 10},
        ),
        (
            "smtp://localhost:1025",
            {"host": "localhost", "port": 1025, "username": "", "password": ""}
            | {"use_tls": False, "use_ssl": False, "timeout": 30},
        ),
    ],
)
def test_an_smtp_url_configures_the_mailer(monkeypatch, tmp_path, url, options):
    loaded = load_settings(
        monkeypatch, tmp_path, {"STUDIO_EMAIL_URL": url, "DEFAULT_FROM_EMAIL": "studio@example.com"}
    )
    assert loaded["MAILERS"]["default"] == {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": options,
    }
    assert loaded["DEFAULT_FROM_EMAIL"] == "studio@example.com"


@pytest.mark.parametrize(
    "url",
    [
        "mailto://user:hunter2@mail.example.com",
        "smtp://user:hunter2@mail.example.com:587?tls=maybe",
        "smtp://user:hunter2@mail.example.com:587?starttls=1",
        "smtp://user:hunter2@mail.example.com:587?tls=1&tls=0",
        "smtps://user:hunter2@mail.example.com?tls=1",
        "smtp://user:hunter2@mail.example.com:port",
        "smtp://user:hunter2@mail.example.com?timeout=soon",
        "smtp://user:hunter2@/",
    ],
)
def test_an_e_mail_url_that_cannot_be_read_stops_start_up_naming_it_without_the_password(
    monkeypatch, tmp_path, url
):
    with pytest.raises(ImproperlyConfigured, match="STUDIO_EMAIL_URL=") as refused:
        load_settings(monkeypatch, tmp_path, {"STUDIO_EMAIL_URL": url})
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("url", ["ftp://studio.example.com", "https://", "https://studio.example.com/?x=1"])
def test_a_base_url_that_cannot_be_read_stops_start_up(monkeypatch, tmp_path, url):
    with pytest.raises(ImproperlyConfigured, match="STUDIO_BASE_URL="):
        load_settings(monkeypatch, tmp_path, {"STUDIO_BASE_URL": url})


def test_the_base_url_and_the_proxy_setting_are_read(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, tmp_path, {"STUDIO_BASE_URL": "https://studio.example.com/"})
    assert loaded["STUDIO_BASE_URL"] == "https://studio.example.com"
    assert loaded["STUDIO_BEHIND_PROXY"] is False
    assert load_settings(monkeypatch, tmp_path, {"STUDIO_HTTPS": "1"})["STUDIO_BEHIND_PROXY"] is True
    both = {"STUDIO_HTTPS": "1", "STUDIO_BEHIND_PROXY": "0"}
    assert load_settings(monkeypatch, tmp_path, both)["STUDIO_BEHIND_PROXY"] is False


# --- a real SMTP conversation -------------------------------------------------------------------------------------


class SmtpSink(socketserver.StreamRequestHandler):
    """Just enough of an SMTP server (RFC 5321, no auth, no TLS) to receive what the studio sends."""

    received: list[bytes] = []

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 sink ready")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.reply("250 sink")
            elif verb == b"DATA":
                self.reply("354 go ahead")
                body = b"".join(iter(lambda: self.rfile.readline(), b".\r\n"))
                SmtpSink.received.append(body)
                self.reply("250 queued")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:  # MAIL FROM, RCPT TO, RSET, NOOP
                self.reply("250 ok")


def test_with_an_smtp_url_the_reset_e_mail_goes_to_that_server(settings, make_user, monkeypatch, tmp_path):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SmtpSink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        loaded = load_settings(
            monkeypatch, tmp_path, {"STUDIO_EMAIL_URL": f"smtp://127.0.0.1:{port}?timeout=5"}
        )
        settings.MAILERS = loaded["MAILERS"]  # instead of the test run's locmem outbox
        SmtpSink.received.clear()
        make_user("nina", email="nina@example.com")
        Client().post("/account/reset/", {"email": "nina@example.com"})
    finally:
        server.shutdown()
        server.server_close()
    (message,) = SmtpSink.received
    assert b"To: nina@example.com" in message and b"Subject: Reset your studio password" in message
    assert b"/account/reset/" in message
    assert mail.outbox == []


@pytest.mark.parametrize(
    "name",
    [
        "STUDIO_LOGIN_USER_FAILURES",
        "STUDIO_LOGIN_LOCK_SECONDS",
        "STUDIO_INVITATION_DAYS",
        "STUDIO_RESET_EMAIL_LIMIT",
        "STUDIO_RESET_ADDRESS_LIMIT",
    ],
)
def test_limits_below_one_stop_start_up(monkeypatch, tmp_path, name):
    with pytest.raises(
        ImproperlyConfigured, match=f"{name}='0' cannot be read: expected a whole number of at least 1"
    ):
        load_settings(monkeypatch, tmp_path, {name: "0"})
