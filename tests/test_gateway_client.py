"""The gateway client's two adapters against the emulator over real HTTP (127.0.0.1 only), and the exact requests
they send through an injected `httpx.MockTransport`. No database is needed: pytest-django only loads settings."""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest

from studio.emulator import Emulator, EmulatorConfig
from studio.gateway.client import GatewayClient
from studio.gateway.types import (
    BadRequest,
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
    SubmitOutcomeUnknown,
    TaskState,
    TaskStatus,
    WalletEmpty,
)

SENTINEL = "sk-sentinel-3c9f0e7d51aa"  # a credential that must never surface anywhere
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"

SORA2_CLIP = RenderRequest(
    "sora2", "A red apple rolls across a table", {"duration_seconds": 5, "size": "1280x720"}
)
PRO_CLIP = RenderRequest(
    "sora-2-pro",
    "Dolly shot through a pine forest",
    {"duration_seconds": 1, "resolution": "720p", "aspect_ratio": "1:1"},
)
PRO_8S_1080P = RenderRequest(
    "sora-2-pro",
    "A cinematic dolly shot through a misty pine forest at dawn",
    {"duration_seconds": 8, "resolution": "1080p", "aspect_ratio": "16:9"},
)
BLOCKED = {
    "sora2": RenderRequest("sora2", "A scene full of gore", SORA2_CLIP.params),
    "sora-2-pro": RenderRequest("sora-2-pro", "A scene full of gore", PRO_CLIP.params),
}
CLIPS = {"sora2": SORA2_CLIP, "sora-2-pro": PRO_CLIP}
BOTH = pytest.mark.parametrize("model", ["sora2", "sora-2-pro"])


def client_for(base_url: str, **options) -> GatewayClient:
    options.setdefault("credential", "k")
    return GatewayClient(base_url=base_url, allowed_result_hosts=["127.0.0.1"], **options)


@pytest.fixture(autouse=True)
def no_leftover_faults(emulator):
    emulator.clear_faults()
    yield
    emulator.clear_faults()


@pytest.fixture
def studio(emulator):
    """The studio's gateway client, talking to the session emulator."""
    with client_for(emulator.base_url) as client:
        yield client


@pytest.fixture
def impatient_studio(emulator):
    """A client that gives up on an answer after half a second."""
    with client_for(emulator.base_url, timeout=httpx.Timeout(0.5)) as client:
        yield client


@pytest.fixture(scope="module")
def slow_emulator(tmp_path_factory):
    """A gateway slow enough (a queued phase of ~0.5 s, a running phase of seconds) to cancel in either phase."""
    config = EmulatorConfig(speed=4.0, fps=8, data_dir=tmp_path_factory.mktemp("slow-emulator"))
    with Emulator(config).start() as emulator:
        yield emulator


@pytest.fixture
def slow_studio(slow_emulator):
    with client_for(slow_emulator.base_url) as client:
        yield client


def wait_for(client: GatewayClient, model: str, task_id: str, *states: TaskState, timeout=30.0) -> TaskStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = client.poll(model, task_id)
        if status.state in states:
            return status
        assert time.monotonic() < deadline, f"{task_id} stuck in {status.state}"
        time.sleep(0.02)


def finished(client: GatewayClient, request: RenderRequest = PRO_CLIP) -> TaskStatus:
    """Submit a small clip and poll until the gateway has completed it."""
    submission = client.submit(request)
    status = wait_for(client, request.model, submission.task_id, TaskState.COMPLETED, TaskState.FAILED)
    assert status.state == TaskState.COMPLETED, status
    return status


class Recorder:
    """A MockTransport that records every request and answers from a handler."""

    def __init__(self, handler=None) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler or (lambda request: httpx.Response(500))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self, credential: str = "k") -> GatewayClient:
        return GatewayClient(
            base_url="http://gateway.test",
            credential=credential,
            transport=httpx.MockTransport(self),
            allowed_result_hosts=["cdn.gateway.test"],
        )


