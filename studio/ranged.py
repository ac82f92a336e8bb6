"""Serve a private file with HTTP Range support (RFC 9110 §14), so a ``<video>`` can seek.

Django's FileResponse always answers 200 with the whole body. ``ranged_file_response`` answers a
single ``bytes`` range with 206, an unsatisfiable one with 416, and anything else (no Range, a
malformed one, several ranges, a failed If-Range, a HEAD) with the full representation. Every answer
says ``Cache-Control: private, no-cache`` with an ETag: the browser keeps the bytes but asks again
before each use, so the access check runs on every request; a matching If-None-Match gets 304.

``stored_file_response`` serves a file by its storage name: streamed from the local disk as above, or
from an object store by a redirect to a short-lived pre-signed link (the store answers Range itself).
Callers run the access check first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.utils.http import content_disposition_header, http_date, parse_etags, parse_http_date_safe

from studio import storage

if TYPE_CHECKING:
    from studio.models import Render

CHUNK_SIZE = 64 * 1024
# Kept, but revalidated before every use: a member removed from the team loses the file on the next request.
CACHE_CONTROL = "private, no-cache"
# A redirect to a pre-signed link is never reused: the next play asks the access check for a fresh one.
REDIRECT_CACHE_CONTROL = "private, no-store"

# bytes=<first>-[<last>] or bytes=-<suffix>; "bytes" is case-insensitive, whitespace is allowed
# around the list (RFC 9110 §14.1.1, §5.6.1). Anything else is not a range we answer.
_RANGE_UNIT_RE = re.compile(r"^\s*bytes\s*=(.*)$", re.IGNORECASE | re.DOTALL)
_RANGE_SPEC_RE = re.compile(r"^(\d*)-(\d*)$")
_MAX_DIGITS = 19  # larger numbers are nonsense for a file; also keeps int() cheap
UNSATISFIABLE: Literal["unsatisfiable"] = "unsatisfiable"


class _FileRange:
    """Iterate over ``length`` bytes of an open file from ``start``, in chunks; close() closes it.

    StreamingHttpResponse registers ``close`` as a resource closer, so the file is closed when the
    server finishes with the response, even if the client goes away mid-stream. No ``fileno`` is
    exposed, so no server hands the whole file to sendfile().
    """

    def __init__(self, file: BinaryIO, start: int, length: int) -> None:
        self._file = file
        self._start = start
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        self._file.seek(self._start)
        remaining = self._length
        while remaining > 0:
            chunk = self._file.read(min(CHUNK_SIZE, remaining))
            if not chunk:  # the file shrank under us; stop rather than spin
                break
            remaining -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._file.close()


def _parse_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """Interpret a Range header against a representation of ``size`` bytes.

    Returns (first, last) inclusive for a satisfiable single range, UNSATISFIABLE when the range is
    unsatisfiable (answer 416), and None when the header should be ignored (malformed, another
    unit, several ranges, or nothing to slice) and the full body sent.
    """
    unit = _RANGE_UNIT_RE.match(header)
    if not unit:
        return None
    specs = [spec.strip() for spec in unit.group(1).split(",") if spec.strip()]
    if len(specs) != 1:
        return None  # empty, or multiple ranges: we do not build multipart/byteranges
    match = _RANGE_SPEC_RE.match(specs[0])
    if not match:
        return None
    first_text, last_text = match.groups()
    if len(first_text) > _MAX_DIGITS or len(last_text) > _MAX_DIGITS:
        return None
    if first_text:
        first = int(first_text)
        last = int(last_text) if last_text else None
        if last is not None and last < first:
            return None  # syntactically invalid: ignore the header
        if first >= size:
            return UNSATISFIABLE
        return first, min(last if last is not None else size - 1, size - 1)
    if not last_text:
        return None  # "bytes=-"
    suffix = int(last_text)
    if suffix == 0:
        return UNSATISFIABLE
    if size == 0:
        return None  # a non-empty suffix of an empty file: just send the (empty) file
    return max(size - suffix, 0), size - 1


def _if_range_matches(if_range: str, etag: str, last_modified: int) -> bool:
    """If-Range holds when it names the ETag we send, or exactly our Last-Modified date.

    RFC 9110 §13.1.5 asks for a strong comparison of entity-tags; our ETag is weak (size+mtime), so
    we accept the exact tag we issued rather than refusing every resumption. The tag changes whenever
    the file's size or mtime (nanoseconds) does.
    """
    if_range = if_range.strip()
    if if_range.startswith(('"', "W/")):
        return if_range == etag
    date = parse_http_date_safe(if_range)
    return date is not None and date == last_modified


def _none_match(request: HttpRequest, etag: str) -> bool:
    """If-None-Match names our ETag (weak comparison, RFC 9110 §13.1.2) or is "*": the client's copy is current."""
    header = request.headers.get("If-None-Match")
    if not header or request.method not in ("GET", "HEAD"):
        return False
    tags = parse_etags(header)
    ours = etag.removeprefix("W/")
    return "*" in tags or any(tag.removeprefix("W/") == ours for tag in tags)


