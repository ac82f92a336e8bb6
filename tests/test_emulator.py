"""The gateway emulator over real HTTP (127.0.0.1 only): both protocols, billing, cancel, faults, expiry,
persistence. No Django database is needed."""

from __future__ import annotations

import base64
import io
import itertools
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import imageio_ffmpeg
import pytest

from studio.emulator import Emulator, EmulatorConfig
from studio.emulator.video import render_clip

KEY = "test-key-not-a-secret"
BEARER = {"Authorization": f"Bearer {KEY}"}
XKEY = {"x-api-key": KEY}
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def emu():
    with Emulator(EmulatorConfig(speed=50, fps=8)).start() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _no_leftover_faults(request):
    yield
    if "emu" in request.fixturenames:
        request.getfixturevalue("emu").clear_faults()


@pytest.fixture
def client(emu):
    with httpx.Client(base_url=emu.base_url, timeout=10) as http:
        yield http


def sora2(http: httpx.Client, **fields) -> httpx.Response:
    body = {"model": "sora2", "prompt": "A red apple rolls across a table", "duration_seconds": 5, **fields}
    return http.post("/v1/videos/generations", json=body, headers=BEARER)


def pro(http: httpx.Client, **fields) -> httpx.Response:
    body = {"model": "sora-2-pro", "prompt": "Dolly shot through a pine forest", "duration_seconds": 1}
    body.update({"resolution": "720p", **fields})
    return http.post("/v1/tasks/submit", json=body, headers=XKEY)


def poll(http: httpx.Client, task_id: str) -> httpx.Response:
    if task_id.startswith("vid_"):
        return http.get(f"/v1/videos/tasks/{task_id}", headers=BEARER)
    return http.get("/v1/tasks/query", params={"task_id": task_id}, headers=XKEY)


