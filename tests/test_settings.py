"""Settings only read; `bootstrap.prepare_data_dir()` makes the data directory and the key every process shares."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from studio import bootstrap
from studio.settings import envbool, envchoice, envfloat, envint

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_FILE = ROOT / "studio" / "settings.py"


def load_settings(monkeypatch, data_dir: Path, env: dict[str, str] | None = None) -> dict:
    """Execute studio/settings.py afresh, as a new process would, with only `env` set; its names as a dict."""
    for name in list(os.environ):
        if name.startswith(("STUDIO_", "BYTESPIKE_")) or name in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data_dir))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def run(*command: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a command from the project root in a fresh process, without SECRET_KEY or a settings module set."""
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**clean, "STUDIO_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the settings read, bootstrap writes ----------------------------------------------------------------------


def test_importing_the_settings_writes_nothing(monkeypatch, tmp_path):
    data = tmp_path / "fresh"
    settings = load_settings(monkeypatch, data)
    assert not data.exists()
    assert settings["DATA_DIR"] == data
    assert settings["SECRET_KEY"] == ""  # Django refuses an empty key the moment anything signs with it


def test_prepare_data_dir_makes_one_private_key_and_keeps_it(monkeypatch, tmp_path):
    data = tmp_path / "fresh"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    assert bootstrap.prepare_data_dir() == data
    key_file = data / "secret_key"
    key = key_file.read_text()
    assert len(key) >= 50
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (data / "staticfiles").is_dir()
    assert bootstrap.prepare_data_dir() == data
    assert key_file.read_text() == key
    assert sorted(p.name for p in data.iterdir()) == ["secret_key", "staticfiles"]  # no temporary file left
    assert load_settings(monkeypatch, data)["SECRET_KEY"] == key


def test_a_secret_key_from_the_environment_is_used_and_nothing_is_generated(monkeypatch, tmp_path):
    data = tmp_path / "fresh"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    given = "from-the-environment"
    monkeypatch.setenv("SECRET_KEY", given)
    bootstrap.prepare_data_dir()
    assert not (data / "secret_key").exists()
    assert load_settings(monkeypatch, data, {"SECRET_KEY": given})["SECRET_KEY"] == given