def answering(body, status: int = 200, headers: dict | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda request: httpx.Response(
        status, content=raw, headers={"content-type": "application/json", **(headers or {})}
    )


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- submit and poll against the emulator ---------------------------------------------------------------------


def test_sora2_submit_returns_a_queued_submission(studio, emulator):
    before = emulator.submissions
    submission = studio.submit(SORA2_CLIP)
    assert submission.task_id.startswith("vid_")
    assert submission.status == TaskState.QUEUED
    assert submission.estimated_credits is None  # the sora2 page documents no estimate
    assert submission.submitted_at.tzinfo is not None
    assert emulator.submissions == before + 1
    assert emulator.task(submission.task_id)["params"] == {
        "duration_seconds": 5,
        "size": "1280x720",
        "source_image": None,
    }


def test_pro_submit_estimates_8s_at_1080p_as_1_85_credits(slow_studio):
    submission = slow_studio.submit(PRO_8S_1080P)
    assert submission.task_id.startswith("task_")
    assert submission.status == TaskState.QUEUED
    assert submission.estimated_credits == Decimal("1.85")
    assert submission.submitted_at.tzinfo is not None
    slow_studio.cancel("sora-2-pro", submission.task_id)  # spare the emulator's renderer


@pytest.mark.parametrize(
    ("model", "credits"), [("sora2", Decimal("0.5")), ("sora-2-pro", Decimal("0.1388"))], ids=["sora2", "pro"]
)
def test_polling_until_completed_gives_the_result_and_the_bill(studio, emulator, model, credits):
    submission = studio.submit(CLIPS[model])
    seen = []
    while (status := studio.poll(model, submission.task_id)).state != TaskState.COMPLETED:
        assert status.state in (TaskState.QUEUED, TaskState.RUNNING) and status.recognised
        assert status.result_url is None and status.billed_credits is None
        seen.append(status.progress)
        assert len(seen) < 1500, "the clip never completed"
        time.sleep(0.02)
    assert all(isinstance(p, int) and 0 <= p <= 99 for p in seen)
    assert status.task_id == submission.task_id and status.recognised
    assert status.raw_status == "completed" and status.progress == 100
    assert status.result_url.startswith(f"{emulator.base_url}/files/{submission.task_id}.mp4?")
    assert status.billed_credits == credits
    assert status.completed_at.tzinfo is not None
    assert status.result_expires_at.tzinfo is not None
    assert status.result_expires_at - status.completed_at == timedelta(hours=24)
    assert status.error_code == "" and status.error_message == ""


@BOTH
def test_a_failed_task_carries_the_gateways_error(studio, emulator, model):
    emulator.add_fault("task", outcome="fail", message="The model hit a snag.")
    submission = studio.submit(CLIPS[model])
    status = wait_for(studio, model, submission.task_id, TaskState.FAILED, TaskState.COMPLETED)
    assert status.state == TaskState.FAILED
    assert status.billed_credits == Decimal("0")
    assert (status.error_code, status.error_message) == ("generation_failed", "The model hit a snag.")
    assert status.result_url is None and status.result_expires_at is None


# --- the exact requests (MockTransport) -----------------------------------------------------------------------


def png_data_uri() -> str:
    return "data:image/png;base64,iVBORw0KGgo="


def test_sora2_requests_are_exactly_the_openai_video_protocol():
    recorder = Recorder(answering({"task_id": "vid_1", "status": "queued", "credits": 0.2}))
    with recorder.client() as client:
        client.submit(SORA2_CLIP)
        client.submit(
            RenderRequest("sora2", "An apple", {"duration_seconds": 10, "size": "1920x1080"}, png_data_uri())
        )
        client.poll("sora2", "vid_1")
        client.cancel("sora2", "vid_1")
    submit, with_image, poll, cancel = recorder.requests
    assert (submit.method, submit.url.path) == ("POST", "/v1/videos/generations")
    assert json.loads(submit.content) == {
        "model": "sora2",
        "prompt": "A red apple rolls across a table",
        "duration_seconds": 5,
        "size": "1280x720",
    }
    assert json.loads(with_image.content) == {
        "model": "sora2",
        "prompt": "An apple",
        "duration_seconds": 10,
        "size": "1920x1080",
        "source_image": png_data_uri(),
    }
    assert (poll.method, str(poll.url)) == ("GET", "http://gateway.test/v1/videos/tasks/vid_1")
    assert (cancel.method, cancel.url.path) == ("POST", "/v1/videos/tasks/vid_1/cancel")
    for request in recorder.requests:
        assert request.headers["authorization"] == "Bearer k"
        assert "x-api-key" not in request.headers


def test_pro_requests_are_exactly_the_tasks_api():
    recorder = Recorder(answering({"task_id": "task_1", "status": "queued", "estimated_credits": 1.85}))
    full = {
        "duration_seconds": 8,
        "resolution": "1080p",
        "aspect_ratio": "9:16",
        "seed": 0,
        "style_preset": "anime",
    }
    with recorder.client() as client:
        client.submit(PRO_8S_1080P)
        client.submit(RenderRequest("sora-2-pro", "A forest", full, "https://img.example/init.png"))
        client.submit(RenderRequest("sora-2-pro", "A forest", {**full, "seed": None, "style_preset": ""}))
        client.poll("sora-2-pro", "task_1")
        client.cancel("sora-2-pro", "task_1")
    minimal, everything, unset, poll, cancel = recorder.requests
    assert (minimal.method, minimal.url.path) == ("POST", "/v1/tasks/submit")
    assert json.loads(minimal.content) == {
        "model": "sora-2-pro",
        "prompt": "A cinematic dolly shot through a misty pine forest at dawn",
        "duration_seconds": 8,
        "resolution": "1080p",
        "aspect_ratio": "16:9",
    }
    assert json.loads(everything.content) == {
        "model": "sora-2-pro",
        "prompt": "A forest",
        "duration_seconds": 8,
        "resolution": "1080p",
        "aspect_ratio": "9:16",
        "seed": 0,  # a seed of 0 is a seed
        "style_preset": "anime",
        "image_init": "https://img.example/init.png",
    }
    assert set(json.loads(unset.content)) == {
        "model",
        "prompt",
        "duration_seconds",
        "resolution",
        "aspect_ratio",
    }
    assert (poll.method, str(poll.url)) == ("GET", "http://gateway.test/v1/tasks/query?task_id=task_1")
    assert (cancel.method, cancel.url.path) == ("POST", "/v1/tasks/cancel")
    assert json.loads(cancel.content) == {"task_id": "task_1"}
    for request in recorder.requests:
        assert request.headers["x-api-key"] == "k"
        assert "authorization" not in request.headers


def test_a_task_id_cannot_steer_the_request_path():
    recorder = Recorder(answering({"status": "running"}))
    with recorder.client() as client:
        client.poll("sora2", "../../files/x?y=1")
    assert recorder.requests[0].url.raw_path == b"/v1/videos/tasks/..%2F..%2Ffiles%2Fx%3Fy%3D1"


def test_result_downloads_carry_no_credential(tmp_path):
    recorder = Recorder(
        lambda request: httpx.Response(200, content=MP4_HEAD * 4, headers={"content-type": "video/mp4"})
    )
    with recorder.client(credential=SENTINEL) as client:
        client.download("http://cdn.gateway.test/vid/1.mp4", tmp_path, max_bytes=10_000)
    (request,) = recorder.requests
    assert "authorization" not in request.headers and "x-api-key" not in request.headers
    assert SENTINEL not in str(request.headers) and SENTINEL not in str(request.url)


def test_unknown_response_fields_are_ignored():
    answers = {
        "/v1/tasks/submit": {
            "task_id": "task_9",
            "status": "queued",
            "estimated_credits": 1.85,
            "submitted_at": "2026-05-08T13:00:00Z",
            "queue_position": 4,
            "hints": {"new": True},
        },
        "/v1/tasks/query": {
            "task_id": "task_9",
            "status": "completed",
            "result": {
                "video_url": "https://cdn.bytespike.ai/vid/9.mp4",
                "duration_seconds": 8,
                "resolution": "1080p",
                "aspect_ratio": "16:9",
                "watermark": False,
            },
            "credits": 1.85,
            "completed_at": "2026-05-08T13:02:14Z",
            "region": "eu-west",
            "usage": {"gpu_seconds": 312},
        },
        "/v1/tasks/cancel": {
            "task_id": "task_9",
            "status": "cancelled",
            "credits": 0,
            "refund": {"id": "r1"},
        },
    }
    recorder = Recorder(lambda request: answering(answers[request.url.path])(request))
    with recorder.client() as client:
        submission = client.submit(PRO_8S_1080P)
        status = client.poll("sora-2-pro", "task_9")
        cancelled = client.cancel("sora-2-pro", "task_9")
    assert submission.task_id == "task_9" and submission.estimated_credits == Decimal("1.85")
    assert submission.submitted_at == datetime(2026, 5, 8, 13, 0, tzinfo=UTC)
    assert status.state == TaskState.COMPLETED and status.recognised
    assert status.result_url == "https://cdn.bytespike.ai/vid/9.mp4"
    assert status.billed_credits == Decimal("1.85")
    assert status.completed_at == datetime(2026, 5, 8, 13, 2, 14, tzinfo=UTC)
    # The Pro page shows no expiry on a result, only "URLs pre-signed, 24h expiry".
    assert status.result_expires_at == datetime(2026, 5, 9, 13, 2, 14, tzinfo=UTC)
    assert status.extra == {}
    assert cancelled.state == TaskState.CANCELLED and cancelled.billed_credits == Decimal("0")


def test_non_finite_numbers_in_a_poll_are_dropped():
    raw = b'{"task_id": "vid_1", "status": "running", "progress": NaN, "credits": Infinity}'
    recorder = Recorder(answering(raw))
    with recorder.client() as client:
        status = client.poll("sora2", "vid_1")
    assert status.state == TaskState.RUNNING and status.progress is None and status.billed_credits is None


def test_an_undecodable_poll_answer_is_malformed():
    garbage = answering(b"not gzip at all", headers={"content-encoding": "gzip"})
    with Recorder(garbage).client() as client, pytest.raises(MalformedResponse):
        client.poll("sora-2-pro", "task_1")


# --- the credential stays secret ------------------------------------------------------------------------------


def test_the_credential_is_not_in_the_clients_repr():
    with GatewayClient(base_url="http://gateway.test", credential=SENTINEL) as client:
        assert SENTINEL not in repr(client)
        assert SENTINEL not in repr(client.adapter("sora2")) and SENTINEL not in repr(
            client.adapter("sora-2-pro")
        )


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 429, 451, 500, 503])
@BOTH
def test_the_credential_is_in_no_error_message_even_when_the_gateway_echoes_it(status, model):
    echo = {"error": {"code": "x", "message": f"The API key {SENTINEL} cannot do this."}}
    with Recorder(answering(echo, status)).client(credential=SENTINEL) as client:
        for call in (
            lambda: client.submit(CLIPS[model]),
            lambda: client.poll(model, "t1"),
            lambda: client.cancel(model, "t1"),
        ):
            with pytest.raises(GatewayError) as caught:
                call()
            assert SENTINEL not in str(caught.value) and SENTINEL not in caught.value.message
            assert "[redacted]" in caught.value.message