def wait(http: httpx.Client, task_id: str, until=TERMINAL, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = poll(http, task_id).json()
        if body["status"] in until:
            return body
        assert time.monotonic() < deadline, f"{task_id} stuck in {body['status']}"
        time.sleep(0.02)


def result_url(body: dict) -> str:
    return body["result_url"] if "result_url" in body else body["result"]["video_url"]


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


def check_mp4(path, seconds: float, size: tuple[int, int] | None = None) -> None:
    data = path.read_bytes()
    assert data[4:8] == b"ftyp"
    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames > 0 and abs(secs - seconds) < 0.3
    if size is not None:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
        assert tuple(meta["size"]) == size


def png_data_uri(width: int = 64, height: int = 48) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- round trips ------------------------------------------------------------------------------------------


def test_sora2_submit_poll_download(client, emu, tmp_path):
    before = emu.submissions
    response = sora2(client, size="1280x720", unknown_field="ignored")
    assert response.status_code == 200
    submitted = response.json()
    assert set(submitted) == {"task_id", "status", "model", "created_at"}
    assert submitted["task_id"].startswith("vid_") and submitted["status"] == "queued"
    assert submitted["model"] == "sora2" and submitted["created_at"].endswith("Z")
    assert emu.submissions == before + 1
    assert poll(client, submitted["task_id"]).json()["status"] in {"queued", "running"}

    done = wait(client, submitted["task_id"])
    assert set(done) == {
        "task_id",
        "status",
        "progress",
        "result_url",
        "duration_seconds",
        "size",
        "credits",
        "error",
        "created_at",
        "completed_at",
        "expires_at",
    }
    assert done["status"] == "completed" and done["progress"] == 100 and done["error"] is None
    assert done["credits"] == 0.5 and done["duration_seconds"] == 5 and done["size"] == "1280x720"
    assert done["completed_at"].endswith("Z") and done["expires_at"].endswith("Z")
    assert done["result_url"].startswith(f"{emu.base_url}/files/{submitted['task_id']}.mp4?expires=")

    file = httpx.get(done["result_url"])  # pre-signed: no credential
    assert file.status_code == 200
    assert file.headers["content-type"] == "video/mp4"
    assert int(file.headers["content-length"]) == len(file.content) > 1000
    (tmp_path / "clip.mp4").write_bytes(file.content)
    check_mp4(tmp_path / "clip.mp4", 5, (1280, 720))
    assert emu.task(submitted["task_id"])["status"] == "completed"


def test_pro_submit_poll_download_9x16_with_init_image(client, emu, tmp_path):
    response = pro(
        client,
        duration_seconds=2,
        resolution="1080p",
        aspect_ratio="9:16",
        seed=42,
        style_preset="anime",
        image_init=png_data_uri(),
    )
    assert response.status_code == 200
    submitted = response.json()
    assert set(submitted) == {"task_id", "status", "estimated_credits", "submitted_at"}
    assert submitted["task_id"].startswith("task_") and submitted["status"] == "queued"
    assert submitted["estimated_credits"] == 0.4625

    done = wait(client, submitted["task_id"])
    assert set(done) == {
        "task_id",
        "status",
        "progress",
        "result",
        "credits",
        "submitted_at",
        "completed_at",
        "error",
    }
    assert done["status"] == "completed" and done["credits"] == 0.4625 and done["error"] is None
    assert set(done["result"]) == {
        "video_url",
        "duration_seconds",
        "resolution",
        "aspect_ratio",
        "expires_at",
    }
    assert done["result"]["resolution"] == "1080p" and done["result"]["aspect_ratio"] == "9:16"
    file = httpx.get(done["result"]["video_url"])
    assert file.status_code == 200 and file.headers["content-type"] == "video/mp4"
    (tmp_path / "pro.mp4").write_bytes(file.content)
    check_mp4(tmp_path / "pro.mp4", 2, (1080, 1920))
    record = emu.task(submitted["task_id"])
    assert (record["width"], record["height"]) == (1080, 1920)
    assert record["params"]["seed"] == 42 and record["params"]["style_preset"] == "anime"


def test_pro_billing_8s_1080p_is_1_85_credits(client):
    response = pro(client, duration_seconds=8, resolution="1080p")
    assert response.json()["estimated_credits"] == 1.85
    done = wait(client, response.json()["task_id"])
    assert done["status"] == "completed" and done["credits"] == 1.85
    assert pro(client, duration_seconds=8).json()["estimated_credits"] == 1.11  # 720p: 0.13875/s


def test_bill_factor_drifts_the_billed_credits():
    with Emulator(EmulatorConfig(speed=50, fps=8, bill_factor=1.1)).start() as emulator:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            submitted = pro(http, duration_seconds=1).json()
            assert submitted["estimated_credits"] == 0.1388
            assert wait(http, submitted["task_id"])["credits"] == round(0.1388 * 1.1, 4) == 0.1527


def test_progress_moves_through_the_phases(tmp_path):
    with Emulator(EmulatorConfig(speed=5, fps=8, data_dir=tmp_path)).start() as emulator:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            task_id = sora2(http).json()["task_id"]
            first = poll(http, task_id).json()
            assert first["status"] == "queued" and first["progress"] == 0 and first["credits"] is None
            assert first["result_url"] is None and first["completed_at"] is None
            running = wait(http, task_id, until={"running"})
            time.sleep(0.3)
            later = poll(http, task_id).json()
            assert later["status"] == "running" and 0 <= running["progress"] < later["progress"] < 100
    assert json.loads((tmp_path / "tasks.json").read_text())["tasks"][task_id]["model"] == "sora2"


# --- auth -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/videos/generations", {}),
        ("/v1/videos/generations", {"x-api-key": KEY}),
        ("/v1/videos/generations", {"Authorization": f"Basic {KEY}"}),
        ("/v1/videos/generations", {"Authorization": "Bearer"}),
        ("/v1/tasks/submit", {}),
        ("/v1/tasks/submit", {"Authorization": f"Bearer {KEY}"}),
        ("/v1/tasks/submit", {"x-api-key": ""}),
    ],
)
def test_missing_or_wrong_kind_of_credential_is_401(client, emu, path, headers):
    before = emu.submissions
    body = {"model": "sora2" if "videos" in path else "sora-2-pro", "prompt": "x", "duration_seconds": 5}
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert emu.submissions == before


def test_polls_and_cancels_need_the_protocols_own_credential(client):
    task_id = pro(client).json()["task_id"]
    assert client.get("/v1/tasks/query", params={"task_id": task_id}, headers=BEARER).status_code == 401
    assert client.post("/v1/tasks/cancel", json={"task_id": task_id}).status_code == 401
    vid = sora2(client).json()["task_id"]
    assert client.get(f"/v1/videos/tasks/{vid}", headers=XKEY).status_code == 401
    assert client.post(f"/v1/videos/tasks/{vid}/cancel", headers=XKEY).status_code == 401


