"""The gateway client: one interface, one adapter per protocol, exactly as the vendor pages specify.

- `sora2` speaks "OpenAI Video": POST /v1/videos/generations, GET /v1/videos/tasks/{id}, Bearer auth.
- `sora-2-pro` speaks the tasks API: POST /v1/tasks/submit, GET /v1/tasks/query?task_id=, x-api-key auth.
Cancel paths are not documented; the ones used here are assumptions stated in the README.

The credential is attached per request by the adapter (never as a client default), so result downloads from
the CDN never carry it, and it is never part of a log line, an exception message or a task argument.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import os
import re
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import httpx
from django.conf import settings

from studio import metrics
from studio.catalog import MODELS, Protocol
from studio.gateway.types import (
    BadRequest,
    CancelResult,
    CredentialsRejected,
    DownloadError,
    GatewayError,
    GatewayUnavailable,
    MalformedResponse,
    NotCancellable,
    NotFound,
    PromptBlocked,
    RateLimited,
    RenderRequest,
    Submission,
    SubmitOutcomeUnknown,
    TaskState,
    TaskStatus,
    WalletEmpty,
)
from studio.media import looks_like_mp4

log = logging.getLogger("studio.gateway")

STATUS_MAP = {
    "queued": TaskState.QUEUED,
    "pending": TaskState.QUEUED,
    "submitted": TaskState.QUEUED,
    "running": TaskState.RUNNING,
    "in_progress": TaskState.RUNNING,
    "processing": TaskState.RUNNING,
    "completed": TaskState.COMPLETED,
    "succeeded": TaskState.COMPLETED,
    "success": TaskState.COMPLETED,
    "failed": TaskState.FAILED,
    "error": TaskState.FAILED,
    "cancelled": TaskState.CANCELLED,
    "canceled": TaskState.CANCELLED,
    "expired": TaskState.EXPIRED,
}
DEFAULT_RESULT_TTL = timedelta(hours=24)  # "URLs pre-signed, 24h expiry"
MAX_REDIRECTS = 3
# Transport failures that happen before any byte of the request reached the gateway.
NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,  # the request was refused locally while its headers were being built
)
# What a transport failure was, in words: messages are read by people (cards, the detail page), never class names.
_IN_WORDS: list[tuple[type[Exception], str]] = [
    (httpx.ConnectTimeout, "the connection timed out"),
    (httpx.ConnectError, "the connection was refused"),
    (httpx.PoolTimeout, "too many requests were waiting"),
    (httpx.ReadTimeout, "it did not answer in time"),
    (httpx.WriteTimeout, "sending took too long"),
    (httpx.RemoteProtocolError, "the connection dropped"),
    (httpx.ReadError, "the connection dropped"),
    (httpx.WriteError, "the connection dropped while sending"),
    (httpx.ProxyError, "the proxy refused the connection"),
]


def in_words(exc: Exception) -> str:
    """What a transport failure was, as people read it ("the connection dropped")."""
    return next((words for kind, words in _IN_WORDS if isinstance(exc, kind)), "the connection failed")


CHUNK = 256 * 1024
MIN_REDACTED = 8  # shorter credentials are test stand-ins; scrubbing them would mangle messages


def _decimal(value) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None  # Python's JSON parser accepts NaN and Infinity


def _when(value) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); 1 s when absent."""
    if not value:
        return 1.0
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else 1.0
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    if when.tzinfo is None:  # a "-0000" zone parses as naive; HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_message(response: httpx.Response) -> tuple[str, str]:
    """The gateway's own (code, message) from an error body, whatever its shape."""
    try:
        body = response.json()
    except ValueError:
        return "", (response.text or "").strip()[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")[:500]
    if isinstance(error, str):
        return "", error[:500]
    if isinstance(body, dict) and body.get("message"):
        return "", str(body["message"])[:500]
    return "", ""


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process (httpx's default: certifi's CAs, or SSL_CERT_FILE/SSL_CERT_DIR).
    Building one loads the CA bundle, ~20-50 ms of CPU: a client made per task (every submission and download
    attempt) paid that each time, more than a thousand polls cost."""
    return httpx.create_ssl_context()


def raise_for_status(response: httpx.Response) -> None:
    """Turn an error answer into the typed error the lifecycle acts on."""
    status = response.status_code
    if status < 400:
        return
    code, message = _error_message(response)
    if status == 400:
        raise BadRequest(message or "The gateway rejected the request.", status=status, code=code)
    if status in (401, 403):
        raise CredentialsRejected(
            message or "The gateway rejected the studio's credentials.", status=status, code=code
        )
    if status == 402:
        raise WalletEmpty(message or "The gateway wallet is empty.", status=status, code=code)
    if status == 404:
        raise NotFound(message or "The gateway does not know this task.", status=status, code=code)
    if status == 409:
        raise NotCancellable(message or "The task already ended.", status=status, code=code)
    if status == 451:
        raise PromptBlocked(message or "The prompt was blocked by upstream safety.", status=status, code=code)
    if status == 429:
        raise RateLimited(
            message or "The gateway is rate limiting the studio.",
            retry_after=_retry_after(response.headers.get("retry-after")),
            code=code,
        )
    if status >= 500:
        raise GatewayUnavailable(message or f"The gateway failed ({status}).", status=status, code=code)
    raise GatewayError(message or f"The gateway answered {status}.", status=status, code=code)


def _json_object(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError as exc:
        raise MalformedResponse(
            "The gateway answered with malformed JSON.", status=response.status_code
        ) from exc
    if not isinstance(body, dict):
        raise MalformedResponse("The gateway answered with an unexpected shape.", status=response.status_code)
    return body


def _state(task_id: str, raw) -> tuple[TaskState, bool]:
    state = STATUS_MAP.get(str(raw).strip().lower()) if raw is not None else None
    if state is None:
        log.warning("Gateway task %s reported an unknown status %r; treating it as running", task_id, raw)
        return TaskState.RUNNING, False
    return state, True


def _progress(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0, min(100, int(value)))


def _url(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _expires_at(state: TaskState, value, completed_at: datetime | None) -> datetime | None:
    """The result URL's expiry: as reported, else the documented 24 h from completion."""
    expires = _when(value)
    if expires is None and state == TaskState.COMPLETED and completed_at is not None:
        expires = completed_at + DEFAULT_RESULT_TTL
    return expires


class Adapter:
    """One protocol: submit, poll and cancel over a shared httpx client."""

    def __init__(self, http: httpx.Client, credential: str) -> None:
        self.http = http
        self._credential = (credential or "").strip()  # a key read from a file often ends in a newline

    def auth_headers(self) -> dict[str, str]:  # pragma: no cover - each protocol defines it
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        """The auth headers, refusing locally a credential no gateway could accept (nothing is sent)."""
        credential = self._credential
        if not credential or not credential.isascii() or not credential.isprintable() or " " in credential:
            raise CredentialsRejected("The studio has no usable gateway API key (empty or malformed).")
        return self.auth_headers()

    def _raise_for_status(self, response: httpx.Response) -> None:
        """raise_for_status, with the credential scrubbed from the gateway's message should it echo it."""
        try:
            raise_for_status(response)
        except GatewayError as exc:
            if len(self._credential) >= MIN_REDACTED and self._credential in exc.message:
                exc.message = exc.message.replace(self._credential, "[redacted]")
                exc.args = (exc.message,)
            raise

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """Send a request that is safe to repeat (poll, cancel): every transport failure is retryable."""
        try:
            response = self.http.request(method, path, headers=self._headers(), **kwargs)
        except httpx.TransportError as exc:
            raise GatewayUnavailable(f"Could not reach the gateway: {in_words(exc)}.") from exc
        except httpx.RequestError as exc:  # e.g. a body that fails to decode
            raise MalformedResponse("The gateway's answer could not be read.") from exc
        self._raise_for_status(response)
        return response

    def _submit(self, path: str, body: dict) -> dict:
        """POST a submission. Failing to connect is retryable; failing after sending is 'outcome unknown'."""
        try:
            response = self.http.post(path, json=body, headers=self._headers())
        except NOT_SENT as exc:
            raise GatewayUnavailable(
                f"Could not connect to the gateway ({in_words(exc)}), so nothing was sent."
            ) from exc
        except httpx.RequestError as exc:
            raise SubmitOutcomeUnknown(
                f"The gateway did not answer the submission ({in_words(exc)}); it may have been accepted."
            ) from exc
        self._raise_for_status(response)
        try:
            return _json_object(response)
        except MalformedResponse as exc:
            raise SubmitOutcomeUnknown(
                "The gateway accepted the submission with an unreadable answer."
            ) from exc

    submit_path = ""
    submitted_at_field = ""

    def body(self, request: RenderRequest) -> dict:  # pragma: no cover - each protocol defines it
        raise NotImplementedError

    def submit(self, request: RenderRequest) -> Submission:
        """Send the protocol's body; the answer's shape is shared but for the name of its timestamp."""
        answer = self._submit(self.submit_path, self.body(request))
        task_id = self._task_id(answer)
        state, _ = _state(task_id, answer.get("status", "queued"))
        return Submission(
            task_id=task_id,
            status=state,
            estimated_credits=_decimal(answer.get("estimated_credits")),
            submitted_at=_when(answer.get(self.submitted_at_field)),
        )

    @staticmethod
    def _task_status(task_id: str, body: dict, result_url, expires_at) -> TaskStatus:
        """A poll answer as a TaskStatus; the protocols differ only in where the result URL and expiry sit."""
        state, recognised = _state(task_id, body.get("status"))
        raw_error = body.get("error")
        error = raw_error if isinstance(raw_error, dict) else {}
        completed_at = _when(body.get("completed_at"))
        return TaskStatus(
            task_id=task_id,
            state=state,
            raw_status=str(body.get("status")),
            recognised=recognised,
            progress=_progress(body.get("progress")),
            result_url=_url(result_url),
            result_expires_at=_expires_at(state, expires_at, completed_at),
            billed_credits=_decimal(body.get("credits")),
            completed_at=completed_at,
            error_code=str(error.get("code") or ""),
            error_message=str(error.get("message") or ""),
        )

    def poll(self, task_id: str) -> TaskStatus:  # pragma: no cover
        raise NotImplementedError

    def cancel(self, task_id: str) -> CancelResult:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _cancel_result(response: httpx.Response) -> CancelResult:
        body = _json_object(response)
        state, _ = _state(str(body.get("task_id", "")), body.get("status", "cancelled"))
        return CancelResult(state=state, billed_credits=_decimal(body.get("credits")))

    @staticmethod
    def _task_id(body: dict) -> str:
        task_id = body.get("task_id") or body.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise SubmitOutcomeUnknown("The gateway accepted the submission without a task id.")
        return task_id


class OpenAIVideoAdapter(Adapter):
    """sora2 on the "OpenAI Video" protocol."""

    submit_path = "/v1/videos/generations"
    submitted_at_field = "created_at"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._credential}"}

    def body(self, request: RenderRequest) -> dict:
        body = {
            "model": request.model,
            "prompt": request.prompt,
            "duration_seconds": int(request.params["duration_seconds"]),
            "size": request.params["size"],
        }
        if request.image:
            body["source_image"] = request.image
        return body

    def poll(self, task_id: str) -> TaskStatus:
        body = _json_object(self._send("GET", f"/v1/videos/tasks/{quote(task_id, safe='')}"))
        return self._task_status(task_id, body, body.get("result_url"), body.get("expires_at"))

    def cancel(self, task_id: str) -> CancelResult:
        return self._cancel_result(self._send("POST", f"/v1/videos/tasks/{quote(task_id, safe='')}/cancel"))


