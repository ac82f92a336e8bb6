"""A sentinel API key never shows: not in logs, pages, fragments, admin pages, task arguments, CLI output, alerts."""

from __future__ import annotations

import importlib
import io
import json
import logging

import pytest
from conftest import HTMX
from django.contrib import admin
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from studio.logging import REDACTED, RedactSecrets
from studio.models import GatewayAlert, Render, State

SENTINEL = "sk-SENTINEL-1234567890"
FORM = {"model": "sora2", "prompt": "A red apple rolls", "duration_seconds": "5", "size": "1280x720"}


@pytest.fixture
def api_key(settings):
    """The studio configured with a real-looking key (the emulator accepts any)."""
    settings.BYTESPIKE_API_KEY = settings.GATEWAY_API_KEY = SENTINEL
    settings.USING_EMULATOR = False
    return SENTINEL


@pytest.fixture
def all_logs(caplog):
    """Every record of every logger, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in [*logging.root.manager.loggerDict, "httpx", "httpcore", "django_q", "studio", "django"]:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def operator(make_user) -> Client:
    """Ada, a superuser."""
    client = Client()
    client.force_login(make_user("ada", is_staff=True, is_superuser=True))
    return client


def logged(caplog) -> str:
    """Everything the records carry: messages, raw arguments and formatted tracebacks."""
    parts = [caplog.text]
    for record in caplog.records:
        parts += [str(record.msg), repr(record.args), record.exc_text or "", repr(record.__dict__)]
    return "\n".join(parts)


def run_queue(queue) -> list[dict]:
    """Run what the studio queued until nothing is left; return every task package seen before it ran."""
    seen = []
    for _ in range(100):
        packages = queue.pending()
        if not packages:
            return seen
        seen += packages
        for package in packages:
            module, name = package["func"].rsplit(".", 1)
            getattr(importlib.import_module(module), name)(*package["args"], **package["kwargs"])
    raise AssertionError("the queue never emptied")


def admin_pages(client: Client) -> dict[str, str]:
    """The admin index and every registered model's list, plus the change page of every studio row."""
    urls = ["/admin/"]
    for model in admin.site._registry:
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        if meta.app_label == "studio":
            urls += [
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk])
                for pk in model.objects.values_list("pk", flat=True)
            ]
    pages = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        pages[url] = response.content.decode()
    return pages


def test_a_full_render_never_reveals_the_key(
    api_key, gateway, queue, owner_client, owner, operator, all_logs
):
    submitted = owner_client.post("/renders/", FORM, **HTMX)
    assert submitted.status_code == 200
    packages = run_queue(queue)
    render = Render.objects.get(user=owner)
    assert render.state == State.COMPLETED, render.error
    assert {"submit_render", "download_render"} <= {p["func"].rsplit(".", 1)[1] for p in packages}
    assert api_key not in repr(packages)

    seen = {
        "submit fragment": submitted.content.decode(),
        "page": owner_client.get("/").content.decode(),
        "card": owner_client.get(f"/renders/{render.pk}/").content.decode(),
        "poll": owner_client.get(
            "/renders/poll/", {"since": render.created_at.isoformat()}, **HTMX
        ).content.decode(),
        "estimate": owner_client.post("/estimate/", FORM, **HTMX).content.decode(),
        "cancel": owner_client.post(f"/renders/{render.pk}/cancel/", **HTMX).content.decode(),
        "operator page": operator.get("/").content.decode(),
        **admin_pages(operator),
    }
    out = io.StringIO()
    call_command("renders", "--json", stdout=out)
    seen["renders --json"] = out.getvalue()
    assert json.loads(out.getvalue())[0]["state"] == "completed"

    assert all_logs.records, "the flow logged nothing: the capture is not working"
    assert api_key not in logged(all_logs)
    assert [where for where, text in seen.items() if api_key in text] == []


def test_a_rejected_key_raises_an_alert_that_does_not_quote_it(
    api_key, gateway, queue, owner_client, owner, all_logs
):
    gateway.add_fault("submit", status=401)
    owner_client.post("/renders/", FORM, **HTMX)
    run_queue(queue)
    render = Render.objects.get(user=owner)
    alert = GatewayAlert.objects.get(kind=GatewayAlert.Kind.CREDENTIALS)
    assert render.state == State.PENDING and render.error_code == "credentials"
    assert "The API key is invalid." in alert.message or "401" in alert.message
    assert api_key not in alert.message
    assert api_key not in render.error
    assert api_key not in logged(all_logs)


@pytest.mark.parametrize("op", ["submit", "poll"])
def test_a_gateway_that_echoes_the_key_in_a_401_does_not_leak_it(
    op, api_key, gateway, queue, owner_client, owner, operator, all_logs
):
    gateway.add_fault(op, status=401, message=f"Incorrect API key provided: {api_key}.")
    owner_client.post("/renders/", FORM, **HTMX)
    run_queue(queue)
    alert = GatewayAlert.objects.get(kind=GatewayAlert.Kind.CREDENTIALS)
    assert "Incorrect API key provided: [redacted]." in alert.message
    assert api_key not in Render.objects.get(user=owner).error
    assert api_key not in operator.get("/").content.decode()
    assert all(api_key not in page for page in admin_pages(operator).values())
    assert api_key not in logged(all_logs)


def test_error_reports_hide_the_gateway_credential(api_key):
    safe = SafeExceptionReporterFilter().get_safe_settings()
    assert safe["BYTESPIKE_API_KEY"] != api_key
    assert safe["GATEWAY_API_KEY"] != api_key


# --- the RedactSecrets filter -------------------------------------------------------------------------------


def record(msg: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("studio.test", logging.WARNING, __file__, 1, msg, args or None, exc_info)


def test_redact_secrets_replaces_the_key_in_arguments(api_key):
    item = record("Sending %s to %s", f"Bearer {api_key}", "the gateway")
    assert RedactSecrets().filter(item) is True
    assert item.getMessage() == f"Sending Bearer {REDACTED} to the gateway"


def test_redact_secrets_replaces_the_key_in_the_message(api_key):
    item = record(f"x-api-key: {api_key}")
    RedactSecrets().filter(item)
    assert item.getMessage() == f"x-api-key: {REDACTED}"


def test_redact_secrets_leaves_other_records_alone(api_key):
    item = record("Render %s submitted as gateway task %s", "abc", "task_1")
    RedactSecrets().filter(item)
    assert (item.msg, item.args) == ("Render %s submitted as gateway task %s", ("abc", "task_1"))


def test_the_console_handler_redacts_the_key(api_key):
    console = next(
        h for h in logging.getLogger().handlers if any(isinstance(f, RedactSecrets) for f in h.filters)
    )
    stream = io.StringIO()
    previous = console.setStream(stream)
    try:
        logging.getLogger("studio.test").error("the key is %s", api_key)
    finally:
        console.setStream(previous)
    assert "the key is [redacted]" in stream.getvalue()
    assert api_key not in stream.getvalue()


def test_redact_secrets_covers_tracebacks(api_key):
    try:
        raise RuntimeError(f"request failed with key {api_key}")
    except RuntimeError:
        import sys

        item = record("Submitting failed", exc_info=sys.exc_info())
    RedactSecrets().filter(item)
    assert api_key not in logging.Formatter().format(item)


def test_redact_secrets_never_raises(api_key):
    item = record("two placeholders %s %s", "one argument")
    assert RedactSecrets().filter(item) is True
