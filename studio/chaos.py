"""`make chaos`: kill a real worker cluster at random moments and count what the studio lost or did twice.

Each run starts from a fresh data directory and a fresh database, serves an in-process gateway emulator, starts
`manage.py qcluster`, submits a handful of renders (both models, some cancelled), and SIGKILLs or SIGTERMs the
cluster several times while a render is being submitted, polled or downloaded. Then it restarts the cluster
for good and waits (five minutes at most) until every render has ended and its hold has been settled.

It then checks from the database and from the emulator's own records (tasks.json, where every task keeps the
prompt it was sent with: each render's prompt starts with its own marker):

- double submissions: tasks at the gateway beyond the first for one render (each one is billed)
- double settlements: ledger outcomes beyond one for a render; unsettled: ended renders still holding money
  (`submit_unknown` and `stalled` hold on purpose and are not counted)
- unfinished: renders not ended five minutes after the healthy restart
- unplayable: completed renders whose clip is missing, of another size, or does not decode cleanly
- submit_unknown: renders ended `submit_unknown`, and how many of those reached the gateway anyway
- leftover temporary files: `*.part` and `.poster-*` under the media directory once everything ended

Backends: `sqlite` (SQLite + django-q2's ORM broker) and `postgres` (PostgreSQL + Redis). The PostgreSQL
database is dropped and created again for every run: its name must contain "chaos" (with --jobs, the extra slots
use NAME_1, NAME_2... beside it, dropped at the end). Each run has its own Redis queue name. A run mostly waits
(a SIGKILLed download holds its lease for three minutes), so several run at once. The studio under test runs
with the emulator at --speed, STUDIO_POLL_SCALE=0.05, a 5 s read timeout and 5 s poller runs (STUDIO_ENV).

Usage: python -m studio.chaos [--runs 30] [--backends sqlite,postgres] [--seed N] [--kills 3] [--renders 6]
       [--jobs 6] [--phases submit,poll,download] [--signals SIGKILL,SIGTERM] [--keep] [--verbose]
The seed is printed; `--seed N --runs 1` replays the plan of a failing run (its kill moments, signals, renders
and cancels; the exact interleaving with the cluster is up to the machine). Exits 1 when any count but the
submit_unknown ones is not 0, or a run could not be carried out; 2 when a backend's services are missing and
STUDIO_REQUIRE_SERVICES=1 or CI=true (else that backend is skipped with the reason, as the test suite does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from studio.bootstrap import BASE_DIR

BACKENDS = ("sqlite", "postgres")
PHASES = ("submit", "poll", "download")
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM}
# What each run counts; all must be 0 but the submit_unknown ones, reported until the window is closed.
COUNTS = (
    "double_submissions",
    "double_settlements",
    "unsettled",
    "unfinished",
    "unplayable",
    "submit_unknown",
    "submit_unknown_reached",
    "leftover_temp_files",
    "errors",
)
MUST_BE_ZERO = tuple(name for name in COUNTS if not name.startswith("submit_unknown"))
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/studio_chaos"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
# Settings of the studio under test: a fast gateway and cadence, a short read timeout (a submit caught by a kill
# turns submit_unknown after read timeout + 60 s), short poller runs (a graceful stop waits for the running one).
STUDIO_ENV = {
    "STUDIO_POLL_SCALE": "0.05",
    "STUDIO_GATEWAY_READ_TIMEOUT": "5",
    "STUDIO_POLLER_RUN_SECONDS": "5",
    "STUDIO_Q_WORKERS": "2",
}
# Nothing of the caller's own configuration may reach a run: it must never touch a real database or gateway.
SCRUBBED = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "BYTESPIKE_API_KEY", "BYTESPIKE_BASE_URL", "STUDIO_")


@dataclass
class Options:
    runs: int
    backends: tuple[str, ...]
    seed: int
    kills: int
    renders: int
    speed: float
    finish_timeout: float
    root: Path
    pg_url: str
    redis_url: str
    keep: bool
    jobs: int
    log_level: str = "WARNING"
    phases: tuple[str, ...] = PHASES
    signals: tuple[str, ...] = tuple(sorted(SIGNALS))


# --- the parent: fresh databases, one child process per run, the figures ----------------------------------------


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def _pg_admin(url: str):
    """An autocommit connection to the server's maintenance database, and the chaos database's name."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    return psycopg.connect(admin, autocommit=True), name