@BOTH
def test_the_credential_is_in_no_transport_error_or_log(model, emulator, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with client_for(f"http://127.0.0.1:{closed}", credential=SENTINEL) as client:
        for call in (lambda: client.submit(CLIPS[model]), lambda: client.poll(model, "t1")):
            with pytest.raises(GatewayError) as caught:
                call()
            assert SENTINEL not in str(caught.value) and SENTINEL not in repr(caught.value)
    emulator.add_fault("poll", kind="status", value="mystery")
    with client_for(emulator.base_url, credential=SENTINEL) as client:
        client.poll(model, client.submit(CLIPS[model]).task_id)
    assert "mystery" in caplog.text
    assert SENTINEL not in caplog.text


# --- submit errors --------------------------------------------------------------------------------------------


@BOTH
def test_a_request_the_gateway_rejects_is_a_bad_request_with_its_message(studio, emulator, model):
    before = emulator.submissions
    bad = RenderRequest(model, "An apple", {**CLIPS[model].params, "duration_seconds": 25})
    with pytest.raises(BadRequest) as caught:
        studio.submit(bad)
    assert caught.value.status == 400 and caught.value.code == "invalid_request"
    assert "duration_seconds must be" in caught.value.message
    assert not caught.value.retryable
    assert emulator.submissions == before


@pytest.mark.parametrize(
    "credential", ["", "   ", "k\r\nX-Injected: 1", "clé"], ids=["empty", "blank", "crlf", "non-ascii"]
)
@BOTH
def test_an_unusable_credential_is_rejected_without_sending_anything(credential, model):
    recorder = Recorder()
    with recorder.client(credential=credential) as client:
        for call in (lambda: client.submit(CLIPS[model]), lambda: client.poll(model, "t1")):
            with pytest.raises(CredentialsRejected) as caught:
                call()
            assert "no usable gateway API key" in caught.value.message
    assert recorder.requests == []


def test_a_credential_with_a_trailing_newline_is_trimmed():
    recorder = Recorder(answering({"task_id": "task_1", "status": "queued"}))
    with recorder.client(credential="k\n") as client:
        client.submit(PRO_CLIP)
    assert recorder.requests[0].headers["x-api-key"] == "k"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, CredentialsRejected),
        (403, CredentialsRejected),
        (402, WalletEmpty),
        (500, GatewayUnavailable),
        (502, GatewayUnavailable),
        (503, GatewayUnavailable),
    ],
)
@BOTH
def test_submit_error_statuses_become_typed_errors_and_create_no_task(studio, emulator, model, status, error):
    before = emulator.submissions
    emulator.add_fault("submit", status=status)
    with pytest.raises(error) as caught:
        studio.submit(CLIPS[model])
    assert type(caught.value) is error and caught.value.status == status
    assert caught.value.retryable == (status >= 500)
    assert caught.value.message  # the gateway's own sentence
    assert emulator.submissions == before


