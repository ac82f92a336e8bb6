"""Submit renders from scripts: validated and queued exactly as the studio form does it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError

from studio import access
from studio.actions.renders import do_submit_variants
from studio.catalog import MODELS, SORA2
from studio.forms import RenderForm
from studio.models import TERMINAL, Render, Team
from studio.money import ledger
from studio.serializers import render_as_dict

# JSONL keys accepted per line, mapped to form fields (the same names as the command's options).
LINE_KEYS = {
    "prompt": "prompt",
    "model": "model",
    "duration": "duration_seconds",
    "duration_seconds": "duration_seconds",
    "size": "size",
    "resolution": "resolution",
    "aspect": "aspect_ratio",
    "aspect_ratio": "aspect_ratio",
    "seed": "seed",
    "style": "style_preset",
    "style_preset": "style_preset",
    "image": "image",
    "variants": "variants",
}


class Command(BaseCommand):
    help = (
        "Validate and queue a render (or one per line of a JSONL file) and print its id; with --json or --wait, "
        "print exactly one JSON document instead (an object, or an array with --from)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("prompt", nargs="?", help="the prompt (omit with --from)")
        parser.add_argument("--user", required=True, help="who renders (a username)")
        parser.add_argument(
            "--team", help="render into this team (its slug; default: the user's active team)"
        )
        parser.add_argument("--model", choices=list(MODELS), default=SORA2)
        parser.add_argument("--duration", type=int, help="seconds (default: the model's default)")
        parser.add_argument("--size", help="sora2: 1280x720 or 1920x1080")
        parser.add_argument("--resolution", help="sora-2-pro: 720p or 1080p")
        parser.add_argument("--aspect", help="sora-2-pro: 16:9, 9:16 or 1:1")
        parser.add_argument("--seed", type=int, help="sora-2-pro: a seed for reproducibility")
        parser.add_argument("--style", help="sora-2-pro: cinematic, anime, documentary or none")
        parser.add_argument("--image", type=Path, help="init image (PNG, JPEG or WebP)")
        parser.add_argument(
            "--variants",
            type=int,
            help="render N takes (1-4) of the prompt as one group, as Render ×N does; with --seed, consecutive seeds",
        )
        parser.add_argument("--from", dest="from_file", type=Path, help="a JSONL file: one render per line")
        parser.add_argument(
            "--wait", action="store_true", help="block until each render ends; print it as JSON"
        )
        parser.add_argument(
            "--json", action="store_true", help="print the queued render as JSON (implied by --wait)"
        )
        parser.add_argument("--timeout", type=float, default=1800, help="seconds --wait waits at most")

    def handle(self, *args, **options) -> None:
        # stdout is the command's answer (ids, or one JSON document): django-q2's own lines ("Enqueued …") go to
        # stderr through the logging config, and only when asked for with -v 2.
        logging.getLogger("django-q").setLevel(logging.INFO if options["verbosity"] >= 2 else logging.WARNING)
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        team = self._team(user, options["team"]) if options["team"] else None
        if options["from_file"]:
            if options["prompt"]:
                raise CommandError("Give a prompt or --from, not both.")
            requests = list(self._read_lines(options["from_file"]))
        elif options["prompt"]:
            requests = [self._from_options(options)]
        else:
            raise CommandError("Give a prompt, or --from FILE.jsonl.")
        forms = [(where, self._bind(fields, image, where)) for where, fields, image in requests]
        where_to = {} if team is None else {"team": team}
        renders: list[Render] = []
        for where, form in forms:
            try:
                made = do_submit_variants(user, form.order(), **where_to)
            except ledger.BudgetExceeded as refused:
                raise CommandError(
                    f"{where}: refused, nothing sent: {refused.message} ({len(renders)} submitted before it.)"
                ) from refused
            for render in made:  # the variants of one line, first to last: one id a line
                renders.append(render)
                if not (options["json"] or options["wait"]):
                    self.stdout.write(str(render.pk))
        if options["json"] or options["wait"]:
            wait = options["wait"]
            printed = [self._wait(r, options["timeout"]) if wait else render_as_dict(r) for r in renders]
            # One JSON document: the render's object, or an array of them (a file, or variants).
            single = len(printed) == 1 and not options["from_file"]
            self.stdout.write(json.dumps(printed[0] if single else printed, indent=2))

    def _team(self, user, slug: str) -> Team:
        """The team by slug, if the user is in it (the same rule as the studio's team switcher)."""
        team = Team.objects.filter(slug=slug).first()
        if team is None or access.membership(user, team.pk) is None:
            raise CommandError(f"{user.get_username()} is not in a team called {slug!r}.")
        return team

    def _from_options(self, options: dict) -> tuple[str, dict, Path | None]:
        fields = {
            "prompt": options["prompt"],
            "model": options["model"],
            "duration_seconds": options["duration"],
            "size": options["size"],
            "resolution": options["resolution"],
            "aspect_ratio": options["aspect"],
            "seed": options["seed"],
            "style_preset": options["style"],
            "variants": options["variants"],
        }
        return "arguments", fields, options["image"]

    def _read_lines(self, path: Path):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}") from error
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise CommandError(f"{path}:{number}: not JSON ({error.msg}).") from error
            if not isinstance(item, dict):
                raise CommandError(f"{path}:{number}: each line must be a JSON object.")
            unknown = set(item) - set(LINE_KEYS)
            if unknown:
                raise CommandError(f"{path}:{number}: unknown keys {', '.join(sorted(unknown))}.")
            # Only strings and whole numbers: a list or object would otherwise be bound as its repr.
            odd = sorted(
                k
                for k, v in item.items()
                if v is not None
                and (isinstance(v, bool) or not isinstance(v, str if k == "image" else str | int))
            )
            if odd:
                raise CommandError(f"{path}:{number}: {', '.join(odd)} must be a string or a whole number.")
            fields = {LINE_KEYS[k]: v for k, v in item.items() if LINE_KEYS[k] != "image"}
            image = Path(item["image"]) if item.get("image") else None
            yield f"{path}:{number}", fields, image

    def _bind(self, fields: dict, image: Path | None, where: str) -> RenderForm:
        fields = {"model": SORA2, **{k: v for k, v in fields.items() if v is not None}}
        model = fields["model"]
        if model in MODELS and "duration_seconds" not in fields:
            fields["duration_seconds"] = MODELS[model].default_duration
        files = {}
        if image is not None:
            try:
                files["init_image"] = SimpleUploadedFile(image.name, image.read_bytes())
            except OSError as error:
                raise CommandError(f"{where}: cannot read the image {image}: {error.strerror}") from error
        form = RenderForm({k: str(v) for k, v in fields.items()}, files)
        if not form.is_valid():
            problems = "; ".join(
                f"{name if name != '__all__' else 'form'}: {' '.join(str(error) for error in errors)}"
                for name, errors in form.errors.items()
            )
            raise CommandError(f"{where}: {problems}")
        return form

    def _wait(self, render: Render, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            render.refresh_from_db()
            if render.state in TERMINAL:
                return render_as_dict(render)
            time.sleep(0.5)
        raise CommandError(
            f"Render {render.pk} is still {render.state} after {timeout:.0f} s (is the worker running?)."
        )
