"""Settings, read from the environment (see README "Configuration"); the names are a contract.

Importing this module only reads: the data directory and its generated SECRET_KEY are created by
`studio.bootstrap.prepare_data_dir()`, which every entry point runs first. A value that cannot be parsed stops
start-up with ImproperlyConfigured naming the variable and the value (as healthchecks does), never a silent default.
"""

from __future__ import annotations

import logging
import math
import os
import re
from urllib.parse import parse_qs, unquote, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from studio import bootstrap

BASE_DIR = bootstrap.BASE_DIR

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
LOG_LEVELS = tuple(logging.getLevelNamesMapping())


def _unparsable(name: str, value: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r} cannot be read: expected {expected}.")


def envbool(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable (1/true/yes/on or 0/false/no/off, any case); unset or empty: default."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise _unparsable(name, value, "one of " + "/".join(TRUE_WORDS + FALSE_WORDS))


def envint(name: str, default: int) -> int:
    """Read an integer environment variable; unset or empty: default."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise _unparsable(name, value, "a whole number") from None


def envcount(name: str, default: int) -> int:
    """Read a whole number that must be at least 1 (a limit, a number of seconds or days); unset or empty: default."""
    number = envint(name, default)
    if number < 1:
        raise _unparsable(name, str(number), "a whole number of at least 1")
    return number


def envfloat(name: str, default: float) -> float:
    """Read a decimal environment variable (finite: nan and inf are refused); unset or empty: default."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _unparsable(name, value, "a finite number")
    return number


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """Read an environment variable that must be one of `choices` (exactly); unset or empty: default."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value not in choices:
        raise _unparsable(name, value, "one of " + ", ".join(choices))
    return value


def envlist(name: str, default: str = "") -> list[str]:
    """Read a comma-separated environment variable."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envdatabase(name: str) -> dict:
    """Read a database URL (dj-database-url's forms); an error message shows the URL without its password."""
    value = os.environ[name]
    try:
        return dict(dj_database_url.parse(value, conn_max_age=60))
    except ValueError as error:
        shown = re.sub(r"(://[^:/@]*:).*@", r"\1***@", value)
        raise _unparsable(name, shown, f"a database URL ({error})") from None


EMAIL_URL_OPTIONS = ("tls", "ssl", "timeout")


def envmailer(name: str) -> dict:
    """Read an e-mail URL into a Django MAILERS entry: unset or `console://`: e-mails are printed on the console;
    `smtp://user:password@host:port?tls=1` (STARTTLS), `smtps://...` (TLS from the start), `&timeout=N` seconds.
    Anything else stops start-up; the error never shows the password."""
    value = os.environ.get(name, "").strip()
    if not value or value == "console://":
        return {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
    shown = re.sub(r"(://[^:/@]*:).*@", r"\1***@", value)
    expected = "console:// or smtp[s]://user:password@host:port?tls=1 (options: tls, ssl, timeout)"
    try:
        parts = urlsplit(value)
        port = parts.port
        options = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _unparsable(name, shown, expected) from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname or parts.path not in ("", "/"):
        raise _unparsable(name, shown, expected)
    if set(options) - set(EMAIL_URL_OPTIONS) or any(len(v) != 1 for v in options.values()):
        raise _unparsable(name, shown, expected)
    flags = {}
    for option in ("tls", "ssl"):
        word = options.get(option, ["0"])[0].lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise _unparsable(name, shown, f"{option}= one of " + "/".join(TRUE_WORDS + FALSE_WORDS))
        flags[option] = word in TRUE_WORDS
    use_ssl = flags["ssl"] or parts.scheme == "smtps"
    if use_ssl and flags["tls"]:
        raise _unparsable(name, shown, "either tls (STARTTLS) or ssl/smtps, not both")
    timeout = options.get("timeout", ["30"])[0]
    if not timeout.isdigit() or int(timeout) == 0:
        raise _unparsable(name, shown, "timeout= a whole number of seconds")
    return {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": parts.hostname,
            "port": port or (465 if use_ssl else 587 if flags["tls"] else 25),
            "username": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "use_tls": flags["tls"],
            "use_ssl": use_ssl,
            "timeout": int(timeout),
        },
    }


DATA_DIR = bootstrap.data_dir()
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media-not-served/"  # clips are served only through access-checked views

# From the environment, else the key `bootstrap.prepare_data_dir()` generated once into the data directory. If
# that has not run (a tool that only inspects settings, such as mypy's Django plugin), the key stays empty and
# Django refuses to sign anything with it ("The SECRET_KEY setting must not be empty"): never a made-up key.
SECRET_KEY = os.environ.get("SECRET_KEY") or bootstrap.read_secret_key(DATA_DIR)
DEBUG = envbool("DEBUG")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")


def envorigins(name: str) -> list[str]:
    """Read a comma-separated list of origins, each with its scheme (https://studio.example.com)."""
    origins = envlist(name)
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise _unparsable(
                name, os.environ[name], "origins with their scheme, e.g. https://studio.example.com"
            )
    return origins


CSRF_TRUSTED_ORIGINS = envorigins("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_q",
    "studio",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "studio.middleware.HtmxMessagesMiddleware",
]

ROOT_URLCONF = "studio.urls"
WSGI_APPLICATION = "studio.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "studio.context_processors.gateway_banner",
                "studio.context_processors.gateway_capabilities",
                "studio.context_processors.navigation",
            ],
        },
    }
]

