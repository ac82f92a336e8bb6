"""The two protocols the gateway speaks, as the vendor pages document them: what a request may say, what an
answer looks like, and the JSON error shape every failure shares.

- "OpenAI Video" (`sora2`, `Authorization: Bearer`): submit answers `task_id, status, model, created_at`;
  a poll answers a flat record with `result_url`.
- tasks API (`sora-2-pro`, `x-api-key`): submit answers `task_id, status, estimated_credits, submitted_at`;
  a poll answers a record with a nested `result`.

Pure: no state, no sockets. `validate_*` turn a request body into a task spec (or raise ApiError 400); the
`*_submitted`/`*_status` functions turn a task record and its derived view (see state.py) into an answer.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import UTC, datetime
from email.message import Message
from typing import TypeGuard, overload
from urllib.parse import urlsplit

from . import video

SORA2 = "sora2"
PRO = "sora-2-pro"
OPENAI = "openai"
TASKS = "tasks"

SORA2_RATE = 0.10  # credits per generated second
PRO_RATE_1080P = 0.23125  # the Pro page's example: 8 s at 1080p = 1.85 credits
PRO_RATE_720P = round(PRO_RATE_1080P * 0.6, 6)  # 0.13875
# The emulator keeps its own copy of the pages' facts (durations, sizes, Pro frame sizes, ...) on purpose, though
# studio/catalog.py holds the same: it stands in for an independent gateway written from the two pages, so a
# mistake in the studio's catalog shows up as a refusal here instead of being shared by both sides.
SORA2_DURATIONS = (5, 10, 15)
PRO_DURATIONS = range(1, 21)
SORA2_SIZES = ("1280x720", "1920x1080")
PRO_RESOLUTIONS = ("720p", "1080p")
PRO_ASPECTS = ("16:9", "9:16", "1:1")
PRO_STYLES = ("cinematic", "anime", "documentary", "none")
PRO_FRAMES = {
    ("1080p", "16:9"): (1920, 1080),
    ("1080p", "9:16"): (1080, 1920),
    ("1080p", "1:1"): (1080, 1080),
    ("720p", "16:9"): (1280, 720),
    ("720p", "9:16"): (720, 1280),
    ("720p", "1:1"): (720, 720),
}
MAX_PROMPT = 4000
TERMINAL = ("completed", "failed", "cancelled")

ERROR_CODES = {
    400: ("invalid_request", "The request is invalid."),
    401: ("unauthorized", "The API key is missing or invalid."),
    402: ("insufficient_credits", "The wallet has insufficient credits for this request."),
    403: ("forbidden", "The API key does not have the scope for this request."),
    404: ("not_found", "The requested resource was not found."),
    405: ("method_not_allowed", "The method is not allowed for this path."),
    409: ("conflict", "The request conflicts with the task's state."),
    413: ("payload_too_large", "The request body is too large."),
    429: ("rate_limited", "Too many requests; slow down."),
    451: ("prompt_blocked", "The prompt was blocked by upstream safety."),
    500: ("internal_error", "The gateway had an internal error."),
    502: ("bad_gateway", "The upstream model provider returned an invalid response."),
    503: ("service_unavailable", "The gateway is temporarily unavailable."),
    501: ("not_implemented", "The method is not supported."),
    504: ("gateway_timeout", "The upstream model provider timed out."),
}


class ApiError(Exception):
    """An error answer: status, snake_case code, a sentence, optional extra error fields and headers."""

    def __init__(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict | None = None,
    ) -> None:
        default_code, default_message = ERROR_CODES.get(status, ("error", f"The gateway answered {status}."))
        super().__init__(message or default_message)
        self.status = status
        self.code = code or default_code
        self.message = message or default_message
        self.headers: dict[str, str] = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def invalid(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", message, extra={"param": param})


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with a Z, to the second (as the vendor pages show)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool (JSON `true` must not pass for 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


# --- credentials ------------------------------------------------------------------------------------------


def credential(protocol: str, headers: Message) -> str:
    """The API key the request carries in its protocol's header; ApiError 401 when there is none."""
    if protocol == OPENAI:
        header = (headers.get("Authorization") or "").strip()
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer":
            key = ""
        missing = "Send your API key as 'Authorization: Bearer <key>'."
    else:
        key = headers.get("x-api-key") or ""
        missing = "Send your API key in the x-api-key header."
    key = key.strip()
    if not key:
        raise ApiError(401, "unauthorized", f"The API key is missing. {missing}")
    return key


# --- validation -------------------------------------------------------------------------------------------


def _check_model(body: dict, expected: str) -> None:
    model = body.get("model")
    if model is None:
        raise invalid("model", f'model is required and must be "{expected}"')
    if model != expected:
        raise invalid("model", f'model must be "{expected}" on this endpoint')


def _check_prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if prompt is None:
        raise invalid("prompt", "prompt is required")
    if not isinstance(prompt, str):
        raise invalid("prompt", "prompt must be a string")
    if not prompt.strip():
        raise invalid("prompt", "prompt must not be empty")
    if len(prompt) > MAX_PROMPT:
        raise invalid("prompt", f"prompt must be at most {MAX_PROMPT} characters")
    return prompt