def test_processes_preparing_the_same_fresh_dir_at_once_share_one_key(monkeypatch, tmp_path):
    data = tmp_path / "fresh"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    start = threading.Barrier(8)
    keys: list[str] = []

    def prepare() -> None:
        start.wait()
        bootstrap.prepare_data_dir()
        keys.append(bootstrap.read_secret_key(data))

    threads = [threading.Thread(target=prepare) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1 and keys[0]
    assert sorted(p.name for p in data.iterdir()) == ["secret_key", "staticfiles"]


def test_manage_py_on_a_fresh_data_dir_makes_the_key_a_second_process_reads(tmp_path):
    data = tmp_path / "fresh"
    first = run(sys.executable, "manage.py", "check", data_dir=data)
    assert first.returncode == 0, first.stderr
    key = (data / "secret_key").read_text()
    show = "from django.conf import settings; print(settings.SECRET_KEY)"
    second = run(sys.executable, "manage.py", "shell", "--no-imports", "-c", show, data_dir=data)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == key


def test_the_wsgi_entry_point_prepares_the_data_dir(tmp_path):
    data = tmp_path / "fresh"
    started = run(sys.executable, "-c", "import studio.wsgi", data_dir=data)
    assert started.returncode == 0, started.stderr
    assert (data / "secret_key").read_text()


# --- every environment variable is parsed strictly --------------------------------------------------------------

# A value each parsed variable cannot take. Before, a typo in a yes/no read as "no", nan passed as a number, and a
# bad number stopped start-up with a bare ValueError that did not say which variable.
UNPARSABLE = {
    "DEBUG": "ture",
    "STUDIO_MANIFEST_STATIC": "maybe",
    "STUDIO_EMULATOR_PORT": "87a5",
    "STUDIO_GATEWAY_READ_TIMEOUT": "30s",
    "STUDIO_POLL_SCALE": "nan",
    "STUDIO_STALL_AFTER_SECONDS": "1h",
    "STUDIO_SUBMIT_MAX_ATTEMPTS": "five",
    "STUDIO_MAX_VIDEO_BYTES": "512MiB",
    "STUDIO_MAX_IMAGE_BYTES": "10 MB",
    "STUDIO_MAX_IMAGE_PIXELS": "4e7",
    "STUDIO_POLLER_RUN_SECONDS": "15.5",
    "STUDIO_POLLER_THREADS": "sixteen",
    "STUDIO_POLLER_SHARDS": "many",
    "STUDIO_DOWNLOAD_SLICE_SECONDS": "30s",
    "STUDIO_DOWNLOAD_STALL_SECONDS": "inf",
    "STUDIO_DAMAGED_DOWNLOADS": "three",
    "STUDIO_Q_WORKERS": "4x",
    "STUDIO_LOG_LEVEL": "LOUD",
    "DATABASE_URL": "postgress://studio@127.0.0.1:5432/studio",
    "STUDIO_S3_BUCKET": "Studio_Media",
    "STUDIO_S3_ENDPOINT_URL": "objects.example.com",
    "STUDIO_S3_PREFIX": "../other-app",
    "STUDIO_S3_ADDRESSING_STYLE": "sideways",
    "STUDIO_MEDIA_URL_SECONDS": "5m",
    # accounts (issue 11): invitations, e-mail, login throttling, whom to believe about the client's address
    "STUDIO_INVITATION_DAYS": "a week",
    "STUDIO_BASE_URL": "studio.example.com",
    "STUDIO_EMAIL_URL": "mailto://studio.example.com",
    "STUDIO_LOGIN_USER_FAILURES": "5x",
    "STUDIO_LOGIN_ADDRESS_FAILURES": "twenty",
    "STUDIO_LOGIN_LOCK_SECONDS": "1m",
    "STUDIO_LOGIN_LOCK_MAX_SECONDS": "15m",
    "STUDIO_LOGIN_FORGET_SECONDS": "1d",
    "STUDIO_RESET_EMAIL_LIMIT": "three",
    "STUDIO_RESET_ADDRESS_LIMIT": "-1",
    "STUDIO_RESET_WINDOW_SECONDS": "1h",
    # serving, HTTPS, metrics and logs (issue 11)
    "STUDIO_HTTPS": "yes please",
    "STUDIO_BEHIND_PROXY": "sometimes",
    "STUDIO_PROXY_COUNT": "0",
    "STUDIO_HSTS_SECONDS": "1y",
    "STUDIO_HSTS_PRELOAD": "si",
    "CSRF_TRUSTED_ORIGINS": "studio.example.com",
    "STUDIO_WEB_WORKERS": "four",
    "STUDIO_WEB_THREADS": "8.0",
    "STUDIO_LOG_FORMAT": "JSON",
}
# Taken as text: any value reads, and the system checks judge the ones that must make sense (E001-E003, W001).
FREE_TEXT = {
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "BYTESPIKE_API_KEY",
    "BYTESPIKE_BASE_URL",
    "BYTESPIKE_RESULT_HOSTS",
    "STUDIO_PUBLIC_URL",
    "STUDIO_Q_NAME",
    "REDIS_URL",
    "STUDIO_S3_REGION",
    "STUDIO_S3_ACCESS_KEY_ID",  # with the secret: half a pair is E031
    "STUDIO_S3_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "DEFAULT_FROM_EMAIL",
    "STUDIO_METRICS_TOKEN",
    "PROMETHEUS_MULTIPROC_DIR",  # set by studio.bootstrap to a folder of the data dir
}


def test_every_variable_the_settings_read_is_classified_here():
    source = SETTINGS_FILE.read_text()
    read = set(re.findall(r'(?:env\w+\(|os\.environ\.get\(|os\.environ\[)\s*"([A-Z0-9_]+)"', source))
    assert read == UNPARSABLE.keys() | FREE_TEXT, "add the new variable to UNPARSABLE or FREE_TEXT"


@pytest.mark.parametrize("name", sorted(UNPARSABLE))
def test_a_value_that_cannot_be_parsed_stops_start_up_naming_it(monkeypatch, tmp_path, name):
    with pytest.raises(ImproperlyConfigured) as refused:
        load_settings(monkeypatch, tmp_path, {"SECRET_KEY": "k", name: UNPARSABLE[name]})
    assert f"{name}={UNPARSABLE[name]!r}" in str(refused.value)


def test_a_database_url_error_does_not_show_the_password(monkeypatch, tmp_path):
    url = "postgress://studio:hunter2@127.0.0.1:5432/studio"
    with pytest.raises(ImproperlyConfigured) as refused:
        load_settings(monkeypatch, tmp_path, {"SECRET_KEY": "k", "DATABASE_URL": url})
    assert "hunter2" not in str(refused.value)
    assert "postgress://studio:***@127.0.0.1:5432/studio" in str(refused.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        (" ON ", True),
        ("0", False),
        ("false", False),
        ("NO", False),
    ],
)
def test_yes_no_spellings_read_as_before(monkeypatch, value, expected):
    monkeypatch.setenv("STUDIO_FLAG", value)
    assert envbool("STUDIO_FLAG", default=not expected) is expected