def test_configured_api_key_must_match():
    with Emulator(EmulatorConfig(speed=50, fps=8, api_key="right-key")).start() as emulator:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            body = {"model": "sora-2-pro", "prompt": "x", "duration_seconds": 1, "resolution": "720p"}
            wrong = http.post("/v1/tasks/submit", json=body, headers={"x-api-key": "wrong-key"})
            assert wrong.status_code == 401 and error_of(wrong)["code"] == "unauthorized"
            right = http.post("/v1/tasks/submit", json=body, headers={"x-api-key": "right-key"})
            assert right.status_code == 200
            assert emulator.submissions == 1


def test_the_credential_is_never_logged(client, caplog):
    caplog.set_level(logging.INFO, logger="studio.emulator")
    task_id = pro(client).json()["task_id"]
    poll(client, task_id)
    lines = [r.getMessage() for r in caplog.records if r.name == "studio.emulator"]
    assert "POST /v1/tasks/submit 200" in lines and "GET /v1/tasks/query 200" in lines
    assert not any(KEY in line or task_id in line for line in lines)  # no query strings either


# --- validation -------------------------------------------------------------------------------------------

SORA2_BAD = [
    ({"duration_seconds": 7}, "duration_seconds"),
    ({"duration_seconds": 20}, "duration_seconds"),
    ({"duration_seconds": 5.0}, "duration_seconds"),
    ({"duration_seconds": "5"}, "duration_seconds"),
    ({"duration_seconds": True}, "duration_seconds"),
    ({"duration_seconds": None}, "duration_seconds"),
    ({"size": "640x480"}, "size"),
    ({"size": "1080p"}, "size"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"prompt": 12}, "prompt"),
    ({"prompt": "x" * 4001}, "prompt"),
    ({"model": "sora-2-pro"}, "model"),
    ({"source_image": "ftp://example.com/a.png"}, "source_image"),
    ({"source_image": "data:image/png;base64,!!!not base64"}, "source_image"),
]
PRO_BAD = [
    ({"duration_seconds": 0}, "duration_seconds"),
    ({"duration_seconds": 21}, "duration_seconds"),
    ({"duration_seconds": True}, "duration_seconds"),
    ({"duration_seconds": 8.0}, "duration_seconds"),
    ({"duration_seconds": "8"}, "duration_seconds"),
    ({"resolution": "4k"}, "resolution"),
    ({"aspect_ratio": "4:3"}, "aspect_ratio"),
    ({"style_preset": "noir"}, "style_preset"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"seed": True}, "seed"),
    ({"prompt": ""}, "prompt"),
    ({"model": "sora2"}, "model"),
    ({"image_init": "not a url"}, "image_init"),
]


@pytest.mark.parametrize(("fields", "param"), SORA2_BAD)
def test_sora2_validation_is_400(client, emu, fields, param):
    before = emu.submissions
    response = sora2(client, **fields)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_request" and param in error["message"]
    assert emu.submissions == before


@pytest.mark.parametrize(("fields", "param"), PRO_BAD)
def test_pro_validation_is_400(client, emu, fields, param):
    before = emu.submissions
    response = pro(client, **fields)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_request" and param in error["message"]
    assert emu.submissions == before


def test_duration_message_names_the_choices(client):
    assert (
        error_of(sora2(client, duration_seconds=7))["message"] == "duration_seconds must be one of 5, 10, 15"
    )


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"", b"\xff\xfe"])
def test_malformed_or_non_object_body_is_400(client, raw):
    for path, headers in (("/v1/videos/generations", BEARER), ("/v1/tasks/submit", XKEY)):
        response = client.post(path, content=raw, headers={**headers, "content-type": "application/json"})
        assert response.status_code == 400 and error_of(response)["code"] == "invalid_request"