@BOTH
def test_a_blocked_prompt_is_refused_and_never_becomes_a_task(studio, emulator, model):
    before = emulator.submissions
    with pytest.raises(PromptBlocked) as caught:
        studio.submit(BLOCKED[model])
    assert caught.value.status == 451 and caught.value.code == "prompt_blocked"
    assert caught.value.message == "The prompt was blocked by upstream safety."
    assert not caught.value.retryable
    assert emulator.submissions == before


def test_rate_limiting_carries_the_retry_after_seconds(studio, emulator):
    emulator.add_fault("submit", status=429, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        studio.submit(SORA2_CLIP)
    assert caught.value.retry_after == 7.0 and caught.value.retryable and caught.value.status == 429


def in_90s_gmt() -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)


def in_90s_minus_0000() -> str:
    """The "-0000" zone some servers send; it parses to a naive datetime."""
    return email.utils.format_datetime((datetime.now(UTC) + timedelta(seconds=90)).replace(tzinfo=None))


def thirty_seconds_ago() -> str:
    return email.utils.format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("120", 120, 120),
        ("0", 0, 0),
        (in_90s_gmt, 80, 90),
        (in_90s_minus_0000, 80, 90),
        (thirty_seconds_ago, 0, 0),
        (None, 1, 1),
        ("soon", 1, 1),
        ("inf", 1, 1),
    ],
    ids=["seconds", "zero", "http-date", "http-date-0000", "past-date", "absent", "garbage", "infinite"],
)
def test_retry_after_is_read_in_seconds_or_as_an_http_date(header, low, high):
    header = header() if callable(header) else header  # dates are relative to when the test runs
    headers = {"retry-after": header} if header is not None else {}
    limited = answering({"error": {"code": "rate_limited", "message": "Slow down."}}, 429, headers)
    with Recorder(limited).client() as client, pytest.raises(RateLimited) as caught:
        client.submit(PRO_CLIP)
    assert low <= caught.value.retry_after <= high
    assert caught.value.message == "Slow down."