def _pg_recreate(conn, name: str, template: str | None = None) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    conn.execute(create)


def _migrate(env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=out,
            check=True,
        )


class Backend:
    """Fresh databases for one backend: migrated once into a template, copied for every run."""

    def __init__(self, name: str, opts: Options) -> None:
        self.name = name
        self.opts = opts
        self.dir = opts.root / name
        self.template_dir = self.dir / "template"
        self._lock = threading.Lock()  # one CREATE DATABASE ... TEMPLATE at a time

    def prepare(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.template_dir.mkdir(parents=True)
        env = {**_clean_env(), "STUDIO_DATA_DIR": str(self.template_dir)}
        if self.name == "postgres":
            conn, name = _pg_admin(self.opts.pg_url)
            with conn:
                _pg_recreate(conn, f"{name}_template")
            env["DATABASE_URL"] = self._pg_url(f"{name}_template")
        _migrate(env, self.template_dir / "migrate.log")

    def _pg_url(self, name: str) -> str:
        return urlsplit(self.opts.pg_url)._replace(path=f"/{name}").geturl()

    def _pg_name(self, slot: int) -> str:
        """The database of one job slot: the --pg-url's for the first, numbered beside it for the others."""
        name = urlsplit(self.opts.pg_url).path.lstrip("/")
        return name if slot == 0 else f"{name}_{slot}"

    def fresh_run(self, seed: int, slot: int) -> tuple[Path, dict[str, str]]:
        """A fresh data directory and database for one run, and the environment of its processes."""
        run_dir = self.dir / f"run-{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        env = {
            **_clean_env(),
            **STUDIO_ENV,
            "STUDIO_LOG_LEVEL": self.opts.log_level,
            "STUDIO_DATA_DIR": str(run_dir),
            "STUDIO_Q_NAME": f"studio-chaos-{self.name}-{seed}",
        }
        if self.name == "sqlite":
            # The backup API copies a consistent database, whatever is left in the template's WAL.
            with contextlib.closing(sqlite3.connect(self.template_dir / "studio.sqlite3")) as source:
                with contextlib.closing(sqlite3.connect(run_dir / "studio.sqlite3")) as target:
                    source.backup(target)
        else:
            conn, name = _pg_admin(self.opts.pg_url)
            with self._lock, conn:
                _pg_recreate(conn, self._pg_name(slot), template=f"{name}_template")
            env["DATABASE_URL"] = self._pg_url(self._pg_name(slot))
            env["REDIS_URL"] = self.opts.redis_url  # one Redis database: each run has its own queue name
        return run_dir, env

    def tidy(self) -> None:
        """Drop the extra job slots' databases; the first slot's (the --pg-url's) keeps the last run there."""
        if self.name != "postgres":
            return
        from psycopg import sql

        conn, _ = _pg_admin(self.opts.pg_url)
        with conn:
            for slot in range(1, self.opts.jobs):
                name = sql.Identifier(self._pg_name(slot))
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))

    def forget_queue(self, env: dict[str, str]) -> None:
        """Remove the run's own keys from Redis (each run has its own queue name, so runs never share one)."""
        if self.name != "postgres":
            return
        import redis

        client = redis.Redis.from_url(self.opts.redis_url)
        with contextlib.closing(client):
            for key in client.scan_iter(match=f"django_q:{env['STUDIO_Q_NAME']}:*"):
                client.delete(key)