# --- Database: SQLite in the data directory, or DATABASE_URL ---------------------------------------------
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": envdatabase("DATABASE_URL")}
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"].setdefault("OPTIONS", {})
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "studio.sqlite3"),
            "OPTIONS": {},
        }
    }
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A web server and a worker share the file: WAL, BEGIN IMMEDIATE and a busy timeout (STACK-NOTES).
    DATABASES["default"]["OPTIONS"].update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(DATA_DIR / "test.sqlite3")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "studio"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "staticfiles"  # created by bootstrap.prepare_data_dir(): whitenoise warns if missing
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Shared media: clips, posters and init images ------------------------------------------------------------
# The local disk under the data directory by default (MEDIA_ROOT: renders/<id>/clip.mp4, poster.jpg, init.*), or
# an S3-compatible object store when STUDIO_S3_BUCKET is set, so web servers on several machines serve the same
# files. Downloads still assemble their resumable `.part` under MEDIA_ROOT on the worker's disk either way.
S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's bucket naming rules


def envurl(name: str) -> str:
    """Read an http(s) URL with a host (no path beyond "/"); unset or empty: ""."""
    value = os.environ.get(name, "").strip()
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
        raise _unparsable(name, value, "an http(s) URL such as https://s3.example.com (no path)")
    return value.rstrip("/")


def s3_settings() -> dict:
    """The object store the environment describes (bucket "" when none is chosen); checked by studio.E030-E032."""
    bucket = os.environ.get("STUDIO_S3_BUCKET", "").strip()
    if bucket and not S3_BUCKET_RE.match(bucket):
        raise _unparsable("STUDIO_S3_BUCKET", bucket, "an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    endpoint = envurl("STUDIO_S3_ENDPOINT_URL")
    prefix = os.environ.get("STUDIO_S3_PREFIX", "").strip().strip("/")
    if prefix and (not re.fullmatch(r"[A-Za-z0-9._/-]+", prefix) or ".." in prefix.split("/")):
        raise _unparsable(
            "STUDIO_S3_PREFIX", prefix, "a key prefix of letters, digits, '.', '_', '-' and '/'"
        )
    # The studio's own names first; else the names every AWS tool reads.
    access_key = os.environ.get("STUDIO_S3_ACCESS_KEY_ID", "").strip() or os.environ.get(
        "AWS_ACCESS_KEY_ID", ""
    )
    secret_key = os.environ.get("STUDIO_S3_SECRET_ACCESS_KEY", "").strip() or os.environ.get(
        "AWS_SECRET_ACCESS_KEY", ""
    )
    return {
        "named": sorted(
            key for key, value in os.environ.items() if key.startswith("STUDIO_S3_") and value.strip()
        ),
        "bucket": bucket,
        "endpoint_url": endpoint,
        "region": os.environ.get("STUDIO_S3_REGION", "").strip() or "us-east-1",
        "prefix": prefix,
        "access_key": access_key.strip(),
        "secret_key": secret_key.strip(),
        # A self-hosted store (rclone, MinIO, Ceph) answers at one host: bucket in the path. AWS: its own choice.
        "addressing_style": envchoice(
            "STUDIO_S3_ADDRESSING_STYLE", "path" if endpoint else "auto", ("path", "virtual", "auto")
        ),
    }


def s3_storage(s3: dict, url_seconds: int) -> dict:
    """STORAGES["default"] for django-storages' S3Storage on the object store `s3` describes."""
    from botocore.config import Config

    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": s3["bucket"],
            "endpoint_url": s3["endpoint_url"] or None,
            "region_name": s3["region"],
            "location": s3["prefix"],
            "access_key": s3["access_key"] or None,
            "secret_key": s3["secret_key"] or None,
            "file_overwrite": True,  # a clip fetched again replaces its object under the same name
            "default_acl": None,  # private: every file is reached through the access check
            "querystring_auth": True,
            "querystring_expire": url_seconds,
            "client_config": Config(
                s3={"addressing_style": s3["addressing_style"]},
                signature_version="s3v4",
                # Current boto3 checksums every request and answer by default; S3-compatible stores (rclone's
                # included) then fail ranged gets. Checksums only where the API requires them (STACK-NOTES).
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        },
    }


