"""The production stack on this machine: gunicorn, the django-q2 cluster and (without an API key) the emulator.

`make serve` runs this after `migrate` and `collectstatic`. gunicorn runs `STUDIO_WEB_WORKERS` processes of
`STUDIO_WEB_THREADS` threads each (gthread: a clip streamed to one browser holds a thread, not a whole process);
whitenoise serves the hashed, compressed static files from inside it. Every port is checked first: one in use
stops start-up with a message saying which. The metrics directory is cleared first (README "Health and metrics"):
no process of this machine's studio is running yet, so nothing counts there. Ctrl-C or SIGTERM stops all of them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from studio.management.commands.devstack import emulator_command, refuse_taken_ports, split_addr, supervise


def gunicorn_command(addr: str, workers: int, threads: int, log_config: Path | None) -> list[str]:
    """gunicorn serving studio.wsgi (which prepares the data dir), as the README's service unit runs it."""
    command = [
        *(sys.executable, "-m", "gunicorn", "studio.wsgi:application"),
        *("--bind", addr, "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads)),
        # Below the proxy's own timeouts; a slow clip download is many requests, each short.
        *("--timeout", "60", "--graceful-timeout", "20"),
        "--no-control-socket",  # its default path is one per machine: two studios would share it
    ]
    if log_config is not None:
        command += ["--log-config-json", str(log_config)]
    return command


def gunicorn_log_config(folder: Path) -> Path:
    """With STUDIO_LOG_FORMAT=json, gunicorn's own lines (start, workers, errors) as JSON too."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "studio.logging.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {"gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    }
    path = folder / "gunicorn-logging.json"
    path.write_text(json.dumps(config))
    return path


def clear_metrics() -> None:
    """Remove the counters every process of a previous run left (README "Health and metrics")."""
    folder = Path(settings.PROMETHEUS_MULTIPROC_DIR) if settings.PROMETHEUS_MULTIPROC_DIR else None
    if folder is not None and folder.is_dir():
        for file in folder.glob("*.db"):
            file.unlink(missing_ok=True)


class Command(BaseCommand):
    help = "Serve the studio for real: gunicorn, the worker cluster and (without an API key) the emulator."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="where gunicorn listens (host:port)")
        parser.add_argument("--workers", type=int, default=settings.STUDIO_WEB_WORKERS, help="web processes")
        parser.add_argument("--threads", type=int, default=settings.STUDIO_WEB_THREADS, help="threads each")
        parser.add_argument("--no-cluster", action="store_true", help="web only (the cluster runs elsewhere)")
        parser.add_argument(
            "--emulator-speed", default="1.0", help="emulator speed factor (2 = twice as fast)"
        )

    def handle(self, *args, **options) -> None:
        host, port = split_addr(options["addr"])
        ports = {"the web server": (host, port)}
        emulator = emulator_command(options["emulator_speed"])
        if emulator is not None:
            ports["the gateway emulator"] = ("127.0.0.1", emulator[1])
        refuse_taken_ports(ports)
        manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
        if "Manifest" in settings.STORAGES["staticfiles"]["BACKEND"] and not manifest.exists():
            raise CommandError(
                "Run `manage.py collectstatic` first (make serve does): no static file manifest."
            )
        if settings.DEBUG:
            self.stderr.write("DEBUG is on: never serve the studio to others like that.")

        json_logs = settings.STUDIO_LOG_FORMAT == "json"
        log_config = gunicorn_log_config(Path(settings.DATA_DIR)) if json_logs else None
        web = gunicorn_command(options["addr"], options["workers"], options["threads"], log_config)
        commands = {"web": web}
        if not options["no_cluster"]:
            commands["worker"] = [sys.executable, "manage.py", "qcluster"]
            clear_metrics()  # with --no-cluster this machine's cluster may be counting there right now
        if emulator is not None:
            commands["emulator"] = emulator[0]
        banner = (
            f"Studio served by gunicorn ({options['workers']} workers x {options['threads']} threads) at "
            f"http://{options['addr']}/  (Ctrl-C stops everything)"
        )
        if supervise(commands, banner, self.stdout, self.stderr):
            sys.exit(1)