class TasksAdapter(Adapter):
    """sora-2-pro on the tasks API."""

    submit_path = "/v1/tasks/submit"
    submitted_at_field = "submitted_at"

    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self._credential}

    def body(self, request: RenderRequest) -> dict:
        params = request.params
        body: dict = {
            "model": request.model,
            "prompt": request.prompt,
            "duration_seconds": int(params["duration_seconds"]),
            "resolution": params["resolution"],
            "aspect_ratio": params["aspect_ratio"],
        }
        if params.get("seed") is not None:
            body["seed"] = int(params["seed"])
        if params.get("style_preset"):
            body["style_preset"] = params["style_preset"]
        if request.image:
            body["image_init"] = request.image
        return body

    def poll(self, task_id: str) -> TaskStatus:
        body = _json_object(self._send("GET", "/v1/tasks/query", params={"task_id": task_id}))
        raw_result = body.get("result")
        result = raw_result if isinstance(raw_result, dict) else {}
        expires = result.get("expires_at") or body.get("expires_at")
        return self._task_status(task_id, body, result.get("video_url"), expires)

    def cancel(self, task_id: str) -> CancelResult:
        return self._cancel_result(self._send("POST", "/v1/tasks/cancel", json={"task_id": task_id}))


ADAPTERS: dict[Protocol, type[Adapter]] = {
    Protocol.OPENAI_VIDEO: OpenAIVideoAdapter,
    Protocol.TASKS: TasksAdapter,
}