STUDIO_S3 = s3_settings()
# Where browsers fetch the pre-signed links from, for the Content-Security-Policy below.
STUDIO_S3_ORIGIN = (
    "{0.scheme}://{0.netloc}".format(urlsplit(STUDIO_S3["endpoint_url"]))
    if STUDIO_S3["endpoint_url"]
    else "https://*.amazonaws.com"
)
# How long a pre-signed link to a clip or poster stays valid: the browser follows it at once, and a player that
# seeks later reuses it, so it outlasts a viewing, no more (see README "Shared media").
STUDIO_MEDIA_URL_SECONDS = envint("STUDIO_MEDIA_URL_SECONDS", 300)
STORAGES = {
    "default": (
        s3_storage(STUDIO_S3, STUDIO_MEDIA_URL_SECONDS)
        if STUDIO_S3["bucket"]
        else {"BACKEND": "django.core.files.storage.FileSystemStorage"}  # MEDIA_ROOT, today's layout
    ),
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if envbool("STUDIO_MANIFEST_STATIC", default=not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security ---------------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "studio.views.studio.csrf_failure"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "media-src": ["'self'"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
if STUDIO_S3["bucket"]:
    # Clips and posters are redirects to pre-signed links on the object store: the player and <img> follow them.
    SECURE_CSP["img-src"].append(STUDIO_S3_ORIGIN)
    SECURE_CSP["media-src"].append(STUDIO_S3_ORIGIN)
# HTTPS by configuration: behind a TLS-terminating proxy (README "Deploying"), STUDIO_HTTPS=1 turns on HSTS, the
# redirect to https, secure cookies and trust in the proxy's X-Forwarded-Proto. The proxy must set that header
# itself (overwriting any a client sent), or a client could claim https over plain http.
STUDIO_HTTPS = envbool("STUDIO_HTTPS")
# Trust X-Forwarded-For/-Proto from a proxy in front (studio/netaddr.py picks the client's address with it).
STUDIO_BEHIND_PROXY = envbool("STUDIO_BEHIND_PROXY", default=STUDIO_HTTPS)
# How many proxies in front append to X-Forwarded-For (nginx or Caddy alone: 1).
STUDIO_PROXY_COUNT = envcount("STUDIO_PROXY_COUNT", 1)
_hsts_seconds = envint("STUDIO_HSTS_SECONDS", 31_536_000)  # a year, as `check --deploy` asks
_hsts_preload = envbool("STUDIO_HSTS_PRELOAD")  # a preload list entry is hard to undo: opt in
if STUDIO_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if STUDIO_HTTPS:
    SECURE_SSL_REDIRECT = True
    # A load balancer's probe and a local Prometheus talk to the upstream over plain http.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = _hsts_seconds
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _hsts_preload
    if not _hsts_preload:
        # Asking browsers to preload the domain is a decision for its owner (it binds every subdomain, for
        # months, and is slow to undo), taken with STUDIO_HSTS_PRELOAD=1: not a warning to fix by default.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- The gateway ------------------------------------------------------------------------------------------
GATEWAY_DOCUMENTED_BASE_URL = "https://llm.bytespike.ai"
EMULATOR_PORT = envint("STUDIO_EMULATOR_PORT", 8765)
BYTESPIKE_API_KEY = os.environ.get("BYTESPIKE_API_KEY", "")
USING_EMULATOR = not BYTESPIKE_API_KEY
BYTESPIKE_BASE_URL = (os.environ.get("BYTESPIKE_BASE_URL") or "").rstrip("/") or (
    f"http://127.0.0.1:{EMULATOR_PORT}" if USING_EMULATOR else GATEWAY_DOCUMENTED_BASE_URL
)
# The emulator checks that a key is sent; without a real key the studio sends this placeholder.
GATEWAY_API_KEY = BYTESPIKE_API_KEY or "emulator-local-key"
BYTESPIKE_RESULT_HOSTS = envlist("BYTESPIKE_RESULT_HOSTS", "" if USING_EMULATOR else "cdn.bytespike.ai")
GATEWAY_ALLOWED_RESULT_HOSTS = sorted(
    {urlsplit(BYTESPIKE_BASE_URL).hostname or "", *BYTESPIKE_RESULT_HOSTS} - {""}
)
GATEWAY_TIMEOUT = {"connect": 5.0, "read": envfloat("STUDIO_GATEWAY_READ_TIMEOUT", 30.0), "write": 30.0}
STUDIO_PUBLIC_URL = os.environ.get("STUDIO_PUBLIC_URL", "").rstrip("/")

# --- Render lifecycle -------------------------------------------------------------------------------------
STUDIO_POLL_SCALE = envfloat("STUDIO_POLL_SCALE", 1.0)  # <1 only in tests: shrinks the documented cadence
STUDIO_STALL_AFTER_SECONDS = envint("STUDIO_STALL_AFTER_SECONDS", 3600)
STUDIO_SUBMIT_MAX_ATTEMPTS = envint("STUDIO_SUBMIT_MAX_ATTEMPTS", 5)
STUDIO_MAX_VIDEO_BYTES = envint("STUDIO_MAX_VIDEO_BYTES", 512 * 1024 * 1024)
STUDIO_MAX_IMAGE_BYTES = envint("STUDIO_MAX_IMAGE_BYTES", 10 * 1024 * 1024)
STUDIO_MAX_IMAGE_PIXELS = envint("STUDIO_MAX_IMAGE_PIXELS", 40_000_000)
STUDIO_POLLER_RUN_SECONDS = envint(
    "STUDIO_POLLER_RUN_SECONDS", 15
)  # then it hands over: short graceful stops
STUDIO_POLLER_THREADS = envint("STUDIO_POLLER_THREADS", 16)
# The poller's work is split into this many shards (by render id), each leased by one cluster's poller; clusters
# against one database share them. Every cluster must use the same number.
STUDIO_POLLER_SHARDS = envint("STUDIO_POLLER_SHARDS", 16)
# A download task stops after a slice and queues itself to go on from the bytes on disk (HTTP Range), so no
# task outlives the cluster's timeout; a download fails only when no byte arrives for the stall time.
STUDIO_DOWNLOAD_SLICE_SECONDS = envfloat("STUDIO_DOWNLOAD_SLICE_SECONDS", 30.0)
STUDIO_DOWNLOAD_STALL_SECONDS = envfloat("STUDIO_DOWNLOAD_STALL_SECONDS", 20.0)
STUDIO_DAMAGED_DOWNLOADS = envint(
    "STUDIO_DAMAGED_DOWNLOADS", 3
)  # clips that fail the full decode, then failed

# --- django-q2: ORM broker by default, Redis when REDIS_URL is set -----------------------------------------
Q_CLUSTER: dict = {
    "name": os.environ.get("STUDIO_Q_NAME", "studio"),
    "workers": envint("STUDIO_Q_WORKERS", 4),
    "timeout": 90,  # well below retry: the ORM broker redelivers unacknowledged tasks after `retry`
    "retry": 150,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.1,
    "label": "Background tasks",
    "save_limit": 500,
}
if os.environ.get("REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["cache"] = "local"  # cluster statistics: not into the database cache (see CACHES)

# --- Shared cache: login throttling lives here, so every web process sees it and a restart keeps it -----------
# The database cache by default (its table is made by migration 0009_invitations, the same as `manage.py
# createcachetable`), Redis when REDIS_URL is set. Never a per-process memory cache: it would count each
# process's failures apart.
if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": "studio-cache",
        }
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "studio_cache"}
    }
# Each process's own memory, for what must not cost a database write: django-q2's cluster statistics, which its
# sentinel saves twice a second (with the ORM broker they used to land in Django's default per-process cache).
CACHES["local"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}

# --- Login throttling (studio/throttle.py): per username and per client address, counted apart -------------
STUDIO_LOGIN_USER_FAILURES = envcount("STUDIO_LOGIN_USER_FAILURES", 5)  # failures before a username is locked
STUDIO_LOGIN_ADDRESS_FAILURES = envcount("STUDIO_LOGIN_ADDRESS_FAILURES", 20)  # ... and an address
# The first lock, in seconds; each failure past the limit doubles it, up to the most.
STUDIO_LOGIN_LOCK_SECONDS = envcount("STUDIO_LOGIN_LOCK_SECONDS", 60)
STUDIO_LOGIN_LOCK_MAX_SECONDS = envcount("STUDIO_LOGIN_LOCK_MAX_SECONDS", 15 * 60)
STUDIO_LOGIN_FORGET_SECONDS = envcount("STUDIO_LOGIN_FORGET_SECONDS", 24 * 3600)  # quiet: failures forgotten
# Password-reset e-mails: at most this many to one e-mail address, and requests from one client address, a window.
STUDIO_RESET_EMAIL_LIMIT = envcount("STUDIO_RESET_EMAIL_LIMIT", 3)
STUDIO_RESET_ADDRESS_LIMIT = envcount("STUDIO_RESET_ADDRESS_LIMIT", 10)
STUDIO_RESET_WINDOW_SECONDS = envcount("STUDIO_RESET_WINDOW_SECONDS", 3600)
# The client address comes from X-Forwarded-For only behind a proxy (STUDIO_BEHIND_PROXY, read with STUDIO_HTTPS
# above; studio/netaddr.py): otherwise anyone could send the header and pose as any address.

# --- Invitations and e-mail ---------------------------------------------------------------------------------
STUDIO_INVITATION_DAYS = envcount("STUDIO_INVITATION_DAYS", 7)
# Where people reach the studio, for links made outside a request (`manage.py team invite`); pages use the
# address the request came to when it is unset.
STUDIO_BASE_URL = envurl("STUDIO_BASE_URL")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "").strip() or "studio@localhost"
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Unset: e-mails (password resets) are printed on the console; else smtp://user:pass@host:587?tls=1, smtps://...
MAILERS = {"default": envmailer("STUDIO_EMAIL_URL")}  # Django 6.1's mailers (EMAIL_* settings are deprecated)

