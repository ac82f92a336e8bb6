"""The emulator as a server: `Emulator` binds, serves and stops; `_Handler` answers each request.

- "OpenAI Video" (`sora2`, `Authorization: Bearer`): POST /v1/videos/generations,
  GET /v1/videos/tasks/{id}, POST /v1/videos/tasks/{id}/cancel (assumed path).
- tasks API (`sora-2-pro`, `x-api-key`): POST /v1/tasks/submit, GET /v1/tasks/query?task_id=,
  POST /v1/tasks/cancel (assumed path).
- Pre-signed results: GET /files/{task_id}.mp4?expires=&sig= (no credential; 403 once expired or tampered),
  answering a single `Range: bytes=` with 206 (416 past the end), as a CDN does.
- Test controls (no auth) under /_emulator/: see controls.py.

The handler reads the request, checks the credential, consumes any queued fault and acts it out, and leaves
the meaning to protocol.py (validation, answers) and state.py (the tasks).
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import json
import logging
import re
import socket
import socketserver
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from . import protocol
from .controls import handle_control
from .faults import Faults, fault_error
from .protocol import OPENAI, TASKS, ApiError, invalid
from .state import EmulatorConfig, TaskStore

log = logging.getLogger("studio.emulator")

MAX_BODY = 32 * 1024 * 1024
FILE_CHUNK = 64 * 1024
_HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


class Emulator:
    """The gateway emulator. `start()` serves in a daemon thread; `serve_forever()` in the foreground."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        if self.config.speed <= 0:
            raise ValueError("speed must be positive")
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._tmp: tempfile.TemporaryDirectory | None = None
        if self.config.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bytespike-emulator-")
            self.data_dir = Path(self._tmp.name)
        else:
            self.data_dir = Path(self.config.data_dir)
        self.store = TaskStore(self.config, self.data_dir)
        self.clips_dir = self.store.clips_dir
        self.faults = Faults()
        self._file_log: list[dict] = []

    # --- lifecycle ----------------------------------------------------------------------------------------

    def bind(self) -> Emulator:
        """Bind the listening socket (idempotent) and resume renders of tasks loaded from disk."""
        self._bound()
        return self

    def _bound(self) -> _Server:
        """The listening server, bound (and the renders of loaded tasks resumed) on the first call."""
        if self._httpd is None:
            self._httpd = _Server((self.config.host, self.config.port), _Handler)
            self._httpd.emulator = self
            self.store.start_renders()
        return self._httpd

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not bound yet; call start() or bind()")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        host = self.config.host
        if host in ("", "0.0.0.0"):  # noqa: S104 - a label, not a bind
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> Emulator:
        if self._thread is not None:
            return self
        httpd = self._bound()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="emulator-http", daemon=True
        )
        self._thread.start()
        log.info("Gateway emulator listening on %s", self.base_url)
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground until KeyboardInterrupt (or SystemExit from a signal handler)."""
        httpd = self._bound()
        try:
            httpd.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self._shutdown(serving_here=True)

    def stop(self) -> None:
        self._shutdown(serving_here=False)

    def _shutdown(self, *, serving_here: bool) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.store.stop_renders()
        if self._httpd is not None:
            if not serving_here and self._thread is not None:
                self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_connections()
        self.store.join_renders()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.close()  # tasks.json whole: readers after a stop find every task there
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Emulator:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- for tests: the task store and the fault queue ----------------------------------------------------

    @property
    def submissions(self) -> int:
        return self.store.submissions

    def task(self, task_id: str) -> dict:
        """A copy of the task record plus its derived status, progress, credits and times (unix seconds)."""
        return self.store.task(task_id)

    def tasks(self) -> list[str]:
        return self.store.tasks()

    def expire_results(self) -> None:
        """Expire the result URL of every task that exists now (tasks submitted afterwards are unaffected)."""
        self.store.expire_results()

    def now(self) -> float:
        return self.store.now()

    def add_fault(self, op: str, times: int = 1, **spec) -> None:
        """Queue a fault consumed by the next `times` matching requests (FIFO per op); see faults.py."""
        self.faults.add(op, times, **spec)

    def clear_faults(self) -> None:
        self.faults.clear()

    def pending_faults(self) -> dict[str, int]:
        return self.faults.pending()

    def poll_log(self) -> dict:
        """Every poll so far, per task: {task id: {"submitted_at": t, "polls": [t, ...]}} (unix seconds)."""
        return self.store.poll_log()

    def log_file_request(self, entry: dict) -> None:
        """Remember a result-file request; the handler keeps updating `entry` (bytes sent) as it streams."""
        with self._lock:
            self._file_log.append(entry)

    def file_requests(self, task_id: str | None = None) -> list[dict]:
        """Every result-file GET so far (of one task): its Range header, status, first byte and bytes sent."""
        with self._lock:
            return [dict(e) for e in self._file_log if task_id is None or e["task_id"] == task_id]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    emulator: Emulator

    def __init__(self, address: tuple[str, int], handler) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._conns_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall without DNS; it is not needed.
        socketserver.TCPServer.server_bind(self)
        # (host, port) for AF_INET, (host, port, flowinfo, scope_id) for AF_INET6
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, conn: socket.socket, *, open_: bool) -> None:
        """Remember (or forget) a connection being served, so that stopping can close it."""
        with self._conns_lock:
            if open_:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        """Shut down every connection still open: keep-alive ones would otherwise go on being served."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