@dataclass(frozen=True)
class Downloaded:
    path: Path  # a temporary file in the destination directory; the caller renames it into place
    size: int
    content_type: str


@dataclass(frozen=True)
class Fetched:
    """Where a resumable download stands after one call of `GatewayClient.fetch`."""

    path: Path  # the partial file: never served; the caller renames it into place once it is complete
    size: int  # bytes in it now
    complete: bool  # the whole result is in it (False: the call's time slice ended first)
    content_type: str
    resumed_from: int  # bytes already on disk that this call kept and appended to (0: from the start)
    restarted: bool  # bytes were on disk but could not be resumed (the server ignored Range): started over


class _StartOver(Exception):
    """The bytes on disk cannot be resumed from: discard them and ask for the whole result."""


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, complete length) of a Content-Range header: "bytes 100-199/1000", "bytes */1000"."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "", re.IGNORECASE)
    if match is None:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total and total != "*" else None)


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(16)
    except FileNotFoundError:
        return b""


class GatewayClient:
    """Talks to the configured gateway (the emulator when no API key is set)."""

    def __init__(
        self,
        base_url: str | None = None,
        credential: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        allowed_result_hosts: list[str] | None = None,
    ) -> None:
        self.base_url = (base_url or settings.BYTESPIKE_BASE_URL).rstrip("/")
        timeout = timeout or httpx.Timeout(**settings.GATEWAY_TIMEOUT, pool=5.0)
        # One client is shared by the poller's threads: keep a connection alive for each of them.
        threads = max(20, settings.STUDIO_POLLER_THREADS)
        self.http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            verify=tls_context(),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max(100, threads), max_keepalive_connections=threads),
            event_hooks={"response": [metrics.gateway_response]},
        )
        # Result downloads get their own client with no credentials at all.
        self.files = httpx.Client(
            timeout=timeout, transport=transport, follow_redirects=False, verify=tls_context()
        )
        self._credential = credential if credential is not None else settings.GATEWAY_API_KEY
        hosts = allowed_result_hosts
        if hosts is None:
            hosts = list(settings.GATEWAY_ALLOWED_RESULT_HOSTS)
        self.allowed_hosts = ({h.lower() for h in hosts} | {urlsplit(self.base_url).hostname or ""}) - {""}
        self.scheme = urlsplit(self.base_url).scheme

    def __repr__(self) -> str:  # never shows the credential
        return f"<GatewayClient {self.base_url}>"

    def close(self) -> None:
        self.http.close()
        self.files.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def adapter(self, model: str) -> Adapter:
        """The adapter for a model key."""
        return ADAPTERS[MODELS[model].protocol](self.http, self._credential)

    def submit(self, request: RenderRequest) -> Submission:
        return self.adapter(request.model).submit(request)

    def poll(self, model: str, task_id: str) -> TaskStatus:
        return self.adapter(model).poll(task_id)

    def cancel(self, model: str, task_id: str) -> CancelResult:
        return self.adapter(model).cancel(task_id)

    def check_result_url(self, url: str) -> None:
        """Refuse a result URL on a host that is not the gateway's, or over another scheme."""
        parts = urlsplit(url)
        if parts.scheme != self.scheme or (parts.hostname or "").lower() not in self.allowed_hosts:
            raise DownloadError(
                f"Refusing to download a result from {parts.scheme}://{parts.hostname}: not a gateway host.",
                permanent=True,
            )

    def download(self, url: str, dest_dir: Path, *, max_bytes: int) -> Downloaded:
        """Stream a whole result to a fresh temporary file in `dest_dir` in one go (nothing is left on failure)."""
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=dest_dir)
        os.close(fd)
        path = Path(name)
        try:
            fetched = self.fetch(url, path, max_bytes=max_bytes)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Downloaded(path=path, size=fetched.size, content_type=fetched.content_type)

    def fetch(
        self,
        url: str,
        part: Path,
        *,
        max_bytes: int,
        stall_seconds: float | None = None,
        deadline: float | None = None,
        on_bytes: Callable[[int], object] | None = None,
    ) -> Fetched:
        """Download a result into `part`, resuming with `Range: bytes=N-` from the N bytes already in it.

        Returns once the whole result is in `part` or, with `deadline` (a `time.monotonic()` value), when the
        deadline passes first (`complete` False: call again to go on). No byte for `stall_seconds` is a stall.
        A stall or a cut connection raises a retryable DownloadError and keeps `part` for the next call;
        content that can never be right (over the cap, not an MP4) is deleted. `on_bytes(size)` is called as
        bytes arrive: an exception it raises stops the download and keeps `part`.
        """
        part.parent.mkdir(parents=True, exist_ok=True)
        stall = float(stall_seconds or settings.STUDIO_DOWNLOAD_STALL_SECONDS)
        timeout = httpx.Timeout(stall, connect=self.files.timeout.connect)
        offset = part.stat().st_size if part.exists() else 0
        if offset > max_bytes or (offset >= 16 and not looks_like_mp4(_read_head(part))):
            part.unlink()  # not the start of a result we could keep: start over
            offset = 0
        kept = offset
        for _ in range(2):  # the second pass only starts over from zero
            try:
                fetched = self._fetch_from(url, part, offset, max_bytes, timeout, deadline, on_bytes)
            except _StartOver:
                part.unlink(missing_ok=True)
                offset = 0
                continue
            restarted = kept > 0 and fetched.resumed_from == 0
            return Fetched(
                path=part,
                size=fetched.size,
                complete=fetched.complete,
                content_type=fetched.content_type,
                resumed_from=fetched.resumed_from,
                restarted=restarted,
            )
        raise DownloadError("The result server answered the resumed download inconsistently.")

    def _fetch_from(
        self, url, part: Path, offset: int, max_bytes: int, timeout, deadline, on_bytes
    ) -> Fetched:
        """One request (following checked redirects) for the bytes from `offset` on."""
        for _ in range(MAX_REDIRECTS + 1):
            self.check_result_url(url)
            # identity: the byte offsets of Range and the bytes written are those of the file itself.
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            try:
                with self.files.stream("GET", url, headers=headers, timeout=timeout) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    return self._receive(response, part, offset, max_bytes, deadline, on_bytes)
            except httpx.ReadTimeout as exc:
                raise DownloadError(f"The result download stalled: no bytes for {timeout.read:g} s.") from exc
            except httpx.RequestError as exc:
                raise DownloadError(f"The result download was interrupted: {in_words(exc)}.") from exc
        raise DownloadError("Too many redirects for the result download.", permanent=True)

    def _receive(self, response, part: Path, offset: int, max_bytes: int, deadline, on_bytes) -> Fetched:
        """Act on the answer to a (ranged) GET: append a 206, start over on a 200, settle a 416."""
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        if status in (401, 403, 410):
            raise DownloadError(f"The result URL was refused ({status}).", expired=True)
        first, total = _content_range(response.headers.get("content-range"))
        if status == 416:
            if offset and total == offset:  # everything is already on disk
                return Fetched(part, offset, True, content_type, offset, False)
            raise _StartOver
        if status == 206:
            if first != offset:
                raise _StartOver
        elif status == 200:
            offset = 0  # the server ignored Range (or none was sent): the body is the whole result
            total = None
        else:
            raise DownloadError(f"The result download failed ({status}).")
        encoding = response.headers.get("content-encoding", "").strip().lower()
        resumable = encoding in ("", "identity")
        if not resumable and offset:
            raise _StartOver  # encoded bytes cannot be appended to the file's own
        try:
            declared = int(response.headers.get("content-length") or 0)
        except ValueError:
            declared = 0
        expected = total if total is not None else (offset + declared if declared else None)
        if expected is not None and expected > max_bytes:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"The result is {expected} bytes, over the {max_bytes}-byte cap.", permanent=True
            )
        return self._append(response, part, offset, expected, max_bytes, deadline, on_bytes, resumable)

    @staticmethod
    def _append(
        response, part: Path, offset: int, expected, max_bytes, deadline, on_bytes, resumable
    ) -> Fetched:
        content_type = response.headers.get("content-type", "")
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if offset else os.O_TRUNC)
        head = _read_head(part) if offset else b""
        size = offset
        try:
            with os.fdopen(os.open(part, flags, 0o600), "ab" if offset else "wb") as out:
                # Without a content coding the decoded bytes are the file's own, so offsets match Range's.
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"The result exceeds the {max_bytes}-byte cap.", permanent=True)
                    if len(head) < 16:
                        head += chunk[: 16 - len(head)]
                        if len(head) >= 16 and not looks_like_mp4(head):
                            raise DownloadError(
                                f"The result is not an MP4 video (it is {content_type or 'unknown'})."
                            )
                    out.write(chunk)
                    metrics.download_bytes(len(chunk))
                    if on_bytes is not None:
                        on_bytes(size)
                    if deadline is not None and time.monotonic() >= deadline and size != expected:
                        return Fetched(part, size, False, content_type, offset, False)
        except DownloadError:
            part.unlink(missing_ok=True)  # over the cap or not a video: nothing of it is worth keeping
            raise
        except OSError:
            part.unlink(missing_ok=True)  # a full disk: give the space back
            raise
        except httpx.RequestError:
            if not resumable:
                part.unlink(missing_ok=True)
            raise
        if expected is not None and size != expected:
            raise DownloadError(f"The result was truncated ({size} of {expected} bytes).")
        if not looks_like_mp4(head):
            part.unlink(missing_ok=True)
            raise DownloadError(f"The result is not an MP4 video (it is {content_type or 'unknown'}).")
        return Fetched(part, size, True, content_type, offset, False)