# --- The production web server (manage.py serve, README "Deploying") -------------------------------------------
STUDIO_WEB_WORKERS = envint("STUDIO_WEB_WORKERS", 4)
STUDIO_WEB_THREADS = envint("STUDIO_WEB_THREADS", 8)

# --- Health and metrics (studio/views/health.py, studio/metrics.py) --------------------------------------------
# /metrics answers requests from loopback, or with "Authorization: Bearer <token>" when this is set; else 404.
STUDIO_METRICS_TOKEN = os.environ.get("STUDIO_METRICS_TOKEN", "").strip()
# Where every process of this machine writes its counters (set by studio.bootstrap before Django starts).
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

# --- Logs: plain lines, or one JSON object per line (with the render's id and gateway task id) ---------------
STUDIO_LOG_FORMAT = envchoice("STUDIO_LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "studio.logging.RedactSecrets"},
        "render": {"()": "studio.logging.RenderFields"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "studio.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": STUDIO_LOG_FORMAT,
            # render_id and task_id only where they are printed: the filter looks a render's task id up
            "filters": ["render", "redact"] if STUDIO_LOG_FORMAT == "json" else ["redact"],
        },
    },
    "root": {"handlers": ["console"], "level": envchoice("STUDIO_LOG_LEVEL", "INFO", LOG_LEVELS)},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "django_q": {"level": "WARNING"},
    },
}
