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


SIGV4_MAX_SECONDS = 7 * 24 * 3600  # the longest a SigV4 pre-signed link may be valid


@register()
def check_media_storage(app_configs=None, **kwargs) -> list:
    """An object store is chosen whole (bucket, and both keys or none), and its links live a sensible time."""
    errors: list[CheckMessage] = []
    s3 = getattr(settings, "STUDIO_S3", None) or {}
    if not s3.get("bucket"):
        if s3.get("named"):
            errors.append(
                Error(
                    f"{', '.join(s3['named'])} set without STUDIO_S3_BUCKET: clips would go to the local disk "
                    "while you meant an object store.",
                    hint="Set STUDIO_S3_BUCKET, or unset the other STUDIO_S3_ variables.",
                    id="studio.E030",
                )
            )
    else:
        if bool(s3.get("access_key")) != bool(s3.get("secret_key")):
            errors.append(
                Error(
                    "Only half of the object store's key pair is set.",
                    hint="Set both STUDIO_S3_ACCESS_KEY_ID and STUDIO_S3_SECRET_ACCESS_KEY (or both AWS_ names).",
                    id="studio.E031",
                )
            )
        elif not s3.get("access_key"):
            errors.append(
                Warning(
                    "STUDIO_S3_BUCKET is set without keys: boto3 must find credentials itself (a profile or an "
                    "instance role), or every clip fails to store.",
                    id="studio.W030",
                )
            )
        endpoint = urlsplit(s3.get("endpoint_url") or "https://s3.amazonaws.com")
        if endpoint.scheme == "http" and endpoint.hostname not in LOOPBACK:
            errors.append(
                Warning(
                    f"STUDIO_S3_ENDPOINT_URL uses http to {endpoint.hostname}: clips and signed links travel in clear.",
                    id="studio.W031",
                )
            )
    seconds = settings.STUDIO_MEDIA_URL_SECONDS
    if not 1 <= seconds <= SIGV4_MAX_SECONDS:
        errors.append(
            Error(
                f"STUDIO_MEDIA_URL_SECONDS ({seconds}) must be between 1 and {SIGV4_MAX_SECONDS} (7 days).",
                id="studio.E032",
            )
        )
    return errors
