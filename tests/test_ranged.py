"""studio.ranged: single byte-range answers for <video> seeking (RFC 9110 §14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.test import RequestFactory
from django.utils.http import http_date

from studio.ranged import CHUNK_SIZE, ranged_file_response

SIZE = 200_000  # a few 64 KiB chunks and a tail
DATA = bytes(i * 7 % 251 for i in range(SIZE))
rf = RequestFactory()


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "2f9c-internal-name.mp4"
    path.write_bytes(DATA)
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    return path


def get(path, range_header=None, method="get", if_range=None):
    headers = {}
    if range_header is not None:
        headers["Range"] = range_header
    if if_range is not None:
        headers["If-Range"] = if_range
    request = getattr(rf, method)("/clip", headers=headers)
    return ranged_file_response(request, path, "video/mp4")


def close(response) -> None:
    """Close a response as the server would, but without `close_old_connections`.

    Closing sends `request_finished`, whose `close_old_connections` touches every database connection an
    earlier test opened; these tests use no database and may not (the test client disconnects it the same way).
    """
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def body(response) -> bytes:
    try:
        if response.streaming:
            return b"".join(response.streaming_content)
        return response.content
    finally:
        close(response)


def assert_common_headers(response):
    assert response["Accept-Ranges"] == "bytes"
    assert response["Cache-Control"] == "private, no-cache"  # kept, but the access check runs before each use
    assert response["ETag"].startswith('W/"')
    assert response["Last-Modified"] == http_date(1_700_000_000)


def test_full_response(video):
    response = get(video)
    assert isinstance(response, FileResponse)
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert response["Content-Length"] == str(SIZE)
    assert "Content-Range" not in response
    assert "Content-Disposition" not in response  # the on-disk name is not announced
    assert_common_headers(response)
    assert body(response) == DATA


def test_first_hundred_bytes(video):
    response = get(video, "bytes=0-99")
    assert response.status_code == 206
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Range"] == f"bytes 0-99/{SIZE}"
    assert response["Content-Length"] == "100"
    assert response["Content-Type"] == "video/mp4"
    assert_common_headers(response)
    assert body(response) == DATA[:100]


def test_middle_range_spanning_chunks_streams_in_chunks(video):
    response = get(video, "bytes=1000-150000")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 1000-150000/{SIZE}"
    assert response["Content-Length"] == str(150000 - 1000 + 1)
    chunks = list(response.streaming_content)
    close(response)
    assert max(len(c) for c in chunks) <= CHUNK_SIZE
    assert len(chunks) == 3
    assert b"".join(chunks) == DATA[1000:150001]


def test_open_ended_range(video):
    response = get(video, "bytes=150000-")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 150000-{SIZE - 1}/{SIZE}"
    assert response["Content-Length"] == str(SIZE - 150000)
    assert body(response) == DATA[150000:]


def test_suffix_range(video):
    response = get(video, "bytes=-500")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {SIZE - 500}-{SIZE - 1}/{SIZE}"
    assert response["Content-Length"] == "500"
    assert body(response) == DATA[-500:]


def test_suffix_longer_than_file_is_whole_file(video):
    response = get(video, f"bytes=-{SIZE * 3}")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 0-{SIZE - 1}/{SIZE}"
    assert body(response) == DATA


def test_range_past_end_is_clamped(tmp_path):
    small = tmp_path / "small.mp4"
    small.write_bytes(b"0123456789")
    response = ranged_file_response(rf.get("/", headers={"Range": "bytes=0-999999"}), small, "video/mp4")
    assert response.status_code == 206
    assert response["Content-Range"] == "bytes 0-9/10"
    assert response["Content-Length"] == "10"
    assert body(response) == b"0123456789"


def test_last_byte(video):
    response = get(video, f"bytes={SIZE - 1}-{SIZE - 1}")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {SIZE - 1}-{SIZE - 1}/{SIZE}"
    assert body(response) == DATA[-1:]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
def test_unsatisfiable_is_416(video, header):
    response = get(video, header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{SIZE}"
    assert response["Accept-Ranges"] == "bytes"
    assert body(response) == b""


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc",
        "bytes=5-2",
        "bytes=-",
        "bytes=",
        "bytes 0-99",
        "items=0-99",
        "bytes=0-99,200-299",  # multiple ranges: we may ignore them and send 200
        "bytes=--5",
        "bytes=1.5-2",
        "bytes=" + "9" * 5000 + "-",
    ],
)
def test_malformed_or_multiple_ranges_get_full_200(video, header):
    response = get(video, header)
    assert response.status_code == 200
    assert response["Content-Length"] == str(SIZE)
    assert "Content-Range" not in response
    assert body(response) == DATA


def test_range_syntax_is_lenient_about_case_and_spaces(video):
    response = get(video, " Bytes = 10-19 ,")
    assert response.status_code == 206
    assert body(response) == DATA[10:20]


def test_head(video):
    response = get(video, method="head")
    assert response.status_code == 200
    assert response["Content-Length"] == str(SIZE)
    assert response["Content-Type"] == "video/mp4"
    assert_common_headers(response)
    assert body(response) == b""


def test_head_ignores_range(video):
    response = get(video, "bytes=0-99", method="head")
    assert response.status_code == 200
    assert response["Content-Length"] == str(SIZE)
    assert body(response) == b""


def test_if_range_matching_etag_or_date_honours_range(video):
    etag = get(video)["ETag"]
    response = get(video, "bytes=0-99", if_range=etag)
    assert response.status_code == 206
    assert body(response) == DATA[:100]
    response = get(video, "bytes=0-99", if_range=http_date(1_700_000_000))
    assert response.status_code == 206
    body(response)


@pytest.mark.parametrize(
    "if_range",
    ['"something-else"', 'W/"1-2"', "Tue, 15 Nov 1994 08:12:31 GMT", "not a date"],
)
def test_if_range_mismatch_gets_full_200(video, if_range):
    response = get(video, "bytes=0-99", if_range=if_range)
    assert response.status_code == 200
    assert "Content-Range" not in response
    assert body(response) == DATA


def test_if_range_mismatch_after_file_changes(video):
    etag = get(video)["ETag"]
    video.write_bytes(DATA[:-1] + b"!")
    response = get(video, "bytes=0-99", if_range=etag)
    assert response.status_code == 200
    assert response["ETag"] != etag
    body(response)


def test_missing_file_is_404(tmp_path):
    with pytest.raises(Http404):
        get(tmp_path / "gone.mp4")
    with pytest.raises(Http404):
        get(tmp_path)  # a directory is not a file either


@pytest.mark.parametrize("header", [None, "bytes=0-9"])
def test_disposition(video, header):
    request = rf.get("/", headers={"Range": header} if header else {})
    inline = ranged_file_response(request, video, "video/mp4", filename="My clip.mp4")
    assert inline["Content-Disposition"] == 'inline; filename="My clip.mp4"'
    body(inline)
    attached = ranged_file_response(request, video, "video/mp4", filename="Ünïcode.mp4", as_attachment=True)
    assert attached["Content-Disposition"] == "attachment; filename*=utf-8''%C3%9Cn%C3%AFcode.mp4"
    body(attached)
    bare = ranged_file_response(request, video, "video/mp4", as_attachment=True)
    assert bare["Content-Disposition"] == "attachment"
    body(bare)


def test_file_is_closed(video, monkeypatch):
    opened = []
    real_open = open

    def tracking_open(*args, **kwargs):
        f = real_open(*args, **kwargs)
        opened.append(f)
        return f

    monkeypatch.setattr("builtins.open", tracking_open)
    for header, method in [(None, "get"), ("bytes=0-99", "get"), (f"bytes={SIZE}-", "get"), (None, "head")]:
        body(get(video, header, method=method))
    # A client that disconnects mid-range: the server closes the response without draining it.
    partial = get(video, "bytes=0-")
    next(iter(partial.streaming_content))
    close(partial)
    assert len(opened) == 5
    assert all(f.closed for f in opened)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    response = ranged_file_response(rf.get("/"), empty, "video/mp4")
    assert response.status_code == 200
    assert response["Content-Length"] == "0"
    body(response)
    response = ranged_file_response(rf.get("/", headers={"Range": "bytes=0-"}), empty, "video/mp4")
    assert response.status_code == 416
    assert response["Content-Range"] == "bytes */0"
