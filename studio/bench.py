"""`make bench`: how well one poller keeps hundreds of in-flight renders on cadence, page render times, and what
the full decode check costs on a 20 s 1080p clip.

Runs against a fresh database (SQLite in STUDIO_DATA_DIR unless DATABASE_URL says otherwise) and an emulator in
its own process, at the real cadence (2 s polls). Lateness is measured at the gateway, from the emulator's log of
every poll: for consecutive polls of one task, the gap minus the interval the cadence asks for. The poller runs
in this process; submissions and downloads run in STUDIO_Q_WORKERS (4) worker processes, as a cluster's q workers do.
Usage: python -m studio.bench [--renders 300,1000,3000] [--speed 0.25] [--poller-only]
STUDIO_BENCH_KEEP_LOG=FILE keeps the gateway's raw log of polls (JSON) of the last run, to look at lateness over time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import multiprocessing
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from studio.bootstrap import prepare_data_dir


def _setup(*, fresh: bool = True) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    data = Path(os.environ.setdefault("STUDIO_DATA_DIR", tempfile.mkdtemp(prefix="studio-bench-")))
    if fresh:
        (data / "studio.sqlite3").unlink(missing_ok=True)
        prepare_data_dir()
    import django

    django.setup()
    if fresh:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def gateway_lateness(log: dict, scale: float, stall_after: float) -> list[float]:
    """Lateness as the gateway sees it: for each pair of consecutive polls of one task, the gap minus the
    interval the cadence asks for at the first of them (in studio seconds, scaled by STUDIO_POLL_SCALE)."""
    from studio import cadence

    late = []
    for entry in log.values():
        polls, submitted = entry["polls"], entry["submitted_at"]
        if submitted is None:
            continue
        for first, second in itertools.pairwise(polls):
            wanted = cadence.poll_delay((first - submitted) / scale, stall_after)
            if wanted is not None:
                late.append((second - first) - wanted * scale)
    return late


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_gateway(speed: float) -> tuple[subprocess.Popen, str]:
    """The emulator in its own process, as an independent gateway (it gets its own GIL, not its own core)."""
    port = _free_port()
    data = Path(tempfile.mkdtemp(prefix="studio-bench-gateway-"))
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
        [
            sys.executable,
            "manage.py",
            "emulate_gateway",
            "--port",
            str(port),
            "--speed",
            str(speed),
            "--fps",
            "1",
        ]
        + ["--data-dir", str(data)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base_url}/_emulator/health", timeout=1).status_code == 200:
                return process, base_url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the emulator did not start")


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Writes:
    """Counts UPDATE/INSERT statements sent by the poller's threads (those named poller*)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        if threading.current_thread().name.startswith("poller") and sql.lstrip()[:6].upper() in (
            "UPDATE",
            "INSERT",
        ):
            with self._lock:
                self.count += 1
        return execute(sql, params, many, context)


def _worker_setup(base_url: str) -> None:
    """A bench worker process: Django against the bench's database and gateway; what it would enqueue is left to
    the poller (which finds due submissions and downloads itself)."""
    _setup(fresh=False)
    logging.getLogger("studio").setLevel(logging.ERROR)
    from django.conf import settings

    from studio import queue

    _use_gateway(settings, base_url)
    _plain_static(settings)
    queue.enqueue = lambda name, *ids: None


def _use_gateway(settings, base_url: str) -> None:
    """Talk to the bench's emulator, and fetch its result files from it."""
    settings.BYTESPIKE_BASE_URL = base_url
    settings.GATEWAY_ALLOWED_RESULT_HOSTS = ["127.0.0.1"]


