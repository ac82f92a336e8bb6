"""Run the whole studio in one terminal: web server, django-q2 cluster and (without an API key) the emulator.

`make run` calls this with Django's development server; `manage.py serve` (`make serve`) with gunicorn. Both
check every port first and refuse, saying which, before starting anything. Ctrl-C stops all of them; if one of
them dies, the others are stopped too.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, OutputWrapper


def split_addr(addr: str) -> tuple[str, int]:
    """ "127.0.0.1:8000" (or "[::1]:8000", or "8000") as (host, port)."""
    host, _, port = addr.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"{addr!r} is not an address with a port (e.g. 127.0.0.1:8000).")
    return host.strip("[]") or "127.0.0.1", int(port)


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on host:port (or the address cannot be bound for another reason)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers will bind: SO_REUSEADDR lets a port in TIME_WAIT be reused, not one with a listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def emulator_command(speed: str) -> tuple[list[str], int] | None:
    """The emulator's command line and port when no API key is configured; None with a real gateway."""
    if not settings.USING_EMULATOR:
        return None
    port = urlsplit(settings.BYTESPIKE_BASE_URL).port or settings.EMULATOR_PORT
    command = [sys.executable, "manage.py", "emulate_gateway", "--port", str(port), "--speed", speed]
    return command, port


def refuse_taken_ports(ports: dict[str, tuple[str, int]]) -> None:
    """Stop with a clear message, before anything starts, if any of the named ports is in use, or wanted twice
    (`make run PORT=8765` would give the web server the emulator's port: whichever started second failed)."""
    wanted: dict[int, str] = {}
    for name, (_, port) in ports.items():
        if port in wanted:
            raise CommandError(
                f"Cannot start: port {port} is wanted by both {wanted[port]} and {name}. Pick another port "
                "(make run PORT=N, make serve PORT=N, --addr, STUDIO_EMULATOR_PORT)."
            )
        wanted[port] = name
    busy = [
        f"{host}:{port} is already in use (wanted by {name})"
        for name, (host, port) in ports.items()
        if port_taken(host, port)
    ]
    if busy:  # say so before anything starts or claims the studio is up
        raise CommandError(
            "Cannot start: " + "; ".join(busy) + ". Stop what holds it, or pick another port "
            "(make run PORT=N, make serve PORT=N, --addr, STUDIO_EMULATOR_PORT)."
        )


def supervise(
    commands: dict[str, list[str]], banner: str, stdout: OutputWrapper, stderr: OutputWrapper
) -> int:
    """Start every command, print `banner`, and stop them all on Ctrl-C, SIGTERM, SIGHUP or when one exits.

    Returns 0 when stopped by a signal, 1 when a process exited on its own.
    """
    processes: dict[str, subprocess.Popen] = {}
    stopping = False
    failed = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    # Ctrl-C, a closed terminal or a kill all stop them (SIGINT is ignored when started in the background).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        for name, command in commands.items():
            processes[name] = subprocess.Popen(command)
        stdout.write(banner)
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None and not stopping:
                    stderr.write(f"{name} exited with {process.returncode}; stopping the others.")
                    stopping = failed = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 30
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        stdout.write("Stopped.")
    return 1 if failed else 0


class Command(BaseCommand):
    help = "Start the development web server, the worker cluster and the gateway emulator; Ctrl-C stops them all."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="where the web server listens")
        parser.add_argument(
            "--emulator-speed", default="1.0", help="emulator speed factor (2 = twice as fast)"
        )

    def handle(self, *args, **options) -> None:
        python = sys.executable
        host, port = split_addr(options["addr"])
        ports = {"the web server": (host, port)}
        commands = {"web": [python, "manage.py", "runserver", options["addr"], "--noreload"]}
        commands["worker"] = [python, "manage.py", "qcluster"]
        emulator = emulator_command(options["emulator_speed"])
        if emulator is not None:
            commands["emulator"], emulator_port = emulator
            ports["the gateway emulator"] = ("127.0.0.1", emulator_port)
        refuse_taken_ports(ports)
        banner = f"Studio at http://{options['addr']}/  (Ctrl-C stops web server, worker and emulator)"
        if supervise(commands, banner, self.stdout, self.stderr):
            sys.exit(1)