ROUTES: list[tuple[re.Pattern, dict[str, str]]] = [
    (re.compile(r"/v1/videos/generations"), {"POST": "openai_submit"}),
    (re.compile(r"/v1/videos/tasks/(?P<task_id>[^/]+)"), {"GET": "openai_poll"}),
    (re.compile(r"/v1/videos/tasks/(?P<task_id>[^/]+)/cancel"), {"POST": "openai_cancel"}),
    (re.compile(r"/v1/tasks/submit"), {"POST": "tasks_submit"}),
    (re.compile(r"/v1/tasks/query"), {"GET": "tasks_poll"}),
    (re.compile(r"/v1/tasks/cancel"), {"POST": "tasks_cancel"}),
    (re.compile(r"/files/(?P<task_id>[A-Za-z0-9_]+)\.mp4"), {"GET": "file", "HEAD": "file"}),
]


class _Dropped(Exception):
    """Close the connection without answering."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm on, the body waits for the client's delayed
    # ACK of the headers (~40 ms on Linux) on every keep-alive answer.
    disable_nagle_algorithm = True
    server_version = "bytespike-emulator/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections
    server: _Server

    # --- plumbing -----------------------------------------------------------------------------------------

    @property
    def emu(self) -> Emulator:
        return self.server.emulator

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.track(self.connection, open_=False)

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass  # one line per request is logged by _log instead (never headers, so never the credential)

    def _log(self, status) -> None:
        log.info("%s %s %s", self.command, urlsplit(getattr(self, "path", "") or "").path, status)

    def send_error(self, code, message=None, explain=None) -> None:
        """Malformed requests and unsupported methods get the same JSON error shape as everything else."""
        self.close_connection = True
        err = ApiError(code, None, message if code != 501 else f"{self.command} is not supported.")
        try:
            self._send_json(code, err.body())
        except OSError:
            pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        # Logged before the answer leaves: whoever reads the answer can count on the line being there.
        self._log(status)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    raise ApiError(413)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "invalid_request", "The Content-Length header is invalid.") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413)
        return self.rfile.read(length) if length > 0 else b""

    def _json_body(self, raw: bytes, *, allow_list: bool = False):
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "invalid_request", "The request body must be valid JSON.") from None
        if isinstance(body, dict) or (allow_list and isinstance(body, list)):
            return body
        raise ApiError(400, "invalid_request", "The request body must be a JSON object.")

    def _authenticate(self, protocol_name: str) -> None:
        credential = protocol.credential(protocol_name, self.headers)
        expected = self.emu.config.api_key
        if expected is not None and not hmac.compare_digest(credential.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "The API key is invalid.")

    def _origin(self) -> str:
        host = (self.headers.get("Host") or "").strip()
        return f"http://{host}" if _HOST_HEADER.match(host) else self.emu.base_url

    # --- dispatch -----------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
            parts = urlsplit(self.path)
            path = parts.path
            query = parse_qs(parts.query, keep_blank_values=True)
            if path.startswith("/_emulator/"):
                body = self._json_body(raw, allow_list=True) if raw.strip() else {}
                status, payload = handle_control(self.command, path, body, self.emu.store, self.emu.faults)
                self._send_json(status, payload)
                return
            for pattern, methods in ROUTES:
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                name = methods.get(self.command)
                if name is None:
                    raise ApiError(
                        405,
                        "method_not_allowed",
                        f"{self.command} is not allowed on {path}.",
                        headers={"Allow": ", ".join(methods)},
                    )
                getattr(self, f"_op_{name}")(raw, query, **match.groupdict())
                return
            raise ApiError(404, "not_found", f"No route for {self.command} {path}.")
        except ApiError as err:
            headers = dict(err.headers)
            if err.status == 405 and "Allow" not in headers:
                headers["Allow"] = "GET, POST"
            self._reply_error(err, headers)
        except _Dropped:
            self.close_connection = True
            self._log("dropped")
        except OSError:
            self.close_connection = True
            self._log("client-gone")
        except Exception:
            log.exception("Emulator error on %s %s", self.command, urlsplit(self.path).path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._reply_error(ApiError(500), {})

    # http.server calls do_<METHOD>; every method goes through the one router, which answers 405 where due.
    do_GET = do_POST = do_HEAD = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _reply_error(self, err: ApiError, headers: dict[str, str]) -> None:
        self._send_json(err.status, err.body(), headers)

    # --- protocol operations ------------------------------------------------------------------------------

    def _submit(self, raw: bytes, protocol_name: str, validate) -> dict:
        self._authenticate(protocol_name)
        fault = self.emu.faults.take("submit")
        if fault is not None and "status" in fault and fault.get("kind") is None:
            raise fault_error(fault)
        spec = validate(self._json_body(raw))
        self.emu.store.check_prompt(
            spec["prompt"]
        )  # before the task fault: a blocked prompt leaves it queued
        record = self.emu.store.create_task(spec, self.emu.faults.task_failure())
        if fault is not None and fault.get("kind") == "hang":
            time.sleep(float(fault.get("seconds", 30)))
        elif fault is not None and fault.get("kind") == "drop":
            raise _Dropped
        return record

    def _op_openai_submit(self, raw: bytes, query: dict) -> None:
        record = self._submit(raw, OPENAI, protocol.validate_sora2)
        self._send_json(200, protocol.openai_submitted(record))

    def _op_tasks_submit(self, raw: bytes, query: dict) -> None:
        record = self._submit(raw, TASKS, protocol.validate_pro)
        self._send_json(200, protocol.tasks_submitted(record))

    def _poll(self, protocol_name: str, task_id: str, shape) -> None:
        self._authenticate(protocol_name)
        self.emu.store.record_poll(task_id)
        fault = self.emu.faults.take("poll")
        if fault is not None:
            kind = fault.get("kind")
            if kind is None:
                raise fault_error(fault)
            if kind == "slow":
                time.sleep(float(fault.get("seconds", 30)))
            elif kind == "malformed":
                self._send(200, b'{"status": "runn', "application/json")
                return
        record, view = self.emu.store.lookup(task_id, protocol_name)
        url = None
        if view["status"] == "completed":
            url = self.emu.store.result_url(record["task_id"], view["expires_at"], self._origin())
        payload = shape(record, view, url)
        if fault is not None and fault.get("kind") == "status":
            payload["status"] = fault.get("value")
        self._send_json(200, payload)

    def _op_openai_poll(self, raw: bytes, query: dict, task_id: str) -> None:
        self._poll(OPENAI, task_id, protocol.openai_status)

    def _op_tasks_poll(self, raw: bytes, query: dict) -> None:
        self._authenticate(TASKS)
        task_id = (query.get("task_id") or [""])[0].strip()
        if not task_id:
            raise invalid("task_id", "task_id is required as a query parameter")
        self._poll(TASKS, task_id, protocol.tasks_status)

    def _cancel(self, protocol_name: str, task_id: str) -> None:
        fault = self.emu.faults.take("cancel")
        if fault is not None and "status" in fault:
            raise fault_error(fault)
        self._send_json(200, self.emu.store.cancel(task_id, protocol_name))

    def _op_openai_cancel(self, raw: bytes, query: dict, task_id: str) -> None:
        self._authenticate(OPENAI)
        self._cancel(OPENAI, task_id)

    def _op_tasks_cancel(self, raw: bytes, query: dict) -> None:
        self._authenticate(TASKS)
        body = self._json_body(raw) if raw.strip() else {}
        task_id = body.get("task_id") or (query.get("task_id") or [""])[0]
        if not isinstance(task_id, str) or not task_id.strip():
            raise invalid("task_id", "task_id is required")
        self._cancel(TASKS, task_id.strip())

    def _op_file(self, raw: bytes, query: dict, task_id: str) -> None:
        fault = self.emu.faults.take("result")
        kind = fault.get("kind") if fault else None
        if fault is not None and kind is None:
            raise fault_error(fault)
        if kind == "wrong_type":
            html = b"<!doctype html><html><head><title>Sign in</title></head><body>Sign in.</body></html>"
            self._send(200, html, "text/html; charset=utf-8")
            return
        if kind == "redirect" and fault is not None:  # a kind comes from a fault
            location = str(fault.get("location") or "/")
            self._send(302, b"", "text/plain", {"Location": location})
            return
        expires, sig = (query.get(name, [""])[0] for name in ("expires", "sig"))
        path = self.emu.store.signed_clip(task_id, expires, sig)
        size = path.stat().st_size
        header = self.headers.get("Range") or ""
        wanted = None if kind == "ignore_range" else parse_range(header, size)
        entry = {"task_id": task_id, "range": header, "kind": kind, "start": 0, "sent": 0, "status": 200}
        self.emu.log_file_request(entry)
        headers = {"Cache-Control": "private, max-age=0", "Accept-Ranges": "bytes"}
        if kind == "ignore_range":
            headers["Accept-Ranges"] = "none"
        if wanted == UNSATISFIABLE:
            entry["status"] = 416
            self._send(416, b"", "text/plain", {**headers, "Content-Range": f"bytes */{size}"})
            return
        start, end = wanted if isinstance(wanted, tuple) else (0, size - 1)
        status = 206 if isinstance(wanted, tuple) else 200
        entry.update(status=status, start=start)
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            self._log(status)
            return
        self._stream_clip(path, start, end - start + 1, kind, fault or {}, entry)

    def _stream_clip(self, path: Path, start: int, length: int, kind, fault: dict, entry: dict) -> None:
        """Write `length` bytes of the clip from `start`, acting out a result fault on the way."""
        limit = length
        if kind == "truncate":
            limit = length // 2
        elif kind in ("cut", "stall"):
            limit = min(length, int(fault.get("after", length // 2)))
        rate = int(fault.get("rate", 0)) if kind == "trickle" else 0
        if kind == "slow":  # the whole clip spread over `seconds`: a download that takes a while
            rate = max(1, int(length / max(float(fault.get("seconds", 5)), 0.001)))
        piece = max(1, rate // 10) if rate else FILE_CHUNK
        damaged = damaged_span(path.stat().st_size) if kind == "damaged" else None
        with path.open("rb") as handle:
            handle.seek(start)
            while entry["sent"] < limit:
                offset = start + entry["sent"]
                chunk = handle.read(min(piece, limit - entry["sent"]))
                if not chunk:
                    break
                if damaged is not None:
                    chunk = zero_span(chunk, offset, damaged)
                self.wfile.write(chunk)
                entry["sent"] += len(chunk)
                if rate:
                    self.wfile.flush()
                    time.sleep(len(chunk) / rate)
        if kind == "stall":
            self.wfile.flush()
            time.sleep(float(fault.get("seconds", 30)))
        if limit < length:
            self.wfile.flush()
            self.close_connection = True
            self._log(f"{entry['status']}-{kind}")
            return
        self._log(entry["status"])


UNSATISFIABLE = "unsatisfiable"
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str, size: int):
    """(first, last) of a single `bytes` range, UNSATISFIABLE, or None to answer the whole file."""
    match = _RANGE.match(header or "")
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        suffix = int(last)
        if suffix == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # invalid: ignored, the whole file is served
    if start >= size:
        return UNSATISFIABLE
    return start, end


DAMAGE_BYTES = 4096


def damaged_span(size: int) -> tuple[int, int]:
    """Where a damaged copy is zeroed: 4 KB in the middle, which a probe and a first-frame grab never read."""
    middle = size // 2
    return middle, min(size, middle + DAMAGE_BYTES)


def zero_span(chunk: bytes, offset: int, span: tuple[int, int]) -> bytes:
    """`chunk` (at `offset` in the file) with the bytes inside `span` zeroed."""
    lo, hi = max(span[0], offset), min(span[1], offset + len(chunk))
    if lo >= hi:
        return chunk
    return chunk[: lo - offset] + bytes(hi - lo) + chunk[hi - offset :]
