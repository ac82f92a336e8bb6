"""System checks that fail fast on inconsistent settings."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CLIP_CHECK_SECONDS = 30  # of a download task's time, kept for probing and fully decoding the clip


@register()
def check_gateway_settings(app_configs=None, **kwargs) -> list:
    """The gateway URL, result hosts, queue timings, poll scale and allowed hosts must make sense together."""
    errors: list[CheckMessage] = []
    base = urlsplit(settings.BYTESPIKE_BASE_URL)
    if base.scheme not in ("http", "https") or not base.hostname:
        errors.append(
            Error(
                f"BYTESPIKE_BASE_URL {settings.BYTESPIKE_BASE_URL!r} is not an http(s) URL.", id="studio.E001"
            )
        )
    elif base.scheme == "http" and base.hostname not in LOOPBACK and not settings.USING_EMULATOR:
        errors.append(
            Error(
                "BYTESPIKE_BASE_URL must use https when an API key is set: the key would travel in clear.",
                id="studio.E002",
            )
        )
    for host in settings.BYTESPIKE_RESULT_HOSTS:
        if "/" in host or ":" in host or " " in host:
            errors.append(
                Error(f"BYTESPIKE_RESULT_HOSTS entry {host!r} must be a bare host name.", id="studio.E003")
            )
    q = settings.Q_CLUSTER
    if q["timeout"] >= q["retry"]:
        errors.append(
            Error(
                "Q_CLUSTER timeout must be below retry, or the ORM broker hands running tasks out twice.",
                id="studio.E004",
            )
        )
    if settings.STUDIO_POLLER_RUN_SECONDS + settings.GATEWAY_TIMEOUT["read"] >= q["timeout"]:
        errors.append(
            Error(
                "STUDIO_POLLER_RUN_SECONDS plus the read timeout must stay below the task timeout.",
                id="studio.E005",
            )
        )
    slice_, stall = settings.STUDIO_DOWNLOAD_SLICE_SECONDS, settings.STUDIO_DOWNLOAD_STALL_SECONDS
    if slice_ <= 0 or stall <= 0:
        errors.append(
            Error(
                "STUDIO_DOWNLOAD_SLICE_SECONDS and STUDIO_DOWNLOAD_STALL_SECONDS must be positive.",
                id="studio.E008",
            )
        )
    elif slice_ + stall + CLIP_CHECK_SECONDS >= q["timeout"]:
        # A slice can overrun by one stalled read, and checking the whole clip follows in the same task.
        errors.append(
            Error(
                f"STUDIO_DOWNLOAD_SLICE_SECONDS ({slice_:g}) plus STUDIO_DOWNLOAD_STALL_SECONDS ({stall:g}) must "
                f"leave {CLIP_CHECK_SECONDS} s of the task timeout ({q['timeout']} s) to check the clip, or the "
                "cluster kills downloads.",
                id="studio.E009",
            )
        )
    if not 1 <= settings.STUDIO_POLLER_SHARDS <= 256:
        errors.append(Error("STUDIO_POLLER_SHARDS must be between 1 and 256.", id="studio.E020"))
    if not 0 < settings.STUDIO_POLL_SCALE <= 1:
        errors.append(
            Error(
                "STUDIO_POLL_SCALE must be in (0, 1]: the documented cadence is the slowest allowed.",
                id="studio.E006",
            )
        )
    if not settings.DEBUG and not settings.ALLOWED_HOSTS:
        errors.append(Error("ALLOWED_HOSTS is empty while DEBUG is off.", id="studio.E007"))
    if settings.USING_EMULATOR and base.hostname not in LOOPBACK:
        errors.append(
            Warning(
                "No BYTESPIKE_API_KEY is set but BYTESPIKE_BASE_URL is not local: renders go to "
                f"{base.hostname} with the emulator's placeholder key.",
                id="studio.W001",
            )
        )
    return errors