def _run_one(backend: Backend, seed: int, slot: int, opts: Options) -> dict:
    """One run in a child process (Django is set up there, against this run's database); its result."""
    run_dir, env = backend.fresh_run(seed, slot)
    spec = {
        "backend": backend.name,
        "seed": seed,
        "kills": opts.kills,
        "renders": opts.renders,
        "speed": opts.speed,
        "finish_timeout": opts.finish_timeout,
        "phases": opts.phases,
        "signals": opts.signals,
    }
    # Long enough for every kill, restart and the healthy finish; a run hanging past it is an error.
    limit = opts.finish_timeout + opts.kills * 150 + 300
    child = subprocess.Popen(
        [sys.executable, "-m", "studio.chaos", "--child", json.dumps(spec)],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(run_dir / "driver.log").open("ab"),
        text=True,
    )
    try:
        out, _ = child.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        child.kill()
        out, _ = child.communicate()
        out = ""
    finally:
        _kill_leftover_cluster(run_dir)
    backend.forget_queue(env)
    result: dict[str, Any]
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {"errors": 1, "problems": [f"the run did not finish (see {run_dir / 'driver.log'})"]}
    result.update(seed=seed, backend=backend.name, dir=str(run_dir))
    failed = any(result.get(name) for name in MUST_BE_ZERO)
    if not failed and not opts.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _kill_leftover_cluster(run_dir: Path) -> None:
    """Nothing of a run's clusters may outlive it, even when its driver died without stopping them."""
    with contextlib.suppress(OSError):
        for line in (run_dir / "cluster.pids").read_text().split():
            with contextlib.suppress(OSError, ValueError):
                # Only a process of this run: a pid is reused once its process has gone.
                environ = Path(f"/proc/{int(line)}/environ").read_bytes().split(b"\0")
                if f"STUDIO_DATA_DIR={run_dir}".encode() in environ:
                    os.killpg(int(line), signal.SIGKILL)  # each cluster leads its own process group


def _add(total: dict, result: dict) -> None:
    total["runs"] += 1
    for name in ("kills", "renders", *COUNTS):
        total[name] += int(result.get(name, 0) or 0)
    for phase, n in (result.get("kills_by_phase") or {}).items():
        total["kills_by_phase"][phase] += n
    total["seconds"] += float(result.get("seconds", 0) or 0)


def _empty() -> dict:
    return {
        "runs": 0,
        "kills": 0,
        "renders": 0,
        **dict.fromkeys(COUNTS, 0),
        "kills_by_phase": Counter(),
        "seconds": 0.0,
    }


def figures(label: str, t: dict) -> str:
    """One line of figures, to read and to paste in the README."""
    phases = ", ".join(f"{p} {t['kills_by_phase'].get(p, 0)}" for p in (*PHASES, "elsewhere"))
    line = (
        f"{label}: {t['runs']} runs, {t['kills']} kills ({phases}), {t['renders']} renders: "
        f"double submissions {t['double_submissions']}, double settlements {t['double_settlements']}, "
        f"unsettled {t['unsettled']}, unfinished after 5 min {t['unfinished']}, "
        f"finished without a playable file {t['unplayable']}, "
        f"submit_unknown {t['submit_unknown']} ({t['submit_unknown_reached']} reached the gateway), "
        f"leftover temp files {t['leftover_temp_files']}"
    )
    if t["errors"]:
        line += f", runs that could not be carried out {t['errors']}"
    return line


def _describe(result: dict) -> str:
    kills = " ".join(result.get("kill_log") or []) or "-"
    bad = [f"{name} {result[name]}" for name in COUNTS if result.get(name)]
    return (
        f"{result.get('renders', 0)} renders, kills: {kills}, {result.get('seconds', 0):.0f} s "
        f"({result.get('finish_seconds', 0):.0f} s after the healthy restart)"
        + (f": {', '.join(bad)}" if bad else ": ok")
    )


def _replay(opts: Options, backend: str, seed: int) -> str:
    """The command that runs one run's plan again."""
    return (
        f"python -m studio.chaos --backends {backend} --runs 1 --seed {seed} --kills {opts.kills} "
        f"--renders {opts.renders} --speed {opts.speed:g} --phases {','.join(opts.phases)} "
        f"--signals {','.join(opts.signals)} --verbose"
    )


