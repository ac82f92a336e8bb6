"""Run the bytespike gateway emulator in the foreground: `python manage.py emulate_gateway`."""

from __future__ import annotations

import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from studio.emulator import Emulator, EmulatorConfig


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Serve the bytespike video gateway emulator (both protocols, real MP4s) until Ctrl-C or SIGTERM."
    requires_system_checks: list[str] = []  # it touches no models, URLs or templates

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=getattr(settings, "EMULATOR_PORT", 8765))
        parser.add_argument("--speed", type=float, default=1.0, help="Divides every queue/render timing.")
        parser.add_argument(
            "--blocked-words",
            default="gore,forbidden,nsfw",
            help="Comma-separated words that get a prompt blocked (451); empty for none.",
        )
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="Where clips and tasks.json live (default: STUDIO_DATA_DIR/emulator).",
        )
        parser.add_argument("--url-ttl", type=float, default=86400.0, help="Result URL lifetime in seconds.")
        parser.add_argument(
            "--api-key", default=None, help="Accept only this credential (default: any non-empty one)."
        )
        parser.add_argument("--fps", type=int, default=24)
        parser.add_argument(
            "--bill-factor", type=float, default=1.0, help="Billed credits = estimate x this factor."
        )

    def handle(self, *args, **options) -> None:
        if options["speed"] <= 0:
            raise CommandError("--speed must be positive")
        if options["fps"] <= 0:
            raise CommandError("--fps must be positive")
        words = tuple(w.strip() for w in (options["blocked_words"] or "").split(",") if w.strip())
        config = EmulatorConfig(
            host=options["host"],
            port=options["port"],
            speed=options["speed"],
            blocked_words=words,
            api_key=options["api_key"] or None,
            url_ttl_seconds=options["url_ttl"],
            data_dir=options["data_dir"] or Path(settings.DATA_DIR) / "emulator",
            fps=options["fps"],
            bill_factor=options["bill_factor"],
        )
        emulator = Emulator(config)
        try:
            emulator.bind()
        except OSError as exc:
            raise CommandError(f"Cannot listen on {config.host}:{config.port}: {exc}") from exc
        signal.signal(signal.SIGTERM, _raise_interrupt)
        self.stdout.write(f"Gateway emulator listening on {emulator.base_url}")
        self.stdout.flush()
        emulator.serve_forever()
        self.stdout.write("Gateway emulator stopped.")