@BOTH
def test_a_submit_that_hangs_past_the_timeout_has_an_unknown_outcome(impatient_studio, emulator, model):
    before = emulator.submissions
    emulator.add_fault("submit", kind="hang", seconds=1.5)
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        impatient_studio.submit(CLIPS[model])
    assert not caught.value.retryable
    assert emulator.submissions == before + 1  # it was accepted: resubmitting would bill twice


@BOTH
def test_a_submit_whose_connection_drops_has_an_unknown_outcome(studio, emulator, model):
    before = emulator.submissions
    emulator.add_fault("submit", kind="drop")
    with pytest.raises(SubmitOutcomeUnknown):
        studio.submit(CLIPS[model])
    assert emulator.submissions == before + 1


@BOTH
def test_a_refused_connection_is_retryable_because_nothing_was_sent(model):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with client_for(f"http://127.0.0.1:{closed}") as client, pytest.raises(GatewayUnavailable) as caught:
        client.submit(CLIPS[model])
    assert type(caught.value) is GatewayUnavailable and caught.value.retryable


def test_a_submit_answer_without_a_task_id_has_an_unknown_outcome():
    for body in ({"status": "queued"}, b'{"task_id": "vid_'):
        with Recorder(answering(body)).client() as client, pytest.raises(SubmitOutcomeUnknown):
            client.submit(SORA2_CLIP)