def run(opts: Options) -> int:
    """Every run of every backend; prints progress, the figures and a JSON line; returns the exit status."""
    print(
        f"chaos: seed {opts.seed}, {opts.runs} runs per backend, {opts.kills} kills ({'/'.join(opts.signals)} "
        f"during {'/'.join(opts.phases)}) and {opts.renders} renders per run, {opts.jobs} at a time",
        flush=True,
    )
    started = time.monotonic()
    backends: dict[str, Backend] = {}
    missing = []
    for name in opts.backends:
        if name == "postgres":
            services = (("PostgreSQL", opts.pg_url, 5432), ("Redis", opts.redis_url, 6379))
            down = [label for label, url, port in services if not _reachable(url, port)]
            if down:
                missing.append(f"{name}: {' and '.join(down)} not running")
                print(f"chaos: {name} skipped: {' and '.join(down)} not running", flush=True)
                continue
        backends[name] = Backend(name, opts)
        backends[name].prepare()
    totals = {name: _empty() for name in backends}
    durations: list[float] = []
    slots: dict[str, queue.SimpleQueue[int]] = {name: queue.SimpleQueue() for name in backends}
    for free in slots.values():
        for slot in range(opts.jobs):
            free.put(slot)
    lock = threading.Lock()

    def one(name: str, index: int) -> None:
        seed = opts.seed + index
        slot = slots[name].get()
        try:
            result = _run_one(backends[name], seed, slot, opts)
        finally:
            slots[name].put(slot)
        with lock:
            _add(totals[name], result)
            durations.append(float(result.get("seconds", 0) or 0))
            print(f"  {name} run {index + 1}/{opts.runs} (seed {seed}): {_describe(result)}", flush=True)
            for problem in result.get("problems") or []:
                print(f"    {problem}", flush=True)
            if any(result.get(n) for n in MUST_BE_ZERO):
                print(f"    kept {result['dir']}; replay: {_replay(opts, name, seed)}", flush=True)

    work = [(name, index) for index in range(opts.runs) for name in backends]
    with ThreadPoolExecutor(opts.jobs) as pool:
        for future in [pool.submit(one, name, index) for name, index in work]:
            future.result()
    for backend in backends.values():
        backend.tidy()
    overall = _empty()
    for total in totals.values():
        for key, value in total.items():
            if key == "kills_by_phase":
                overall[key].update(value)
            else:
                overall[key] += value
    wall = time.monotonic() - started
    print()
    if durations:
        print(
            f"chaos: seed {opts.seed}; {len(durations)} runs in {wall / 60:.1f} min, {opts.jobs} at a time; "
            f"a run took {min(durations):.0f}-{max(durations):.0f} s (median {statistics.median(durations):.0f} s)"
        )
    for name, total in totals.items():
        print(figures(name, total))
    if len(totals) > 1:
        print(figures("total", overall))
    failing = [name for name in MUST_BE_ZERO if overall[name]]
    payload = {
        "seed": opts.seed,
        "kills_per_run": opts.kills,
        "renders_per_run": opts.renders,
        "wall_seconds": round(wall, 1),
        "backends": {name: _plain(t) for name, t in totals.items()},
        "total": _plain(overall),
        "failing": failing,
        "missing": missing,
    }
    print(json.dumps(payload, sort_keys=True), flush=True)
    if failing:
        return 1
    # As in the test suite: a missing service skips locally and fails where services are required (CI).
    required = os.environ.get("STUDIO_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true"
    return 2 if missing and required else 0


def _plain(total: dict) -> dict:
    return {**total, "kills_by_phase": dict(total["kills_by_phase"]), "seconds": round(total["seconds"], 1)}


# --- the child: one run against a real cluster ------------------------------------------------------------------


class Cluster:
    """`manage.py qcluster` in its own process group, killable like a real one."""

    def __init__(self, env: dict[str, str], run_dir: Path) -> None:
        self.env = env
        self.run_dir = run_dir
        self.process: subprocess.Popen | None = None
        self.started_at = datetime.now(UTC)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> int:
        if self.running:
            raise RuntimeError("the cluster is already running: a second one would never be stopped")
        self.started_at = datetime.now(UTC)
        with (self.run_dir / "cluster.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=BASE_DIR,
                env=self.env,
                start_new_session=True,  # its own process group: a SIGKILL takes the workers down too
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        with (self.run_dir / "cluster.pids").open("a") as pids:  # for the parent's last resort
            pids.write(f"{self.process.pid}\n")
        return self.process.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL the whole group at once (no cleanup runs), or SIGTERM the cluster as an init system would."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if sig == signal.SIGKILL:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(sig)  # graceful: workers finish their current task, then exit
        try:
            process.wait(timeout=90)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # nothing of it may outlive the stop
            process.wait()


@dataclass
class Planned:
    """A render the run will submit: its marker (the first word of its prompt), its form, its cancel."""

    marker: str
    data: dict[str, str]
    cancel: str | None = None  # None, "pending" (at once) or "gateway" (once the gateway has it)
    cancel_after: float = 0.0
    render_id: Any = None
    at_gateway_since: float | None = None


@dataclass
class ChildRun:
    spec: dict
    run_dir: Path
    rng: random.Random = field(init=False)
    plan: list[Planned] = field(default_factory=list)
    kill_log: list[str] = field(default_factory=list)
    kills_by_phase: Counter = field(default_factory=Counter)

    def note(self, message: str) -> None:
        """A line in the run's timeline (chaos.log), timestamped like the cluster's own log."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
        with (self.run_dir / "chaos.log").open("a", encoding="utf-8") as log:
            log.write(f"{stamp} {message}\n")

    def __post_init__(self) -> None:
        self.rng = random.Random(self.spec["seed"])
        seed = self.spec["seed"]
        for index in range(max(self.spec["renders"], 1)):
            marker = f"chaos{seed}r{index}"
            subject = self.rng.choice(["a paper boat", "a red kite", "a lighthouse", "a fox in the snow"])
            data = {"prompt": f"{marker}: {subject}, slow dolly shot"}
            if self.rng.random() < 0.5:
                data.update(model="sora2", duration_seconds="5")
            else:
                data.update(
                    model="sora-2-pro",
                    duration_seconds=str(self.rng.randint(1, 4)),
                    resolution="720p",
                    aspect_ratio="16:9",
                )
            roll = self.rng.random()
            cancel = "pending" if roll < 0.1 else "gateway" if roll < 0.3 else None
            self.plan.append(Planned(marker, data, cancel, cancel_after=self.rng.uniform(0, 1.5)))

    # --- the studio, as a user and an operator see it -------------------------------------------------------

    def submit(self, planned: Planned, user) -> None:
        from studio.actions.renders import do_cancel_render, do_submit_render
        from studio.forms import RenderForm

        form = RenderForm(planned.data)
        if not form.is_valid():
            raise RuntimeError(f"the chaos plan made an invalid render: {form.errors.as_json()}")
        render = do_submit_render(user, form.order())
        planned.render_id = render.pk
        self.note(f"submitted {planned.marker} ({planned.data['model']}) as render {render.pk}")
        if planned.cancel == "pending":
            self.note(f"cancel {planned.marker}: {do_cancel_render(render).message}")

    def states(self) -> dict[Any, tuple[str, datetime]]:
        """Each submitted render's state and when a step last moved it."""
        from studio.models import Render

        ids = [p.render_id for p in self.plan if p.render_id is not None]
        rows = Render.objects.filter(pk__in=ids).values_list("pk", "state", "updated_at")
        return {pk: (state, updated) for pk, state, updated in rows}

    def tend(self) -> dict[Any, tuple[str, datetime]]:
        """Do what the user would meanwhile (the planned cancels); the states of the renders now."""
        from studio.actions.renders import do_cancel_render
        from studio.models import AT_GATEWAY, Render

        states = self.states()
        now = time.monotonic()
        for planned in self.plan:
            if planned.cancel != "gateway" or planned.render_id is None:
                continue
            state = states.get(planned.render_id, ("", None))[0]
            if state in AT_GATEWAY and planned.at_gateway_since is None:
                planned.at_gateway_since = now
            if (
                planned.at_gateway_since is not None
                and now - planned.at_gateway_since >= planned.cancel_after
            ):
                planned.cancel = None  # once: a second click is a no-op anyway
                outcome = do_cancel_render(Render.objects.get(pk=planned.render_id))
                self.note(f"cancel {planned.marker}: {outcome.message}")
        return states

    def pause(self, seconds: float) -> dict[Any, tuple[str, datetime]]:
        deadline = time.monotonic() + seconds
        states = self.tend()
        while time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            states = self.tend()
        return states

    # --- the run ---------------------------------------------------------------------------------------------

    def execute(self) -> dict:
        from django.contrib.auth import get_user_model

        from studio.emulator import Emulator, EmulatorConfig

        started = time.monotonic()
        emulator = Emulator(
            EmulatorConfig(speed=self.spec["speed"], fps=4, data_dir=self.run_dir / "emulator")
        ).start()
        env = {**os.environ, "BYTESPIKE_BASE_URL": emulator.base_url}
        cluster = Cluster(env, self.run_dir)
        user = get_user_model().objects.create_user("chaos")
        kills = self.spec["kills"]
        try:
            self.note(f"cluster {cluster.start()} started")
            first = max(1, len(self.plan) - kills)  # then one more before every kill, while any are left
            waiting = list(self.plan)
            for planned in waiting[:first]:
                self.submit(planned, user)
            waiting = waiting[first:]
            for number in range(kills):
                phase = self.rng.choice(self.spec["phases"])
                sig_name = self.rng.choice(self.spec["signals"])
                self.kill_during(phase, sig_name, emulator, cluster, waiting, user)
                if number < kills - 1:
                    self.pause(self.rng.uniform(0.2, 2.0))
                    self.note(f"cluster {cluster.start()} started")
            self.pause(self.rng.uniform(0.2, 2.0))
            for planned in waiting:  # renders the kills did not use: submitted while the cluster is down
                self.submit(planned, user)
            emulator.clear_faults()
            if not cluster.running:  # with no kills, the first cluster is the healthy one
                self.note(f"cluster {cluster.start()} started: the healthy restart")
            healthy = time.monotonic()
            self.finish(self.spec["finish_timeout"])
            finish_seconds = time.monotonic() - healthy
            cluster.kill(signal.SIGTERM)
        finally:
            cluster.kill()
            emulator.stop()
        result = self.check(emulator.data_dir / "tasks.json")
        result.update(
            kills=kills,
            kills_by_phase=dict(self.kills_by_phase),
            kill_log=self.kill_log,
            seconds=time.monotonic() - started,
            finish_seconds=finish_seconds,
        )
        return result

    def kill_during(self, phase: str, sig_name: str, emulator, cluster: Cluster, waiting: list, user) -> None:
        """Kill the cluster while a render is in `phase`, a random moment into it (at most 30 s of waiting)."""
        from studio.models import AT_GATEWAY, State

        live = {"submit": {State.SUBMITTING}, "poll": set(AT_GATEWAY), "download": {State.DOWNLOADING}}
        window = 1.0
        if phase == "submit":
            # A gateway taking its time to answer: the task exists, the answer has not arrived.
            window = self.rng.uniform(0.3, 2.0)
            emulator.add_fault("submit", kind="hang", seconds=window)
        elif phase == "download":
            window = self.rng.uniform(0.5, 3.0)
            emulator.add_fault("result", kind="slow", seconds=window)
        if waiting:
            self.submit(waiting.pop(0), user)

        def busy(states: dict) -> set[str]:
            """The phases this cluster is working on: states a step of it moved a render into."""
            moved = {state for state, updated in states.values() if updated >= cluster.started_at}
            return {p for p in PHASES if moved & live[p]}

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and phase not in busy(self.tend()):
            time.sleep(0.02)
        states = self.pause(self.rng.uniform(0, window))
        now_busy = busy(states)
        landed = next((p for p in (phase, *PHASES) if p in now_busy), "elsewhere")
        self.kills_by_phase[landed] += 1
        self.kill_log.append(f"{sig_name}@{phase}" + ("" if landed == phase else f"->{landed}"))
        pid = cluster.process.pid if cluster.process else None
        seen = sorted(state for state, _ in states.values())
        self.note(
            f"{sig_name} to cluster {pid} during {phase} (busy with: {sorted(now_busy)}; states {seen})"
        )
        cluster.kill(SIGNALS[sig_name])
        self.note(f"cluster {pid} is gone")

    def finish(self, timeout: float) -> None:
        """Wait until every render has ended and its hold is settled, or the deadline."""
        deadline = time.monotonic() + timeout
        while self.not_ended() and time.monotonic() < deadline:
            self.pause(0.5)

    def not_ended(self) -> int:
        from studio.models import TERMINAL

        return sum(1 for state, _ in self.tend().values() if state not in TERMINAL) + len(self.unsettled())

    def unsettled(self) -> list:
        """Ended renders with no ledger outcome, but those that hold on purpose (submit_unknown, stalled)."""
        from studio.models import TERMINAL, LedgerEntry, Render
        from studio.money.ledger import ENDS_A_HOLD, STILL_HOLDING

        ids = [p.render_id for p in self.plan if p.render_id is not None]
        ended = Render.objects.filter(pk__in=ids, state__in=TERMINAL - STILL_HOLDING)
        settled = LedgerEntry.objects.filter(render__in=ended, kind__in=ENDS_A_HOLD).values("render")
        return list(ended.exclude(pk__in=settled).values_list("pk", flat=True))

    # --- the checks ------------------------------------------------------------------------------------------

    def check(self, tasks_json: Path) -> dict:
        from django.conf import settings
        from django.db.models import Count

        from studio.models import TERMINAL, LedgerEntry, Render, State
        from studio.money.ledger import ENDS_A_HOLD

        tasks = json.loads(tasks_json.read_text(encoding="utf-8"))["tasks"].values()
        at_gateway = Counter(task["prompt"].split(":", 1)[0] for task in tasks)
        problems: list[str] = []
        renders = {r.pk: r for r in Render.objects.filter(pk__in=[p.render_id for p in self.plan])}
        doubles = unknown = reached = unplayable = 0
        for planned in self.plan:
            render = renders[planned.render_id]
            sent = at_gateway[planned.marker]
            if sent > 1:
                doubles += sent - 1
                problems.append(f"render {render.pk} ({planned.marker}) was submitted {sent} times")
            if render.state == State.SUBMIT_UNKNOWN:
                unknown += 1
                reached += sent > 0
            if render.state == State.COMPLETED:
                complaint = _unplayable(Path(settings.MEDIA_ROOT), render)
                if complaint:
                    unplayable += 1
                    problems.append(f"render {render.pk} completed, but {complaint}")
            elif render.state not in TERMINAL:
                problems.append(f"render {render.pk} still {render.state} after the healthy restart")
        outcomes = (
            LedgerEntry.objects.filter(render__in=renders.values(), kind__in=ENDS_A_HOLD)
            .values("render")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        )
        double_settled = sum(row["n"] - 1 for row in outcomes)
        unsettled = self.unsettled()
        problems += [f"render {pk} ended but still holds its estimate" for pk in unsettled]
        self.record(renders)
        media = Path(settings.MEDIA_ROOT)
        leftovers = sorted({*media.rglob("*.part"), *media.rglob(".poster-*")}) if media.exists() else []
        problems += [f"leftover {path.relative_to(media)}" for path in leftovers]
        return {
            "renders": len(self.plan),
            "states": dict(Counter(r.state for r in renders.values())),
            "double_submissions": doubles,
            "double_settlements": double_settled,
            "unsettled": len(unsettled),
            "unfinished": sum(1 for r in renders.values() if r.state not in TERMINAL),
            "unplayable": unplayable,
            "submit_unknown": unknown,
            "submit_unknown_reached": reached,
            "leftover_temp_files": len(leftovers),
            "errors": 0,
            "problems": problems,
        }

    def record(self, renders: dict) -> None:
        """Keep what the database says of each render beside the run's logs (its database is dropped later)."""
        from studio.models import LedgerEntry

        ledger: dict[Any, list] = {}
        for entry in LedgerEntry.objects.filter(render__in=renders.values()):
            ledger.setdefault(entry.render_id, []).append(
                f"{entry.kind} ${entry.amount} {entry.note}".strip()
            )
        rows = [
            {
                "marker": planned.marker,
                "model": planned.data.get("model"),
                "id": str(planned.render_id),
                "state": renders[planned.render_id].state,
                "error": renders[planned.render_id].error,
                "gateway_task_id": renders[planned.render_id].gateway_task_id,
                "submit_attempts": renders[planned.render_id].submit_attempts,
                "download_attempts": renders[planned.render_id].download_attempts,
                "ledger": ledger.get(planned.render_id, []),
            }
            for planned in self.plan
        ]
        (self.run_dir / "renders.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


def _unplayable(media: Path, render) -> str:
    """Why a completed render's clip would not play ("" when it plays): missing, another size, or undecodable."""
    import imageio_ffmpeg

    if not render.video:
        return "it has no clip"
    path = media / render.video.name
    if not path.is_file():
        return "its clip is missing"
    if render.video_bytes and path.stat().st_size != render.video_bytes:
        return f"its clip is {path.stat().st_size} bytes, not {render.video_bytes}"
    decode = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", f"file:{path}", "-f", "null", "-"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    errors = decode.stderr.decode("utf-8", "replace").strip()
    if decode.returncode or errors:
        return f"its clip does not decode ({errors.splitlines()[-1] if errors else decode.returncode})"
    return ""


def _child(spec: dict) -> None:
    """Carry out one run (the environment names its data directory and database) and print its result."""
    from studio.bootstrap import prepare_data_dir

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    run_dir = prepare_data_dir()
    import django

    django.setup()

    def stop(signum, frame):
        raise SystemExit(1)  # the finally clauses take the cluster down

    signal.signal(signal.SIGTERM, stop)
    result = ChildRun(spec, run_dir).execute()
    print(json.dumps(result, default=str), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m studio.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=30, help="runs per backend (default 30)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: sqlite, postgres")
    parser.add_argument("--seed", type=int, default=None, help="the first run's seed (default: random)")
    parser.add_argument("--kills", type=int, default=3, help="kills per run before the healthy restart")
    parser.add_argument("--renders", type=int, default=6, help="renders per run")
    parser.add_argument(
        "--speed", type=float, default=10.0, help="the emulator's speed (divides its timings)"
    )
    parser.add_argument(
        "--finish-timeout", type=float, default=300.0, help="seconds after the healthy restart (default 300)"
    )
    parser.add_argument("--dir", type=Path, default=BASE_DIR / "var" / "chaos", help="where runs live")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="dropped and created for every run")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--jobs", type=int, default=6, help="runs at a time (default 6): a run mostly waits")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="what kills land in: submit, poll, download"
    )
    parser.add_argument("--signals", default=",".join(sorted(SIGNALS)), help="SIGKILL, SIGTERM")
    parser.add_argument("--keep", action="store_true", help="keep the data of passing runs too")
    parser.add_argument("--verbose", action="store_true", help="INFO logs in each run's cluster.log")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return 0
    backends, phases, signals = (
        tuple(item.strip() for item in value.split(",") if item.strip())
        for value in (args.backends, args.phases, args.signals)
    )
    for option, chosen, allowed in (
        ("--backends", backends, BACKENDS),
        ("--phases", phases, PHASES),
        ("--signals", signals, tuple(SIGNALS)),
    ):
        if not chosen or set(chosen) - set(allowed):
            parser.error(f"{option} takes one or more of {', '.join(allowed)}")
    if min(args.runs, args.renders, args.jobs) < 1 or args.kills < 0 or args.speed <= 0:
        parser.error("--runs, --renders and --jobs must be at least 1, --kills at least 0, --speed positive")
    if "chaos" not in urlsplit(args.pg_url).path:
        parser.error("--pg-url must name a database whose name contains 'chaos': it is dropped for every run")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    opts = Options(
        runs=args.runs,
        backends=backends,
        seed=seed,
        kills=args.kills,
        renders=args.renders,
        speed=args.speed,
        finish_timeout=args.finish_timeout,
        root=args.dir.resolve(),
        pg_url=args.pg_url,
        redis_url=args.redis_url,
        keep=args.keep,
        jobs=args.jobs,
        log_level="INFO" if args.verbose else "WARNING",
        phases=phases,
        signals=signals,
    )
    return run(opts)


if __name__ == "__main__":
    sys.exit(main())