def _plain_static(settings) -> None:
    """No manifest is built for a bench: static files are served by name."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def _worker_submit(render_id: str) -> None:
    from django.db import connections

    from studio.lifecycle import submit, transitions

    with transitions.client_factory() as client:
        submit.submit_step(render_id, client)
    connections.close_all()


def _worker_download(render_id: str) -> float:
    """Download one render; the seconds it took once a worker had it (not its wait for a free worker)."""
    from studio import tasks

    started = time.perf_counter()
    tasks.download_render(render_id)
    return time.perf_counter() - started


def bench_poller(renders: int, speed: float) -> dict:
    """Submit `renders` renders while one poller runs, until every one is finished and downloaded; measure the
    cadence from the gateway's own log of polls (so in real seconds: the cadence is not sped up)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.db.backends.signals import connection_created

    from studio import queue
    from studio.actions.renders import do_submit_render
    from studio.forms import RenderForm
    from studio.lifecycle import poller
    from studio.models import IN_FLIGHT, Render, State

    process, base_url = _start_gateway(speed)
    _use_gateway(settings, base_url)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    writes = _Writes()

    def wrap(sender, connection, **kwargs) -> None:
        if writes not in connection.execute_wrappers:
            connection.execute_wrappers.append(writes)

    connection_created.connect(wrap)
    for conn in connections.all():
        wrap(None, conn)
    # Submissions and downloads run in worker processes, as a cluster's q workers do (STUDIO_Q_WORKERS): they
    # share the cores with the poller, not its interpreter.
    workers = ProcessPoolExecutor(
        settings.Q_CLUSTER["workers"],
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_setup,
        initargs=(base_url,),
    )

    real_enqueue = queue.enqueue
    noticed: dict[str, float] = {}  # render id -> when the poller queued its download (it saw "completed")
    fetches: list = []  # the download tasks' futures: how long each took in its worker

    def enqueue(name: str, *ids) -> None:
        # No cluster here: downloads go to a small pool, the poller is restarted by the loop below.
        if name == "download_render":
            noticed.setdefault(str(ids[0]), time.time())
            fetches.append(workers.submit(_worker_download, str(ids[0])))

    submitting = threading.Event()
    submitting.set()

    def poller_loop() -> None:
        # As in production, the poller is already running while submissions arrive; it hands over every run.
        while submitting.is_set() or Render.objects.filter(state__in=IN_FLIGHT).exists():
            poller.run_poller(max_seconds=settings.STUDIO_POLLER_RUN_SECONDS)
            time.sleep(0.05)
        connections.close_all()

    queue.enqueue = enqueue
    ids = []
    for i in range(renders):  # the drafts first: what is timed is the gateway's side
        form = RenderForm({"model": "sora2", "prompt": f"Bench shot {i}", "duration_seconds": "5"})
        form.is_valid()
        ids.append(do_submit_render(user, form.order()).pk)
    started = time.perf_counter()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    thread = threading.Thread(target=poller_loop, name="poller-bench")
    thread.start()
    try:
        # A batch arrives as `render --from` sends it: several submissions at once.
        list(workers.map(_worker_submit, [str(pk) for pk in ids]))
        submit_seconds = time.perf_counter() - started
        submitting.clear()
        thread.join()
        workers.shutdown(wait=True)
        log = httpx.get(f"{base_url}/_emulator/polls", timeout=60).json()["tasks"]
        submissions = httpx.get(f"{base_url}/_emulator/health", timeout=60).json()["submissions"]
        if os.environ.get("STUDIO_BENCH_KEEP_LOG"):  # the raw poll log, for a look at lateness over time
            Path(os.environ["STUDIO_BENCH_KEEP_LOG"]).write_text(json.dumps(log))
        gateway_cpu = _process_cpu(process.pid)
    finally:
        submitting.clear()
        queue.enqueue = real_enqueue
        connection_created.disconnect(wrap)
        workers.shutdown(wait=False, cancel_futures=True)
        process.terminate()
        process.wait(timeout=30)
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime + usage.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    lateness = gateway_lateness(log, settings.STUDIO_POLL_SCALE, settings.STUDIO_STALL_AFTER_SECONDS)
    times = sorted(t for entry in log.values() for t in entry["polls"])
    edges = sorted(
        [(entry["polls"][0], 1) for entry in log.values() if entry["polls"]]
        + [(entry["polls"][-1], -1) for entry in log.values() if entry["polls"]]
    )
    in_flight = peak_in_flight = 0
    for _, step in edges:
        in_flight += step
        peak_in_flight = max(peak_in_flight, in_flight)
    polls = len(times)
    span = (times[-1] - times[0]) if polls > 1 else 0.0
    rows = (
        Render.objects.filter(pk__in=ids, state=State.COMPLETED)
        .exclude(video="")
        .values_list("pk", "finished_at", "gateway_completed_at")
    )
    playable = [
        (finished - completed).total_seconds() for _, finished, completed in rows if finished and completed
    ]
    seen = [
        noticed[str(pk)] - completed.timestamp()
        for pk, _, completed in rows
        if completed and str(pk) in noticed
    ]
    return {
        "renders": renders,
        "peak_in_flight": peak_in_flight,
        "submit_seconds": submit_seconds,
        "poller_seconds": elapsed,
        "polls": polls,
        "polls_per_second": polls / span if span else 0.0,
        "late_p50": _percentile(lateness, 50),
        "late_p95": _percentile(lateness, 95),
        "late_max": max(lateness, default=0.0),
        "cpu_per_1000": cpu / polls * 1000 if polls else 0.0,
        "gateway_cpu_per_1000": gateway_cpu / polls * 1000 if polls else 0.0,
        "writes_per_poll": writes.count / polls if polls else 0.0,
        "playable_p95": _percentile(playable, 95),
        "noticed_p95": _percentile(seen, 95),
        "download_p95": _percentile(
            [f.result() for f in fetches if f.done() and not f.cancelled() and f.exception() is None], 95
        ),
        "completed": len(playable),
        "submissions": submissions,  # at the gateway: one per render, or something was sent twice
        "peak_mb": usage.ru_maxrss / 1024,
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


GALLERY_SUBJECTS = [
    "harbour at dawn",
    "neon city",
    "red apple",
    "drone over dunes",
    "paper boat",
    "fox in snow",
]


def _gallery_fill(people, teams, start: int, stop: int, now, batch: int = 5_000) -> None:
    """Renders `start` to `stop` of the gallery bench (one a second, newest first), in batches: 90% in the bench
    team, the rest in another; every 10th failed, every 20th private; a third tagged, every 7th starred."""
    from datetime import timedelta
    from decimal import Decimal

    from studio.models import Render, ReviewState, Star, State, Tag

    for first in range(start, stop, batch):
        renders = []
        for i in range(first, min(first + batch, stop)):
            renders.append(
                Render(
                    user=people[i % 2],
                    team=teams[1] if i % 10 == 9 else teams[0],
                    model="sora2",
                    prompt=f"Bench clip {i}: a {GALLERY_SUBJECTS[i % len(GALLERY_SUBJECTS)]}, slow dolly",
                    params={"duration_seconds": 5 * (i % 3 + 1), "size": "1280x720"},
                    seconds=5 * (i % 3 + 1),  # bulk_create skips save(), which fills it in
                    state=State.FAILED if i % 10 == 5 else State.COMPLETED,
                    private=i % 20 == 7,
                    # The newest 2,000 wait for review, older ones were reviewed: the queue is not the archive.
                    review_state=ReviewState.NEEDS_REVIEW
                    if i < 2_000
                    else (ReviewState.REJECTED if i % 11 == 0 else ReviewState.APPROVED),
                    estimated_cost=Decimal("0.5") * (i % 3 + 1) + Decimal(i % 97) / 100,
                    rate_per_second=Decimal("0.1"),
                    billed_cost=Decimal("0.5") * (i % 3 + 1) + Decimal(i % 89) / 100 if i % 4 else None,
                    created_at=now - timedelta(seconds=i),
                    finished_at=now - timedelta(seconds=i),
                )
            )
        Render.objects.bulk_create(renders)
        Tag.objects.bulk_create(
            [
                Tag(render=r, name=f"campaign-{(first + n) % 10}")
                for n, r in enumerate(renders)
                if (first + n) % 3 == 0
            ]
        )
        Star.objects.bulk_create([Star(user=people[0], render=r) for r in renders[::7]])


def _gallery_cases(people, teams) -> tuple[tuple[str, dict[str, str], dict[str, Any]], ...]:
    """(name, query, extra WSGI environ) of each gallery page timed; the deep cursor is 100 from the end."""
    from studio.gallery import Cursor
    from studio.models import Render, State

    visible = Render.objects.for_user(people[0]).filter(team=teams[0], state=State.COMPLETED)
    deep = visible.order_by("-created_at", "-id")[visible.count() - 100]
    fragment = {"HTTP_HX_REQUEST": "true"}
    return (
        ("first page", {}, {}),
        ("sorted by cost", {"sort": "cost"}, {}),
        ("sorted by duration", {"sort": "duration"}, {}),
        # i = 3 mod 30: tagged campaign-3 and "drone over dunes": one clip in 30 matches both
        ("tag + search", {"tag": "campaign-3", "q": "dunes"}, fragment),
        ("deep cursor page", {"cursor": Cursor.after(deep, "newest").sign()}, fragment),
        ("team gallery, one author", {"scope": "team", "author": people[1].username}, {}),
        ("my renders", {"scope": "mine"}, {}),
        ("search, common word", {"q": "harbour"}, fragment),
        ("search, no match", {"q": "submarine"}, fragment),
    )


def bench_gallery(total: int = 100_000, small: int = 1_000, repeat: int = 40) -> dict:
    """p50/p95 server time of gallery pages over `total` renders, and their query counts at `small` and `total`.

    Server time is the whole request through Django's test client (middleware, view, template), no network. On
    a shared machine it includes waiting for a core, so the bench also reports this process's CPU time (which on
    SQLite includes the queries) and the database time (the queries' wall time, as Django measures it).
    """
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from studio.models import Membership, Profile, Role, Team

    teams = [Team.objects.create(name=f"Bench team {n}", slug=f"bench-gallery-{n}") for n in range(2)]
    people = [get_user_model().objects.create_user(f"gallery-{i}") for i in range(2)]
    for person in people:
        for team in teams:
            Membership.objects.create(team=team, user=person, role=Role.REVIEWER)
        Profile.objects.create(user=person, active_team=teams[0])
    client = Client(HTTP_HOST="localhost")
    client.force_login(people[0])
    now = timezone.now()

    def run(query: dict[str, str], headers: dict[str, Any]) -> tuple[dict[str, float], int, int]:
        """Wall (server) time, this process's CPU time and the database's time of one request, in ms."""
        with CaptureQueriesContext(connection) as queries:
            wall, cpu = time.perf_counter(), time.process_time()
            response = client.get("/gallery/?" + urlencode(query), **headers)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert response.status_code == 200, response.status_code
        sql = sum(float(each["time"]) for each in queries.captured_queries)
        times = {"wall": wall * 1000, "cpu": cpu * 1000, "sql": sql * 1000}
        return times, len(queries), response.content.count(b'id="clip-')

    small = min(small, total)
    _gallery_fill(people, teams, 0, small, now)
    queries_small, p95_small = {}, {}
    for name, query, headers in _gallery_cases(people, teams):
        queries_small[name] = run(query, headers)[1]
        # The same pages at 1,000 under the same load: what 100,000 adds, whatever else the machine is doing.
        p95_small[name] = _percentile([run(query, headers)[0]["wall"] for _ in range(repeat // 2)], 95)
    t0 = time.perf_counter()
    _gallery_fill(people, teams, small, total, now)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # autovacuum would, a little later
    generate_seconds = time.perf_counter() - t0
    cases = []
    for name, query, headers in _gallery_cases(people, teams):
        _, queries, cards = run(query, headers)  # warm: templates compiled, pages cached
        runs = [run(query, headers)[0] for _ in range(repeat)]
        cases.append(
            {
                "name": name,
                "p50": _percentile([each["wall"] for each in runs], 50),
                "p95": _percentile([each["wall"] for each in runs], 95),
                "p95_small": p95_small[name],
                "cpu_p95": _percentile([each["cpu"] for each in runs], 95),
                "sql_p95": _percentile([each["sql"] for each in runs], 95),
                "queries_small": queries_small[name],
                "queries": queries,
                "cards": cards,
            }
        )
    return {
        "database": connection.vendor,
        "renders": total,
        "small": small,
        "generate_seconds": generate_seconds,
        "cases": cases,
    }


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


def _gallery_child(total: int) -> None:
    """Run bench_gallery in a fresh database of this process's kind and print its figures as JSON (last line)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    prepare_data_dir()
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    name = connection.settings_dict["NAME"]
    test = connection.settings_dict.setdefault("TEST", {})
    # A database of its own, made and dropped here: 100,000 rows never linger in the one the studio uses.
    test["NAME"] = (
        str(Path(name).with_name("gallery-bench.sqlite3"))
        if connection.vendor == "sqlite"
        else f"{name}_gallery_bench"
    )
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        figures = bench_gallery(total)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(json.dumps(figures))


def run_gallery(total: int, databases: list[str]) -> bool:
    """The gallery bench on each database, each in a child process (settings are per process); print the
    figures. False if a page's query count grew with the number of renders."""
    constant = True
    for database in databases:
        env = dict(os.environ)
        if database == "sqlite":
            env.pop("DATABASE_URL", None)
        env["STUDIO_DATA_DIR"] = str(
            Path(env.get("STUDIO_DATA_DIR") or tempfile.mkdtemp()) / f"gallery-{database}"
        )
        done = subprocess.run(
            [sys.executable, "-m", "studio.bench", "--gallery-child", "--gallery-renders", str(total)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"Gallery on {figures['database']}: {figures['renders']:,} renders (made in "
            f"{figures['generate_seconds']:.0f} s); per page: server time p50 / p95 (p95 at {figures['small']:,}), "
            f"process CPU p95, database p95; queries at {figures['small']:,} / {figures['renders']:,} renders"
        )
        for case in figures["cases"]:
            same = case["queries_small"] == case["queries"]
            constant &= same
            print(
                f"  {case['name']:<26} {case['p50']:6.1f} / {case['p95']:6.1f} ms ({case['p95_small']:5.1f})   "
                f"cpu {case['cpu_p95']:5.1f} ms   "
                f"db {case['sql_p95']:5.1f} ms   {case['queries_small']:>2} / {case['queries']:>2} queries"
                f"{'' if same else ' GREW'}   {case['cards']} cards"
            )
        print(
            f"  (load average when done: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores)"
        )
    return constant


# The same bench on the previous design (961b7a4: sharded, the schedule in memory, every state change written by the
# loop thread itself, clip checks and the emulator's renders at full priority, the emulator rewriting tasks.json on
# every change), printed beside each run's. Measured 2026-11-30 with this bench (submissions and downloads in 4
# worker processes) on a quiet 2-core machine, back to back with this design; 3,000 was not run on it.
PREVIOUS: dict[int, dict] = {
    300: {
        "polls_per_second": 122,
        "late_p50": 0.03,
        "late_p95": 0.11,
        "late_max": 0.41,
        "cpu_per_1000": 2.5,
        "gateway_cpu_per_1000": 1.3,
        "writes_per_poll": 0.13,
        "noticed_p95": 2.7,
        "playable_p95": 13.7,
        "peak_mb": 76,
    },
    1000: {
        "polls_per_second": 140,
        "late_p50": 0.49,
        "late_p95": 5.55,
        "late_max": 8.36,
        "cpu_per_1000": 2.4,
        "gateway_cpu_per_1000": 2.0,
        "writes_per_poll": 0.15,
        "noticed_p95": 8.2,
        "playable_p95": 57.7,
        "peak_mb": 90,
    },
}


def _poller_line(result: dict) -> str:
    return (
        f"{result['polls_per_second']:6.0f} polls/s, lateness p50 {result['late_p50']:5.2f} s "
        f"p95 {result['late_p95']:5.2f} s max {result['late_max']:5.2f} s, "
        f"{result['cpu_per_1000']:5.1f} CPU s/1000 polls (gateway {result.get('gateway_cpu_per_1000', 0):.1f}), "
        f"{result['writes_per_poll']:.2f} writes/poll, "
        f"completed->noticed p95 {result['noticed_p95']:.1f} s, ->playable p95 {result['playable_p95']:.1f} s"
        + (
            f" (a download in its worker: p95 {result['download_p95']:.1f} s)"
            if "download_p95" in result
            else ""
        )
        + ", "
        f"peak {result['peak_mb']:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--renders",
        default="300,1000,3000",
        help="Renders in flight at once, one run each (comma-separated).",
    )
    parser.add_argument(
        "--speed", type=float, default=0.25, help="Emulator speed: 0.25 makes a 5 s sora2 clip take ~42 s."
    )
    parser.add_argument("--poller-only", action="store_true", help="Skip the page and clip-check figures.")
    parser.add_argument("--only", choices=["all", "gallery"], default="all")
    parser.add_argument("--gallery-renders", type=int, default=100_000)
    parser.add_argument(
        "--gallery-db",
        choices=["sqlite", "postgres", "both"],
        default="both" if os.environ.get("DATABASE_URL") else "sqlite",
        help="default: both when DATABASE_URL is given (it names the PostgreSQL server), else sqlite",
    )
    parser.add_argument("--gallery-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gallery_child:
        _gallery_child(args.gallery_renders)
        return
    if args.gallery_db != "sqlite" and not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        parser.error("--gallery-db postgres/both needs DATABASE_URL=postgres://...")
    databases = ["sqlite", "postgres"] if args.gallery_db == "both" else [args.gallery_db]
    if args.only == "gallery":
        sys.exit(0 if run_gallery(args.gallery_renders, databases) else 1)
    _setup()
    logging.getLogger("studio").setLevel(logging.ERROR)  # a thousand renders' log lines are not the figures
    from django.conf import settings

    _plain_static(settings)
    print(
        f"Poller, measured at the gateway (its log of every poll; real seconds, cadence scale "
        f"{settings.STUDIO_POLL_SCALE}), emulator speed {args.speed} in its own process:"
    )
    for count in [int(n) for n in args.renders.split(",") if n.strip()]:
        result = bench_poller(count, args.speed)
        print(
            f"  {count} renders ({result['peak_in_flight']} at the gateway at once at the peak): "
            f"{result['completed']}/{count} completed and playable, {result['submissions']} submissions at the "
            f"gateway; "
            f"submitted in {result['submit_seconds']:.0f} s, all done in {result['poller_seconds']:.0f} s"
        )
        print(f"    now:      {_poller_line(result)}")
        if count in PREVIOUS:
            print(f"    previous: {_poller_line(PREVIOUS[count])}")
    if args.poller_only:
        return
    for name, ms in bench_pages().items():
        print(f"Page: {name}: median {ms:.1f} ms")
    checks = bench_decode_check()
    print(
        f"Clip check: 20 s 1080p clip ({checks['megabytes']:.0f} MB): full decode {checks['decode']:.0f} ms "
        f"(probe {checks['probe']:.0f} ms, poster frame {checks['poster']:.0f} ms), median of 3"
    )
    if not run_gallery(args.gallery_renders, databases):
        sys.exit(1)


if __name__ == "__main__":
    main()
