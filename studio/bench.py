"""`make bench`: how well one poller keeps hundreds of in-flight renders on cadence, page render times, and what
the full decode check costs on a 20 s 1080p clip.

Runs against a fresh SQLite database in STUDIO_DATA_DIR and an in-process emulator at the real cadence
(2 s polls). It measures, for every poll, how late it was against the render's scheduled `next_poll_at`.
Usage: python -m studio.bench [--renders 300] [--speed 1.0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from studio.bootstrap import prepare_data_dir


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    data = Path(os.environ.setdefault("STUDIO_DATA_DIR", tempfile.mkdtemp(prefix="studio-bench-")))
    (data / "studio.sqlite3").unlink(missing_ok=True)
    prepare_data_dir()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def bench_poller(renders: int, speed: float) -> dict:
    """Submit `renders` drafts, run one poller until all finished at the gateway, report poll lateness."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.utils import timezone

    from studio.actions.renders import do_submit_render
    from studio.emulator import Emulator, EmulatorConfig
    from studio.forms import RenderForm
    from studio.lifecycle import poller, submit, transitions
    from studio.models import AT_GATEWAY, Render, State

    emulator = Emulator(EmulatorConfig(speed=speed, fps=4, data_dir=Path(tempfile.mkdtemp()))).start()
    settings.BYTESPIKE_BASE_URL = emulator.base_url
    settings.GATEWAY_ALLOWED_RESULT_HOSTS = ["127.0.0.1"]
    user, _ = get_user_model().objects.get_or_create(username="bench")
    lateness: list[float] = []
    real_poll = poller.poll_step

    def measured(render_id, poll_client):
        due = Render.objects.filter(pk=render_id).values_list("next_poll_at", flat=True).first()
        if due is not None:
            lateness.append((timezone.now() - due).total_seconds())
        return real_poll(render_id, poll_client)

    submitting = threading.Event()
    submitting.set()

    def poller_loop() -> None:
        # As in production, the poller is already running while submissions arrive.
        while submitting.is_set() or Render.objects.filter(state__in=AT_GATEWAY).exists():
            poller.run_poller(max_seconds=settings.STUDIO_POLLER_RUN_SECONDS)
            time.sleep(0.05)
        connections.close_all()

    poller.poll_step = measured  # the poller's own reference: what its threads call
    ids = []
    loop_started = started = time.perf_counter()
    thread = threading.Thread(target=poller_loop)
    thread.start()
    client = transitions.client_factory()
    try:
        for i in range(renders):
            form = RenderForm({"model": "sora2", "prompt": f"Bench shot {i}", "duration_seconds": "5"})
            form.is_valid()
            ids.append(do_submit_render(user, form.order()).pk)
            submit.submit_step(ids[-1], client)
        submit_seconds = time.perf_counter() - started
        submitting.clear()
        thread.join()
    finally:
        submitting.clear()
        poller.poll_step = real_poll
        client.close()
        emulator.stop()
    elapsed = time.perf_counter() - loop_started
    done = Render.objects.filter(pk__in=ids, state=State.DOWNLOADING).count()
    return {
        "renders": renders,
        "submit_seconds": submit_seconds,
        "poller_seconds": elapsed,
        "polls": len(lateness),
        "polls_per_second": len(lateness) / elapsed if elapsed else 0.0,
        "late_p50": _percentile(lateness, 50),
        "late_p95": _percentile(lateness, 95),
        "late_max": max(lateness, default=0.0),
        "late_mean": statistics.fmean(lateness) if lateness else 0.0,
        "finished_at_gateway": done,
    }