@pytest.mark.parametrize("value", ["", "   "])
def test_unset_or_empty_values_take_the_default(monkeypatch, value):
    monkeypatch.setenv("STUDIO_VALUE", value)
    assert envbool("STUDIO_VALUE", default=True) is True
    assert envint("STUDIO_VALUE", 7) == 7
    assert envfloat("STUDIO_VALUE", 0.5) == 0.5
    assert envchoice("STUDIO_VALUE", "INFO", ("INFO", "DEBUG")) == "INFO"


@pytest.mark.parametrize(
    ("read", "value"),
    [
        (lambda: envbool("STUDIO_VALUE"), "y"),
        (lambda: envint("STUDIO_VALUE", 1), "1.0"),
        (lambda: envfloat("STUDIO_VALUE", 1.0), "inf"),
        (lambda: envfloat("STUDIO_VALUE", 1.0), "1,5"),
        (lambda: envchoice("STUDIO_VALUE", "INFO", ("INFO",)), "info"),
    ],
)
def test_each_helper_refuses_what_it_cannot_parse(monkeypatch, read, value):
    monkeypatch.setenv("STUDIO_VALUE", value)
    with pytest.raises(ImproperlyConfigured, match="STUDIO_VALUE="):
        read()


def test_numbers_parse_as_before(monkeypatch):
    monkeypatch.setenv("STUDIO_VALUE", " 42 ")
    assert envint("STUDIO_VALUE", 1) == 42
    assert envfloat("STUDIO_VALUE", 1.0) == 42.0
    monkeypatch.setenv("STUDIO_VALUE", "0.25")
    assert envfloat("STUDIO_VALUE", 1.0) == 0.25