def test_unknown_paths_methods_and_tasks(client):
    assert client.get("/v1/nothing", headers=BEARER).status_code == 404
    assert error_of(client.get("/v1/nothing"))["code"] == "not_found"
    wrong_method = client.get("/v1/videos/generations", headers=BEARER)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"]
    assert client.delete("/v1/tasks/submit", headers=XKEY).status_code == 405
    assert client.get("/v1/videos/tasks/vid_unknown", headers=BEARER).status_code == 404
    assert client.get("/v1/tasks/query", params={"task_id": "task_unknown"}, headers=XKEY).status_code == 404
    missing = client.get("/v1/tasks/query", headers=XKEY)
    assert missing.status_code == 400 and "task_id" in error_of(missing)["message"]
    # each protocol sees only its own tasks
    vid = sora2(client).json()["task_id"]
    assert client.get("/v1/tasks/query", params={"task_id": vid}, headers=XKEY).status_code == 404


def test_blocked_words_are_451_and_create_nothing(client, emu):
    before = emu.submissions
    for response in (sora2(client, prompt="A scene full of GORE."), pro(client, prompt="nsfw dance")):
        assert response.status_code == 451
        assert response.json() == {
            "error": {"code": "prompt_blocked", "message": "The prompt was blocked by upstream safety."}
        }
    assert emu.submissions == before
    assert pro(client, prompt="A gorge at dawn").status_code == 200  # whole words only


# --- cancel -----------------------------------------------------------------------------------------------


def test_cancel_while_queued_is_free():
    with Emulator(EmulatorConfig(speed=1, fps=8)).start() as emulator:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            task_id = pro(http).json()["task_id"]
            response = http.post("/v1/tasks/cancel", json={"task_id": task_id}, headers=XKEY)
            assert response.status_code == 200
            assert response.json() == {"task_id": task_id, "status": "cancelled", "credits": 0.0}
            polled = poll(http, task_id).json()
            assert polled["status"] == "cancelled" and polled["credits"] == 0.0 and polled["result"] is None
            again = http.post("/v1/tasks/cancel", json={"task_id": task_id}, headers=XKEY)
            assert again.status_code == 409
            assert error_of(again)["code"] == "not_cancellable" and error_of(again)["status"] == "cancelled"

            vid = sora2(http).json()["task_id"]
            response = http.post(f"/v1/videos/tasks/{vid}/cancel", headers=BEARER)
            assert response.json() == {"task_id": vid, "status": "cancelled", "credits": 0.0}
            assert emulator.task(vid)["status"] == "cancelled"
            unknown = http.post("/v1/videos/tasks/vid_nope/cancel", headers=BEARER)
            assert unknown.status_code == 404


def test_cancel_while_running_bills_the_seconds_rendered():
    with Emulator(EmulatorConfig(speed=10, fps=8)).start() as emulator:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            task_id = pro(http, duration_seconds=20).json()["task_id"]
            wait(http, task_id, until={"running"})
            response = http.post("/v1/tasks/cancel", json={"task_id": task_id}, headers=XKEY)
            assert response.status_code == 200
            credits = response.json()["credits"]
            assert 0 < credits < 20 * 0.13875
            assert credits in {round(seconds * 0.13875, 4) for seconds in range(1, 20)}  # whole seconds
            assert poll(http, task_id).json()["credits"] == credits


def test_cancel_after_completion_is_409(client):
    task_id = pro(client).json()["task_id"]
    wait(client, task_id)
    response = client.post("/v1/tasks/cancel", json={"task_id": task_id}, headers=XKEY)
    assert response.status_code == 409
    assert error_of(response)["code"] == "not_cancellable" and error_of(response)["status"] == "completed"
    assert poll(client, task_id).json()["status"] == "completed"


# --- faults -----------------------------------------------------------------------------------------------


def test_submit_status_faults_create_no_task(client, emu):
    before = emu.submissions
    emu.add_fault("submit", status=503, times=2)
    emu.add_fault("submit", status=429)
    emu.add_fault("submit", status=402, message="Top up your wallet.")
    assert sora2(client).status_code == 503
    assert error_of(pro(client))["code"] == "service_unavailable"
    limited = sora2(client)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    wallet = pro(client)
    assert wallet.status_code == 402 and error_of(wallet)["message"] == "Top up your wallet."
    assert emu.submissions == before
    assert sora2(client).status_code == 200