def bench_pages(repeat: int = 20) -> dict:
    """Median time to render the studio page (50 cards) and the poll fragment."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    client = Client(HTTP_HOST="localhost")
    client.force_login(get_user_model().objects.get(username="bench"))
    timings = {}
    # (name, URL, extra WSGI environ for Client.get)
    pages: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("studio page", "/", {}),
        (
            "poll fragment",
            "/renders/poll/?" + urlencode({"since": timezone.now().isoformat()}),
            {"HTTP_HX_REQUEST": "true"},
        ),
    )
    for name, url, headers in pages:
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            response = client.get(url, **headers)
            runs.append(time.perf_counter() - t0)
            assert response.status_code in (200, 286), response.status_code
        timings[name] = statistics.median(runs) * 1000
    return timings


def bench_gallery(total: int = 10_000, repeat: int = 10) -> dict:
    """Median time of the team gallery over `total` finished renders: first page, tag + search, a deep page."""
    from datetime import timedelta
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from studio.gallery import Cursor
    from studio.models import Membership, Profile, Render, Role, Star, State, Tag, Team

    team = Team.objects.create(name="Bench team", slug="bench-gallery")
    people = [get_user_model().objects.create_user(f"gallery-{i}") for i in range(2)]
    for person in people:
        Membership.objects.create(team=team, user=person, role=Role.REVIEWER)
        Profile.objects.create(user=person, active_team=team)
    subjects = ["harbour at dawn", "neon city", "red apple", "drone over dunes", "paper boat", "fox in snow"]
    now = timezone.now()
    renders = [
        Render(
            user=people[i % 2],
            team=team,
            model="sora2",
            prompt=f"Bench clip {i}: a {subjects[i % len(subjects)]}, slow dolly",
            params={"duration_seconds": 5 * (i % 3 + 1), "size": "1280x720"},
            seconds=5 * (i % 3 + 1),  # bulk_create skips save(), which fills it in
            state=State.COMPLETED,
            estimated_cost=Decimal("0.5") * (i % 3 + 1),
            rate_per_second=Decimal("0.1"),
            billed_cost=Decimal("0.5") * (i % 3 + 1) if i % 4 else None,
            created_at=now - timedelta(seconds=i),
            finished_at=now - timedelta(seconds=i),
        )
        for i in range(total)
    ]
    Render.objects.bulk_create(renders, batch_size=1000)
    tags = [Tag(render=r, name=f"campaign-{i % 10}") for i, r in enumerate(renders) if i % 3 == 0]
    Tag.objects.bulk_create(tags, batch_size=1000)
    Star.objects.bulk_create([Star(user=people[0], render=r) for r in renders[::7]], batch_size=1000)
    deep = Render.objects.filter(team=team).order_by("-created_at", "-id")[total - 100]  # 100 from the end
    client = Client(HTTP_HOST="localhost")
    client.force_login(people[0])
    fragment = {"HTTP_HX_REQUEST": "true"}
    # (name, query, extra WSGI environ for Client.get)
    cases: tuple[tuple[str, dict[str, str], dict[str, Any]], ...] = (
        ("gallery first page (24 of 10,000)", {}, {}),
        ("gallery sorted by cost", {"sort": "cost"}, {}),
        ("gallery tag + search", {"tag": "campaign-3", "q": "harbour"}, {}),
        ("gallery deep cursor page (fragment)", {"cursor": Cursor.after(deep, "newest").sign()}, fragment),
    )
    timings = {}
    for name, query, headers in cases:
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            response = client.get("/gallery/?" + urlencode(query), **headers)
            runs.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.status_code
        timings[name] = statistics.median(runs) * 1000
    return timings


def bench_decode_check(repeat: int = 3) -> dict:
    """The checks a finished download goes through, on a 20 s 1080p clip made by the emulator's renderer."""
    from studio.emulator.video import render_clip
    from studio.media import decode_check, extract_poster, probe_video

    with tempfile.TemporaryDirectory(prefix="studio-bench-clip-") as tmp:
        clip = render_clip(
            Path(tmp) / "clip.mp4", width=1920, height=1080, duration=20, fps=24, prompt="A 20 s 1080p clip"
        )
        timings: dict[str, list[float]] = {"probe": [], "poster": [], "decode": []}
        for _ in range(repeat):
            for name, check in (
                ("probe", lambda: probe_video(clip)),
                ("poster", lambda: extract_poster(clip, Path(tmp) / "poster.jpg", at_seconds=1.0)),
                ("decode", lambda: decode_check(clip, timeout=300)),
            ):
                t0 = time.perf_counter()
                check()
                timings[name].append(time.perf_counter() - t0)
        size = clip.stat().st_size
    return {
        "megabytes": size / 1e6,
        **{name: statistics.median(runs) * 1000 for name, runs in timings.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--renders", type=int, default=300)
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()
    _setup()
    from django.conf import settings

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    poller = bench_poller(args.renders, args.speed)
    print(f"Poller: {poller['renders']} sora2 renders in flight at once, emulator speed {args.speed}")
    print(f"  submitted all in {poller['submit_seconds']:.1f} s; poller ran {poller['poller_seconds']:.1f} s")
    print(f"  {poller['polls']} polls, {poller['polls_per_second']:.0f} polls/s")
    print(
        f"  lateness vs schedule: p50 {poller['late_p50'] * 1000:.0f} ms, p95 {poller['late_p95'] * 1000:.0f} ms, "
        f"max {poller['late_max'] * 1000:.0f} ms (cadence is 2000 ms)"
    )
    print(f"  finished at the gateway: {poller['finished_at_gateway']}/{poller['renders']}")
    for name, ms in bench_pages().items():
        print(f"Page: {name}: median {ms:.1f} ms")
    for name, ms in bench_gallery().items():
        print(f"Page: {name}: median {ms:.1f} ms")
    checks = bench_decode_check()
    print(
        f"Clip check: 20 s 1080p clip ({checks['megabytes']:.0f} MB): full decode {checks['decode']:.0f} ms "
        f"(probe {checks['probe']:.0f} ms, poster frame {checks['poster']:.0f} ms), median of 3"
    )


if __name__ == "__main__":
    main()