def _check_duration(body: dict, allowed: Container[int], rule: str) -> int:
    duration = body.get("duration_seconds")
    if duration is None:
        raise invalid("duration_seconds", f"duration_seconds is required and must be {rule}")
    if not is_int(duration) or duration not in allowed:
        raise invalid("duration_seconds", f"duration_seconds must be {rule}")
    return duration


@overload
def _check_choice(body: dict, field: str, choices: tuple[str, ...], default: str) -> str: ...
@overload
def _check_choice(body: dict, field: str, choices: tuple[str, ...], default: None) -> str | None: ...
def _check_choice(body: dict, field: str, choices: tuple[str, ...], default: str | None) -> str | None:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, str) or value not in choices:
        raise invalid(field, f"{field} must be one of {', '.join(choices)}")
    return value


def _check_image(body: dict, field: str) -> tuple[str | None, bytes | None]:
    """(kind, decoded bytes) of an optional image field: kind is "url" or "data"; bytes only for data URIs."""
    value = body.get(field)
    if value is None:
        return None, None
    message = f"{field} must be an http(s) URL or a data:image/...;base64, URI"
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, message)
    value = value.strip()
    if value.lower().startswith("data:"):
        data = video.decode_data_uri(value)
        if not data:
            raise invalid(field, message)
        return "data", data
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid(field, message)
    return "url", None


def validate_sora2(body: dict) -> dict:
    """The task spec of an OpenAI Video submit body."""
    _check_model(body, SORA2)
    prompt = _check_prompt(body)
    duration = _check_duration(body, SORA2_DURATIONS, "one of 5, 10, 15")
    size = _check_choice(body, "size", SORA2_SIZES, "1280x720")
    image_kind, image = _check_image(body, "source_image")
    width, height = (int(n) for n in size.split("x"))
    return {
        "protocol": OPENAI,
        "model": SORA2,
        "prompt": prompt,
        "params": {"duration_seconds": duration, "size": size, "source_image": image_kind},
        "duration": duration,
        "width": width,
        "height": height,
        "seed": None,
        "rate": SORA2_RATE,
        "image": image,
    }


def validate_pro(body: dict) -> dict:
    """The task spec of a tasks API submit body."""
    _check_model(body, PRO)
    prompt = _check_prompt(body)
    duration = _check_duration(body, PRO_DURATIONS, "an integer from 1 to 20")
    resolution = _check_choice(body, "resolution", PRO_RESOLUTIONS, "1080p")
    aspect = _check_choice(body, "aspect_ratio", PRO_ASPECTS, "16:9")
    seed = body.get("seed")
    if seed is not None and (not is_int(seed) or not 0 <= seed < 2**32):
        raise invalid("seed", "seed must be an integer from 0 to 4294967295")
    style = _check_choice(body, "style_preset", PRO_STYLES, None)
    image_kind, image = _check_image(body, "image_init")
    width, height = PRO_FRAMES[(resolution, aspect)]
    return {
        "protocol": TASKS,
        "model": PRO,
        "prompt": prompt,
        "params": {
            "duration_seconds": duration,
            "resolution": resolution,
            "aspect_ratio": aspect,
            "seed": seed,
            "style_preset": style,
            "image_init": image_kind,
        },
        "duration": duration,
        "width": width,
        "height": height,
        "seed": seed,
        "rate": PRO_RATE_1080P if resolution == "1080p" else PRO_RATE_720P,
        "image": image,
    }


# --- answers ----------------------------------------------------------------------------------------------


def openai_submitted(record: dict) -> dict:
    """The OpenAI Video answer to an accepted submit."""
    return {
        "task_id": record["task_id"],
        "status": "queued",
        "model": SORA2,
        "created_at": iso(record["submitted_at"]),
    }


def tasks_submitted(record: dict) -> dict:
    """The tasks API answer to an accepted submit."""
    return {
        "task_id": record["task_id"],
        "status": "queued",
        "estimated_credits": record["estimated_credits"],
        "submitted_at": iso(record["submitted_at"]),
    }


def openai_status(record: dict, view: dict, url: str | None) -> dict:
    """The OpenAI Video answer to a poll; `url` is the signed result URL once completed."""
    return {
        "task_id": record["task_id"],
        "status": view["status"],
        "progress": view["progress"],
        "result_url": url,
        "duration_seconds": record["duration_seconds"],
        "size": record["params"]["size"],
        "credits": view["credits"],
        "error": view["error"],
        "created_at": iso(record["submitted_at"]),
        "completed_at": iso(view["completed_at"]),
        "expires_at": iso(view["expires_at"]),
    }


def tasks_status(record: dict, view: dict, url: str | None) -> dict:
    """The tasks API answer to a poll; `url` is the signed result URL once completed."""
    result = None
    if view["status"] == "completed":
        result = {
            "video_url": url,
            "duration_seconds": record["duration_seconds"],
            "resolution": record["params"]["resolution"],
            "aspect_ratio": record["params"]["aspect_ratio"],
            "expires_at": iso(view["expires_at"]),
        }
    return {
        "task_id": record["task_id"],
        "status": view["status"],
        "progress": view["progress"],
        "result": result,
        "credits": view["credits"],
        "submitted_at": iso(record["submitted_at"]),
        "completed_at": iso(view["completed_at"]),
        "error": view["error"],
    }