def test_submit_fault_retry_after_header(client, emu):
    emu.add_fault("submit", status=503, retry_after=7)
    assert sora2(client).headers["retry-after"] == "7"


def test_submit_hang_creates_the_task_but_times_out(emu):
    before = set(emu.tasks())
    emu.add_fault("submit", kind="hang", seconds=1.0)
    with httpx.Client(base_url=emu.base_url, timeout=httpx.Timeout(5, read=0.3)) as http:
        with pytest.raises(httpx.ReadTimeout):
            pro(http)
    created = set(emu.tasks()) - before
    assert len(created) == 1
    assert emu.task(created.pop())["estimated_credits"] == 0.1388


def test_submit_drop_creates_the_task_and_closes_the_connection(client, emu):
    before = emu.submissions
    emu.add_fault("submit", kind="drop")
    with pytest.raises(httpx.RemoteProtocolError):
        sora2(client)
    assert emu.submissions == before + 1
    assert sora2(client).status_code == 200


def test_poll_faults(client, emu):
    task_id = pro(client).json()["task_id"]
    emu.add_fault("poll", status=500)
    emu.add_fault("poll", kind="slow", seconds=0.4)
    emu.add_fault("poll", kind="malformed")
    emu.add_fault("poll", kind="status", value="mystery")
    emu.add_fault("poll", status=404)
    assert poll(client, task_id).status_code == 500
    started = time.monotonic()
    slow = poll(client, task_id)
    assert slow.status_code == 200 and time.monotonic() - started >= 0.4
    malformed = poll(client, task_id)
    assert malformed.status_code == 200 and malformed.headers["content-type"] == "application/json"
    assert malformed.text == '{"status": "runn'
    with pytest.raises(ValueError):
        malformed.json()
    assert poll(client, task_id).json()["status"] == "mystery"
    assert poll(client, task_id).status_code == 404
    assert poll(client, task_id).status_code == 200


def test_task_fault_fails_the_next_task(client, emu):
    emu.add_fault("task", outcome="fail", message="The model hit a snag.")
    task_id = sora2(client).json()["task_id"]
    done = wait(client, task_id)
    assert done["status"] == "failed" and done["credits"] == 0.0 and done["result_url"] is None
    assert done["error"] == {"code": "generation_failed", "message": "The model hit a snag."}
    assert wait(client, sora2(client).json()["task_id"])["status"] == "completed"


def test_result_faults(client, emu):
    url = result_url(wait(client, pro(client).json()["task_id"]))
    emu.add_fault("result", status=500)
    emu.add_fault("result", kind="truncate")
    emu.add_fault("result", kind="wrong_type")
    emu.add_fault("result", kind="redirect", location="http://127.0.0.1:9/elsewhere.mp4")
    emu.add_fault("result", status=403)
    with httpx.Client(timeout=10) as files:
        assert files.get(url).status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):
            files.get(url)
        wrong = files.get(url)
        assert wrong.status_code == 200 and wrong.headers["content-type"].startswith("text/html")
        assert wrong.text.startswith("<!doctype html>")
        redirect = files.get(url)
        assert redirect.status_code == 302
        assert redirect.headers["location"] == "http://127.0.0.1:9/elsewhere.mp4"
        assert files.get(url).status_code == 403
        good = files.get(url)
        assert good.status_code == 200 and good.content[4:8] == b"ftyp"


def test_cancel_fault(client, emu):
    task_id = sora2(client).json()["task_id"]
    emu.add_fault("cancel", status=503)
    assert client.post(f"/v1/videos/tasks/{task_id}/cancel", headers=BEARER).status_code == 503
    assert emu.task(task_id)["status"] != "cancelled"


def test_bad_fault_specs_are_refused(emu):
    with pytest.raises(ValueError):
        emu.add_fault("submit", kind="explode")
    with pytest.raises(ValueError):
        emu.add_fault("nothing", status=500)
    with pytest.raises(ValueError):
        emu.add_fault("poll")