def ranged_file_response(
    request: HttpRequest,
    path: Path,
    content_type: str,
    *,
    filename: str | None = None,
    as_attachment: bool = False,
) -> HttpResponse | StreamingHttpResponse:
    """Answer ``request`` with the file at ``path``, honouring a single byte range.

    Raises Http404 when the file does not exist. Only GET requests have their Range looked at (RFC
    9110 §14.2); a HEAD gets the headers of the full 200 answer and no body.
    """
    try:
        file = open(path, "rb")  # handed to the response, which closes it
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise Http404("No such file.") from exc
    try:
        stat = os.fstat(file.fileno())
        size = stat.st_size
        last_modified = int(stat.st_mtime)
        etag = f'W/"{size:x}-{stat.st_mtime_ns:x}"'

        if _none_match(request, etag):
            file.close()
            not_modified = HttpResponseNotModified()
            not_modified.headers["ETag"] = etag
            not_modified.headers["Last-Modified"] = http_date(stat.st_mtime)
            not_modified.headers["Cache-Control"] = CACHE_CONTROL
            return not_modified

        byte_range: tuple[int, int] | Literal["unsatisfiable"] | None = None
        range_header = request.headers.get("Range")
        if request.method == "GET" and range_header:
            if_range = request.headers.get("If-Range")
            if if_range is None or _if_range_matches(if_range, etag, last_modified):
                byte_range = _parse_range(range_header, size)

        response: HttpResponse | StreamingHttpResponse | FileResponse
        if byte_range == UNSATISFIABLE:
            file.close()
            response = HttpResponse(status=416)
            response.headers["Content-Range"] = f"bytes */{size}"
        elif isinstance(byte_range, tuple):
            first, last = byte_range
            length = last - first + 1
            response = StreamingHttpResponse(_FileRange(file, first, length), status=206)
            response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            response.headers["Content-Length"] = str(length)
        elif request.method == "HEAD":
            file.close()
            response = HttpResponse()
            response.headers["Content-Length"] = str(size)
        else:
            response = FileResponse(file, content_type=content_type)
            response.block_size = CHUNK_SIZE
            response.headers["Content-Length"] = str(size)
    except BaseException:
        file.close()
        raise

    if response.status_code != 416:
        response.headers["Content-Type"] = content_type
        disposition = content_disposition_header(as_attachment, filename or "")  # no name: no filename=
        if disposition:
            response.headers["Content-Disposition"] = disposition
        else:
            # FileResponse would otherwise announce the on-disk name.
            response.headers.pop("Content-Disposition", None)
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["ETag"] = etag
    response.headers["Last-Modified"] = http_date(stat.st_mtime)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


def stored_file_response(
    request: HttpRequest,
    name: str | None,
    content_type: str,
    *,
    filename: str | None = None,
    as_attachment: bool = False,
    redirect: bool = True,
) -> HttpResponse | StreamingHttpResponse:
    """Answer with the stored file `name` (the access check already passed).

    Local disk: streamed with Range, ETag and 304 (`ranged_file_response`). Object store: a 302 to a pre-signed
    link, valid STUDIO_MEDIA_URL_SECONDS, whose answer the store sends with Range support; or, with
    `redirect=False` (a small file for a client that may not follow redirects or reach the store), the bytes
    streamed through without Range.
    """
    if not name:
        raise Http404("No such file.")
    if storage.is_local():
        return ranged_file_response(
            request,
            Path(storage.storage().path(name)),
            content_type,
            filename=filename,
            as_attachment=as_attachment,
        )
    if redirect:
        response: HttpResponse | StreamingHttpResponse = HttpResponseRedirect(
            storage.signed_url(name, content_type, filename=filename or "", as_attachment=as_attachment)
        )
        response.headers["Cache-Control"] = REDIRECT_CACHE_CONTROL
        return response
    try:
        handle = storage.storage().open(name, "rb")
    except FileNotFoundError as exc:
        raise Http404("No such file.") from exc
    response = FileResponse(handle, content_type=content_type)
    response.headers.pop("Content-Disposition", None)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


def serve_clip(request: HttpRequest, item: Render) -> HttpResponse | StreamingHttpResponse:
    """A render's clip file for a caller that has already decided who may see it: the `video` view
    (views/studio.py) and a live share link (views/shares.py). One function, so clips are served one way."""
    if not item.video:
        return HttpResponse("This render has no clip yet.", status=404, content_type="text/plain")
    download = request.GET.get("download") == "1"
    return stored_file_response(
        request,
        item.video.name,
        "video/mp4",
        filename=f"studio-{item.model}-{str(item.pk)[:8]}.mp4",
        as_attachment=download,
    )