# --- poll errors ----------------------------------------------------------------------------------------------


@pytest.fixture(params=["sora2", "sora-2-pro"])
def queued_task(request, slow_studio):
    """A task that stays queued or running for the whole test, on the slow gateway."""
    model = request.param
    yield model, slow_studio.submit(CLIPS[model]).task_id


@pytest.mark.parametrize("status", [500, 502, 503])
def test_poll_5xx_is_retryable(slow_studio, slow_emulator, queued_task, status):
    model, task_id = queued_task
    slow_emulator.add_fault("poll", status=status)
    with pytest.raises(GatewayUnavailable) as caught:
        slow_studio.poll(model, task_id)
    assert caught.value.status == status and caught.value.retryable
    assert slow_studio.poll(model, task_id).state in (TaskState.QUEUED, TaskState.RUNNING)


def test_a_slow_poll_times_out_as_unavailable(slow_emulator, queued_task):
    model, task_id = queued_task
    slow_emulator.add_fault("poll", kind="slow", seconds=1.5)
    with client_for(slow_emulator.base_url, timeout=httpx.Timeout(0.5)) as impatient:
        with pytest.raises(GatewayUnavailable) as caught:
            impatient.poll(model, task_id)
    assert caught.value.retryable and "it did not answer in time" in caught.value.message


def test_malformed_poll_json_is_a_malformed_response(slow_studio, slow_emulator, queued_task):
    model, task_id = queued_task
    slow_emulator.add_fault("poll", kind="malformed")
    with pytest.raises(MalformedResponse):
        slow_studio.poll(model, task_id)


def test_an_unknown_status_is_treated_as_running_and_logged(slow_studio, slow_emulator, queued_task, caplog):
    model, task_id = queued_task
    slow_emulator.add_fault("poll", kind="status", value="thinking")
    with caplog.at_level(logging.WARNING, logger="studio.gateway"):
        status = slow_studio.poll(model, task_id)
    assert status.state == TaskState.RUNNING and status.recognised is False
    assert status.raw_status == "thinking"
    assert [r.levelno for r in caplog.records if "thinking" in r.getMessage()] == [logging.WARNING]


@BOTH
def test_polling_a_task_the_gateway_does_not_know_is_not_found(studio, model):
    with pytest.raises(NotFound) as caught:
        studio.poll(model, "vid_0000" if model == "sora2" else "task_0000")
    assert caught.value.status == 404 and not caught.value.retryable


# --- cancel ---------------------------------------------------------------------------------------------------


@BOTH
def test_cancelling_a_queued_task_is_free(slow_studio, model):
    task_id = slow_studio.submit(CLIPS[model]).task_id
    result = slow_studio.cancel(model, task_id)
    assert result.state == TaskState.CANCELLED and result.billed_credits == Decimal("0")
    assert slow_studio.poll(model, task_id).state == TaskState.CANCELLED


