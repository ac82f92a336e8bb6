"""Shared fixtures: people with roles, the gateway emulator, a queue drainer, and the loopback guard."""

from __future__ import annotations

import importlib
import ipaddress
import os
import socket

import pytest

SCALED_OUT = os.environ.get("STUDIO_SCALED_OUT") == "1"
# In CI a test that would skip for a missing service (PostgreSQL, Redis, Chromium) fails instead.
REQUIRE_SERVICES = os.environ.get("STUDIO_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true"


# --- no test request leaves loopback -------------------------------------------------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else None
    if host is None:
        return True  # AF_UNIX paths
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded(real):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise AssertionError(f"A test tried to reach {address!r}: tests may only talk to loopback.")
        return real(self, address)

    return connect


def pytest_configure(config) -> None:
    socket.socket.connect = _guarded(_real_connect)
    socket.socket.connect_ex = _guarded(_real_connect_ex)


# --- services: skip with a reason locally, fail in CI ----------------------------------------------------------


def service_missing(reason: str) -> None:
    """Skip (or, in CI, fail) a test that needs a service this machine lacks."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (CI requires it)")
    pytest.skip(reason)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def scaled_out_services():
    """In the PostgreSQL + Redis run, both must answer before anything else runs."""
    if SCALED_OUT:
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379)):
            if not _reachable("127.0.0.1", port):
                service_missing(f"{name} is not running on 127.0.0.1:{port}")


# --- the gateway emulator --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """One emulator for the session, fast: a 5 s clip completes in well under a second of waiting."""
    from studio.gateway.emulator import Emulator, EmulatorConfig

    config = EmulatorConfig(speed=40.0, fps=8, data_dir=tmp_path_factory.mktemp("emulator"))
    emu = Emulator(config).start()
    yield emu
    emu.stop()


@pytest.fixture
def gateway(emulator, settings, tmp_path):
    """Point the studio at the test emulator, keep clips in a temp dir, and shrink the poll cadence."""
    emulator.clear_faults()
    settings.BYTESPIKE_BASE_URL = emulator.base_url
    settings.GATEWAY_ALLOWED_RESULT_HOSTS = ["127.0.0.1"]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STUDIO_POLL_SCALE = 0.02
    yield emulator
    emulator.clear_faults()


# --- people --------------------------------------------------------------------------------------------------


@pytest.fixture
def make_user(django_user_model):
    def make(username: str, **extra):
        return django_user_model.objects.create_user(username=username, password="pw-" + username, **extra)

    return make


@pytest.fixture
def owner(make_user):
    return make_user("olivia")


@pytest.fixture
def outsider(make_user):
    return make_user("oscar")


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def outsider_client(outsider):
    from django.test import Client

    other = Client()
    other.force_login(outsider)
    return other


HTMX = {"HTTP_HX_REQUEST": "true"}


# --- the task queue --------------------------------------------------------------------------------------------


class Queue:
    """Runs what the studio enqueued, in order, as a worker would (optionally each task twice)."""

    def __init__(self) -> None:
        from django_q.brokers import get_broker

        self.broker = get_broker()
        self.broker.purge_queue()
        self.ran: list[tuple[str, tuple]] = []

    def pending(self) -> list[dict]:
        """The queued task packages, without running them."""
        from django_q.signing import SignedPackage

        items = []
        while self.broker.queue_size():
            for ack_id, package in self.broker.dequeue() or []:
                items.append(SignedPackage.loads(package))
                self.broker.acknowledge(ack_id)
        return items

    def run(self, twice: bool = False, limit: int = 200) -> list[tuple[str, object]]:
        """Run queued tasks (and the tasks they queue) until the queue is empty."""
        results = []
        for _ in range(limit):
            items = self.pending()
            if not items:
                return results
            for task in items:
                func = task["func"]
                if isinstance(func, str):
                    module, name = func.rsplit(".", 1)
                    func = getattr(importlib.import_module(module), name)
                for _ in range(2 if twice else 1):
                    results.append((func.__name__, func(*task["args"], **task["kwargs"])))
                    self.ran.append((func.__name__, task["args"]))
        raise AssertionError("the queue never emptied")

    def names(self) -> list[str]:
        return [t["func"].rsplit(".", 1)[-1] for t in self.pending()]


@pytest.fixture
def queue(transactional_db):
    return Queue()