def test_the_documented_defaults_are_unchanged(monkeypatch, tmp_path):
    settings = load_settings(monkeypatch, tmp_path, {"SECRET_KEY": "k"})
    assert settings["DEBUG"] is False
    assert settings["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert settings["BYTESPIKE_BASE_URL"] == "http://127.0.0.1:8765"
    assert settings["GATEWAY_TIMEOUT"]["read"] == 30.0
    assert settings["STUDIO_STALL_AFTER_SECONDS"] == 3600
    assert settings["STUDIO_SUBMIT_MAX_ATTEMPTS"] == 5
    assert settings["STUDIO_POLLER_THREADS"] == 16
    assert settings["STUDIO_POLLER_SHARDS"] == 16
    assert settings["Q_CLUSTER"]["workers"] == 4
    assert settings["LOGGING"]["root"]["level"] == "INFO"
    assert settings["DATABASES"]["default"]["NAME"] == str(tmp_path / "studio.sqlite3")


def test_manage_py_refuses_to_start_on_a_typo(tmp_path):
    started = run(sys.executable, "manage.py", "check", data_dir=tmp_path, DEBUG="ture")
    assert started.returncode != 0
    assert "ImproperlyConfigured: DEBUG='ture' cannot be read" in started.stderr


# --- system checks (studio/checks.py) ---------------------------------------------------------------------------


def studio_check_ids() -> list[str]:
    from studio.checks import check_gateway_settings

    return [message.id for message in check_gateway_settings()]


def test_the_default_configuration_passes_the_studio_checks():
    assert studio_check_ids() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"BYTESPIKE_BASE_URL": "ftp://gateway.example", "USING_EMULATOR": False}, "studio.E001"),
        ({"BYTESPIKE_BASE_URL": "http://gateway.example", "USING_EMULATOR": False}, "studio.E002"),
        ({"BYTESPIKE_RESULT_HOSTS": ["cdn.example.com/clips"]}, "studio.E003"),
        ({"Q_CLUSTER": {"timeout": 150, "retry": 150}}, "studio.E004"),
        ({"STUDIO_POLLER_RUN_SECONDS": 60}, "studio.E005"),
        ({"STUDIO_POLL_SCALE": 1.5}, "studio.E006"),
        ({"STUDIO_POLLER_SHARDS": 0}, "studio.E020"),
        ({"DEBUG": False, "ALLOWED_HOSTS": []}, "studio.E007"),
        ({"BYTESPIKE_BASE_URL": "https://gateway.example", "USING_EMULATOR": True}, "studio.W001"),
    ],
)
def test_each_inconsistent_setting_is_caught(settings, changes, expected):
    for name, value in changes.items():
        if name == "Q_CLUSTER":
            value = {**settings.Q_CLUSTER, **value}
        setattr(settings, name, value)
    assert studio_check_ids() == [expected]


@pytest.mark.django_db  # Django's own model checks ask the database what it supports
def test_the_studio_checks_run_with_djangos_own(settings):
    """Registered when the app loads, so `manage.py check` (and runserver, migrate, qcluster) stop on them."""
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.BYTESPIKE_BASE_URL = "ftp://gateway.example"
    with pytest.raises(SystemCheckError, match="studio.E001"):
        call_command("check")


# --- HTTPS by configuration (issue 11) --------------------------------------------------------------------------

STRONG_KEY = (
    "k3y-" + "x7Qp9vLm2Rt8Wz4Yb6Nc1Hd5Jf0Gs3Ka" * 2
)  # 50+ characters, many distinct: check --deploy's idea
PRODUCTION = {
    "STUDIO_HTTPS": "1",
    "SECRET_KEY": STRONG_KEY,
    "DEBUG": "0",
    "ALLOWED_HOSTS": "studio.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://studio.example.com",
    "STUDIO_EMAIL_URL": "smtp://studio@mail.example.com:587?tls=1",  # Django 6.1: console mail is mail.E001
}


def test_without_studio_https_nothing_insists_on_https(monkeypatch, tmp_path):
    settings = load_settings(monkeypatch, tmp_path, {"SECRET_KEY": "k"})
    assert settings["STUDIO_HTTPS"] is False and settings["STUDIO_BEHIND_PROXY"] is False
    for name in (
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SESSION_COOKIE_SECURE",
        "SECURE_PROXY_SSL_HEADER",
    ):
        assert name not in settings
    assert settings["CSRF_TRUSTED_ORIGINS"] == []