def test_control_routes_over_http(client, emu):
    assert client.get("/_emulator/health").json() == {"ok": True, "submissions": emu.submissions}
    faults = [{"op": "submit", "status": 502}, {"op": "poll", "status": 500, "times": 2}]
    assert client.post("/_emulator/faults", json=faults).status_code == 200
    assert client.post("/_emulator/faults", json={"op": "cancel", "status": 500}).status_code == 200
    assert client.get("/_emulator/faults").json()["faults"] == {"submit": 1, "poll": 2, "cancel": 1}
    assert sora2(client).status_code == 502
    assert client.delete("/_emulator/faults").status_code == 200
    assert client.get("/_emulator/faults").json()["faults"] == {}
    bad = client.post("/_emulator/faults", json={"op": "submit", "kind": "explode"})
    assert bad.status_code == 400
    task_id = sora2(client).json()["task_id"]
    url = result_url(wait(client, task_id))
    assert client.post("/_emulator/expire-results").status_code == 200
    assert httpx.get(url).status_code == 403
    assert client.get(f"/_emulator/tasks/{task_id}").json()["status"] == "completed"


# --- result URLs ------------------------------------------------------------------------------------------


def test_result_url_tampering_and_expiry(client, emu):
    task_id = pro(client).json()["task_id"]
    done = wait(client, task_id)
    url = result_url(done)
    query = parse_qs(urlsplit(url).query)
    base = url.split("?")[0]
    assert httpx.head(url).headers["content-length"] == str(len(httpx.get(url).content))
    tampered = httpx.get(base, params={"expires": query["expires"][0], "sig": "0" * 64})
    assert tampered.status_code == 403 and error_of(tampered)["code"] == "url_expired"
    extended = httpx.get(base, params={"expires": int(query["expires"][0]) + 10, "sig": query["sig"][0]})
    assert extended.status_code == 403
    assert httpx.get(base).status_code == 403

    emu.expire_results()
    assert httpx.get(url).status_code == 403
    again = poll(client, task_id).json()
    assert again["status"] == "completed"
    assert httpx.get(result_url(again)).status_code == 403
    assert again["result"]["expires_at"] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fresh = wait(client, pro(client).json()["task_id"])  # tasks submitted afterwards are unaffected
    assert httpx.get(result_url(fresh)).status_code == 200


def test_short_ttl_expires_by_the_wall_clock():
    with Emulator(EmulatorConfig(speed=50, fps=8, url_ttl_seconds=1.0)).start() as emulator:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            url = result_url(wait(http, pro(http).json()["task_id"]))
            time.sleep(max(0.0, float(parse_qs(urlsplit(url).query)["expires"][0]) - time.time() + 0.05))
            assert http.get(url).status_code == 403


# --- persistence ------------------------------------------------------------------------------------------


def test_tasks_survive_a_restart(tmp_path):
    config = EmulatorConfig(speed=50, fps=8, data_dir=tmp_path)
    with Emulator(config).start() as first:
        with httpx.Client(base_url=first.base_url, timeout=10) as http:
            done_id = sora2(http).json()["task_id"]
            done = wait(http, done_id)
            pending_id = pro(http, duration_seconds=3).json()["task_id"]
            cancelled_id = pro(http).json()["task_id"]
            http.post("/v1/tasks/cancel", json={"task_id": cancelled_id}, headers=XKEY)
        old_url = result_url(done)
    assert (tmp_path / "tasks.json").exists()

    with Emulator(config).start() as second:
        assert second.submissions == 3
        with httpx.Client(base_url=second.base_url, timeout=10) as http:
            again = poll(http, done_id).json()
            for field in ("status", "credits", "created_at", "completed_at", "expires_at"):
                assert again[field] == done[field]
            # the signing secret persists: the old URL's path and query still work on the new server
            moved = second.base_url + old_url[len(old_url.split("/files/")[0]) :]
            file = httpx.get(moved)
            assert file.status_code == 200 and file.content[4:8] == b"ftyp"
            assert wait(http, pending_id)["status"] == "completed"
            assert poll(http, cancelled_id).json()["status"] == "cancelled"