LONG = {
    "sora2": RenderRequest("sora2", "A slow pan over a harbour", {"duration_seconds": 5, "size": "1280x720"}),
    "sora-2-pro": RenderRequest(
        "sora-2-pro",
        "A slow pan over a harbour",
        {"duration_seconds": 4, "resolution": "720p", "aspect_ratio": "1:1"},
    ),
}
LONG_FULL = {"sora2": Decimal("0.5"), "sora-2-pro": Decimal("0.555")}


@BOTH
def test_cancelling_a_running_task_bills_part_of_the_clip(slow_studio, model):
    task_id = slow_studio.submit(LONG[model]).task_id
    wait_for(slow_studio, model, task_id, TaskState.RUNNING)
    result = slow_studio.cancel(model, task_id)
    assert result.state == TaskState.CANCELLED
    assert Decimal("0") < result.billed_credits < LONG_FULL[model]
    assert slow_studio.poll(model, task_id).billed_credits == result.billed_credits


@BOTH
def test_a_completed_task_is_not_cancellable(studio, model):
    status = finished(studio, CLIPS[model])
    with pytest.raises(NotCancellable) as caught:
        studio.cancel(model, status.task_id)
    assert caught.value.status == 409 and caught.value.code == "not_cancellable"
    assert studio.poll(model, status.task_id).state == TaskState.COMPLETED


# --- download -------------------------------------------------------------------------------------------------


@pytest.fixture
def clip(studio) -> TaskStatus:
    """A freshly completed small Pro clip."""
    return finished(studio)


def test_a_good_result_streams_into_a_temp_file_in_the_destination(studio, emulator, clip, tmp_path):
    dest = tmp_path / "renders" / "r1"
    downloaded = studio.download(clip.result_url, dest, max_bytes=50 * 1024 * 1024)
    assert downloaded.path.parent == dest and downloaded.path.name.startswith(".download-")
    assert downloaded.content_type == "video/mp4"
    assert (
        downloaded.size
        == downloaded.path.stat().st_size
        == (emulator.clips_dir / f"{clip.task_id}.mp4").stat().st_size
    )
    assert downloaded.path.read_bytes()[4:8] == b"ftyp"
    assert leftovers(dest) == [downloaded.path.name]


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.test/vid/1.mp4",
        "http://cdn.gateway.test.evil.test/vid/1.mp4",
        "http://cdn.gateway.test@evil.test/vid/1.mp4",
        "https://cdn.gateway.test/vid/1.mp4",  # the gateway is configured over http
        "ftp://cdn.gateway.test/vid/1.mp4",
        "/vid/1.mp4",
    ],
)
def test_a_result_off_the_gateways_hosts_is_refused_before_any_request(url, tmp_path):
    recorder = Recorder()
    with recorder.client() as client, pytest.raises(DownloadError) as caught:
        client.download(url, tmp_path / "r", max_bytes=10_000)
    assert caught.value.permanent and not caught.value.expired
    assert recorder.requests == []
    assert leftovers(tmp_path / "r") == []


def test_a_result_on_an_allowed_host_is_fetched(tmp_path):
    recorder = Recorder(
        lambda request: httpx.Response(200, content=MP4_HEAD, headers={"content-type": "video/mp4"})
    )
    with recorder.client() as client:
        for url in (
            "http://cdn.gateway.test/vid/1.mp4",
            "http://CDN.Gateway.Test/vid/2.mp4",
            "http://gateway.test/f/3.mp4",
        ):
            client.download(url, tmp_path, max_bytes=10_000)
    assert len(recorder.requests) == 3


def test_a_redirect_to_another_host_is_refused(studio, emulator, clip, tmp_path):
    emulator.add_fault("result", kind="redirect", location="http://evil.example/clip.mp4")
    with pytest.raises(DownloadError) as caught:
        studio.download(clip.result_url, tmp_path, max_bytes=50 * 1024 * 1024)
    assert caught.value.permanent and "evil.example" in caught.value.message
    assert leftovers(tmp_path) == []


