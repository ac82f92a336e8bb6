"""Run the whole studio in one terminal: web server, django-q2 cluster and (without an API key) the emulator.

`make run` calls this. Ctrl-C stops all three; if one of them dies, the others are stopped too. Before starting
anything it checks that the web server's and the emulator's ports are free, and says which one is not.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port already (a port left in TIME_WAIT is free, as for runserver)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _host_port(addr: str) -> tuple[str, int]:
    """runserver's addrport ("8000", "0.0.0.0:8000", "[::1]:8000") as a host and a port."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port)
    except ValueError:
        raise CommandError(f"--addr must be HOST:PORT or PORT, not {addr!r}.") from None


class Command(BaseCommand):
    help = "Start the web server, the worker cluster and the gateway emulator; Ctrl-C stops them all."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="where the web server listens")
        parser.add_argument(
            "--emulator-speed", default="1.0", help="emulator speed factor (2 = twice as fast)"
        )

    def handle(self, *args, **options) -> None:
        python = sys.executable
        commands = {"web": [python, "manage.py", "runserver", options["addr"], "--noreload"]}
        commands["worker"] = [python, "manage.py", "qcluster"]
        ports = {"the web server": _host_port(options["addr"])}
        if settings.USING_EMULATOR:
            port = urlsplit(settings.BYTESPIKE_BASE_URL).port or settings.EMULATOR_PORT
            ports["the gateway emulator"] = ("127.0.0.1", port)
            commands["emulator"] = [
                python,
                "manage.py",
                "emulate_gateway",
                "--port",
                str(port),
                "--speed",
                options["emulator_speed"],
            ]
        busy = [
            f"{host}:{port} is already in use (wanted by {name})"
            for name, (host, port) in ports.items()
            if port_in_use(host, port)
        ]
        if busy:  # say so before anything starts or claims the studio is up
            raise CommandError(
                "; ".join(busy) + ". Stop what holds it, or pick another port (--addr, STUDIO_EMULATOR_PORT)."
            )
        processes: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        # Ctrl-C, a closed terminal or a kill all stop the three (SIGINT is ignored when started in the background).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, stop)
        try:
            for name, command in commands.items():
                processes[name] = subprocess.Popen(command)
            self.stdout.write(
                f"Studio at http://{options['addr']}/  (Ctrl-C stops web server, worker and emulator)"
            )
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with {process.returncode}; stopping the others.")
                        stopping = True
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + 10
            for process in processes.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
            self.stdout.write("Stopped.")