def test_tasks_survive_a_crash_from_the_journal(tmp_path):
    """Each change is a line of tasks.journal, read over tasks.json on start: an emulator killed before it could
    write tasks.json whole loses nothing it answered (a torn last line, from a crash mid-write, is dropped)."""
    from studio.emulator.state import TaskStore

    config = EmulatorConfig(speed=50, fps=8, data_dir=tmp_path)
    crashed = Emulator(config).start()
    try:
        with httpx.Client(base_url=crashed.base_url, timeout=10) as http:
            kept_id = pro(http, duration_seconds=3).json()["task_id"]
            cancelled_id = pro(http).json()["task_id"]
            http.post("/v1/tasks/cancel", json={"task_id": cancelled_id}, headers=XKEY)
        with (tmp_path / "tasks.journal").open("a") as journal:
            journal.write('{"task": {"task_id": "task_torn", "prot')
        # What a new process finds on disk while the first is still as a SIGKILL would leave it:
        found = TaskStore(config, tmp_path)
        assert found.submissions == 2
        assert set(found.tasks()) == {kept_id, cancelled_id}
        assert found.task(cancelled_id)["status"] == "cancelled"
        assert found.task(kept_id)["model"] == "sora-2-pro"
    finally:
        crashed.stop()


def test_a_change_the_journal_could_not_take_is_saved_with_the_next_one(tmp_path):
    """An append that failed (a full disk, say) may leave a torn line, and its lines are gone: the next change
    writes the whole state instead, so nothing is lost and no line follows a torn one."""
    from studio.emulator.state import TaskStore

    config = EmulatorConfig(speed=0.01, fps=8, data_dir=tmp_path)
    journal = tmp_path / "tasks.journal"
    with Emulator(config).start() as emulator:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            first = pro(http).json()["task_id"]
            journal.unlink()
            journal.mkdir()  # appending to it fails
            second = pro(http).json()["task_id"]
            journal.rmdir()
            third = pro(http).json()["task_id"]
            assert journal.read_text() == ""  # the whole state went to tasks.json instead
            assert set(TaskStore(config, tmp_path).tasks()) == {first, second, third}


def test_the_journal_is_folded_into_tasks_json_as_it_grows(tmp_path, monkeypatch):
    """A change appends one line, whatever the number of tasks; past the number of tasks (at least
    JOURNAL_MIN_LINES) the journal is written into tasks.json and emptied, and stop leaves it all in tasks.json."""
    from studio.emulator import state

    monkeypatch.setattr(state, "JOURNAL_MIN_LINES", 4)
    journal = tmp_path / "tasks.journal"
    seen = []  # (tasks so far, journal lines) after each change
    with Emulator(EmulatorConfig(speed=0.01, fps=8, data_dir=tmp_path)).start() as emulator:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            ids = []
            for _ in range(12):
                ids.append(pro(http).json()["task_id"])
                seen.append((len(ids), len(journal.read_text().splitlines())))
                http.post("/v1/tasks/cancel", json={"task_id": ids[-1]}, headers=XKEY)
                seen.append((len(ids), len(journal.read_text().splitlines())))
    assert seen[:4] == [(1, 1), (1, 2), (2, 3), (2, 4)]  # one line per change until the journal is long
    assert all(lines <= max(4, tasks) for tasks, lines in seen)
    assert any(later < earlier for (_, earlier), (_, later) in itertools.pairwise(seen))  # folded on the way
    assert journal.read_text() == ""
    saved = json.loads((tmp_path / "tasks.json").read_text())["tasks"]
    assert list(saved) == ids and all(saved[i]["cancelled_at"] is not None for i in ids)


# --- video ------------------------------------------------------------------------------------------------


def test_render_clip_keeps_the_prompt_out_of_the_filter(tmp_path):
    prompt = "colons: quotes ' \" back\\slash; brackets [x], percent %{pts} and\nnew line " * 20
    out = render_clip(tmp_path / "odd name's.mp4", width=320, height=240, duration=1, prompt=prompt, fps=8)
    check_mp4(out, 1, (320, 240))
    assert not list(tmp_path.glob("*.part"))


# --- management command -----------------------------------------------------------------------------------


def test_management_command_serves_until_sigterm(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "studio.settings",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "manage.py", "emulate_gateway", "--port", "0", "--speed", "50", "--fps", "8"]
    proc = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the emulator did not announce itself"
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"Gateway emulator listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        with httpx.Client(base_url=match.group(1), timeout=10) as http:
            assert http.get("/_emulator/health").json() == {"ok": True, "submissions": 0}
            assert pro(http).status_code == 200
        assert (tmp_path / "emulator" / "tasks.json").exists()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "stopped" in out
        assert KEY not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