def test_a_redirect_to_another_scheme_is_refused(studio, emulator, clip, tmp_path):
    parts = urlsplit(clip.result_url)
    emulator.add_fault("result", kind="redirect", location=parts._replace(scheme="https").geturl())
    with pytest.raises(DownloadError) as caught:
        studio.download(clip.result_url, tmp_path, max_bytes=50 * 1024 * 1024)
    assert caught.value.permanent


def test_a_redirect_on_the_same_host_is_followed(studio, emulator, clip, tmp_path):
    parts = urlsplit(clip.result_url)
    emulator.add_fault("result", kind="redirect", location=f"{parts.path}?{parts.query}")
    downloaded = studio.download(clip.result_url, tmp_path, max_bytes=50 * 1024 * 1024)
    assert downloaded.size > 1000 and downloaded.path.read_bytes()[4:8] == b"ftyp"
    assert emulator.pending_faults() == {}


def test_endless_redirects_give_up(studio, emulator, clip, tmp_path):
    emulator.add_fault("result", times=10, kind="redirect", location=urlsplit(clip.result_url).path)
    with pytest.raises(DownloadError) as caught:
        studio.download(clip.result_url, tmp_path, max_bytes=50 * 1024 * 1024)
    assert caught.value.permanent and "redirects" in caught.value.message


def test_an_expired_result_url_is_reported_as_expired(studio, emulator, clip, tmp_path):
    emulator.expire_results()
    with pytest.raises(DownloadError) as caught:
        studio.download(clip.result_url, tmp_path, max_bytes=50 * 1024 * 1024)
    assert caught.value.expired
    assert leftovers(tmp_path) == []


def test_a_truncated_result_is_retryable_and_leaves_no_file(studio, emulator, clip, tmp_path):
    emulator.add_fault("result", kind="truncate")
    with pytest.raises(DownloadError) as caught:
        studio.download(clip.result_url, tmp_path, max_bytes=50 * 1024 * 1024)
    assert not caught.value.permanent and not caught.value.expired
    assert leftovers(tmp_path) == []
    assert studio.download(clip.result_url, tmp_path, max_bytes=50 * 1024 * 1024).size > 1000


def test_a_short_body_is_truncated_even_when_the_connection_survives(tmp_path):
    def short(request):
        return httpx.Response(
            200,
            headers={"content-length": "5000", "content-type": "video/mp4"},
            stream=httpx.ByteStream(MP4_HEAD),
        )

    with Recorder(short).client() as client, pytest.raises(DownloadError) as caught:
        client.download("http://cdn.gateway.test/vid/1.mp4", tmp_path, max_bytes=10_000)
    assert "truncated" in caught.value.message and not caught.value.permanent
    assert leftovers(tmp_path) == []


def test_a_result_of_the_wrong_type_is_refused_and_leaves_no_file(studio, emulator, clip, tmp_path):
    emulator.add_fault("result", kind="wrong_type")
    with pytest.raises(DownloadError) as caught:
        studio.download(clip.result_url, tmp_path, max_bytes=50 * 1024 * 1024)
    assert "not an MP4" in caught.value.message and "text/html" in caught.value.message
    assert leftovers(tmp_path) == []


def test_a_result_over_the_size_cap_is_refused_and_leaves_no_file(studio, clip, tmp_path):
    with pytest.raises(DownloadError) as caught:
        studio.download(clip.result_url, tmp_path, max_bytes=1000)
    assert caught.value.permanent and "cap" in caught.value.message
    assert leftovers(tmp_path) == []


def test_an_undeclared_length_over_the_cap_stops_the_stream_and_leaves_no_file(tmp_path):
    def endless(request):
        chunks = (MP4_HEAD + bytes(4096) for _ in range(1000))
        return httpx.Response(
            200, headers={"content-type": "video/mp4"}, stream=httpx.ByteStream(b"".join(chunks))
        )

    with Recorder(endless).client() as client, pytest.raises(DownloadError) as caught:
        client.download("http://cdn.gateway.test/vid/1.mp4", tmp_path, max_bytes=100_000)
    assert caught.value.permanent
    assert leftovers(tmp_path) == []