def test_studio_https_turns_on_hsts_the_redirect_secure_cookies_and_the_proxy_header(monkeypatch, tmp_path):
    settings = load_settings(monkeypatch, tmp_path, PRODUCTION)
    assert settings["SECURE_SSL_REDIRECT"] is True
    assert settings["SECURE_HSTS_SECONDS"] == 31_536_000
    assert settings["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert settings["SECURE_HSTS_PRELOAD"] is False
    assert settings["SESSION_COOKIE_SECURE"] is True and settings["CSRF_COOKIE_SECURE"] is True
    assert settings["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert settings["STUDIO_BEHIND_PROXY"] is True
    assert settings["CSRF_TRUSTED_ORIGINS"] == ["https://studio.example.com"]


def test_https_without_a_proxy_trusts_no_forwarded_header(monkeypatch, tmp_path):
    settings = load_settings(monkeypatch, tmp_path, {**PRODUCTION, "STUDIO_BEHIND_PROXY": "0"})
    assert settings["STUDIO_BEHIND_PROXY"] is False
    assert "SECURE_PROXY_SSL_HEADER" not in settings
    assert settings["SECURE_SSL_REDIRECT"] is True


def test_trusted_origins_are_a_comma_list_each_with_its_scheme(monkeypatch, tmp_path):
    given = " https://studio.example.com, http://localhost:18300 "
    settings = load_settings(monkeypatch, tmp_path, {"SECRET_KEY": "k", "CSRF_TRUSTED_ORIGINS": given})
    assert settings["CSRF_TRUSTED_ORIGINS"] == ["https://studio.example.com", "http://localhost:18300"]
    for bad in ("https://studio.example.com/path", "ftp://studio.example.com", "https://"):
        with pytest.raises(ImproperlyConfigured, match="CSRF_TRUSTED_ORIGINS="):
            load_settings(monkeypatch, tmp_path, {"SECRET_KEY": "k", "CSRF_TRUSTED_ORIGINS": bad})


def check_deploy(data_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`manage.py check --deploy` as production runs it: without the test suite's DJANGO_ALLOW_ASYNC_UNSAFE."""
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    clean.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={**clean, "STUDIO_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_documented_production_environment(tmp_path):
    checked = check_deploy(tmp_path, PRODUCTION)
    assert checked.returncode == 0, checked.stderr
    assert "System check identified no issues" in checked.stdout, checked.stdout + checked.stderr


def test_check_deploy_names_what_is_missing_without_studio_https(tmp_path):
    """What the issue saw before STUDIO_HTTPS existed: the same environment but for it warns four times."""
    checked = run(
        sys.executable,
        "manage.py",
        "check",
        "--deploy",
        data_dir=tmp_path,
        **{**PRODUCTION, "STUDIO_HTTPS": "0"},
    )
    found = set(re.findall(r"security\.W\d+", checked.stdout + checked.stderr))
    assert found == {"security.W004", "security.W008", "security.W012", "security.W016"}


REQUESTS = """
from django.test import Client
client = Client()
proxied = client.get("/login/", headers={"X-Forwarded-Proto": "https"})
plain = client.get("/login/")
health = client.get("/healthz")
print(proxied.status_code, proxied.headers.get("Strict-Transport-Security"))
print(plain.status_code, plain.headers.get("Location"))
print(health.status_code)
"""


def test_behind_the_proxy_https_requests_get_hsts_and_plain_http_is_redirected(tmp_path):
    # SQLite in its own data dir whatever the suite runs on; plain static storage (no collectstatic here)
    env = {**PRODUCTION, "ALLOWED_HOSTS": "testserver", "DATABASE_URL": "", "STUDIO_MANIFEST_STATIC": "0"}
    migrated = run(sys.executable, "manage.py", "migrate", "-v0", data_dir=tmp_path, **env)
    assert migrated.returncode == 0, migrated.stderr
    shell = run(
        sys.executable, "manage.py", "shell", "--no-imports", "-c", REQUESTS, data_dir=tmp_path, **env
    )
    assert shell.returncode == 0, shell.stderr
    proxied, plain, health = shell.stdout.strip().splitlines()[-3:]
    assert proxied == "200 max-age=31536000; includeSubDomains"
    assert plain == "301 https://testserver/login/"
    assert health == "200"  # a load balancer probes the upstream over plain http
