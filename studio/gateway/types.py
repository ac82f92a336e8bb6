"""Typed results and errors of the gateway client, shared by both protocol adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class TaskState(StrEnum):
    """A gateway task's status, normalised across both protocols."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.EXPIRED}


@dataclass(frozen=True)
class RenderRequest:
    """What to render: the model key, the prompt, the model's parameters and an optional init image."""

    model: str
    prompt: str
    params: dict
    image: str | None = None  # an http(s) URL or a data: URI


@dataclass(frozen=True)
class Submission:
    task_id: str
    status: TaskState
    estimated_credits: Decimal | None = None
    submitted_at: datetime | None = None


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    state: TaskState
    raw_status: str
    recognised: bool = True  # False: an unknown status, treated as still running
    progress: int | None = None
    result_url: str | None = None
    result_expires_at: datetime | None = None
    billed_credits: Decimal | None = None
    completed_at: datetime | None = None
    error_code: str = ""
    error_message: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CancelResult:
    state: TaskState
    billed_credits: Decimal | None = None


class GatewayError(Exception):
    """An error answer or a transport failure. `billed` says whether the gateway documents it as billed."""

    retryable = False
    billed = False

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class BadRequest(GatewayError):
    """400: the gateway's message belongs on the form."""


class CredentialsRejected(GatewayError):
    """401/403: the API key is missing, wrong or lacks the scope; submissions pause."""


class WalletEmpty(GatewayError):
    """402: the gateway wallet has no credit left."""


class PromptBlocked(GatewayError):
    """451: upstream safety blocked the prompt; never retried, never billed."""


class NotFound(GatewayError):
    """404: the gateway does not know the task."""


class NotCancellable(GatewayError):
    """409 on cancel: the task already ended."""


class RateLimited(GatewayError):
    """429: try again after `retry_after` seconds."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float, status: int = 429, code: str = "") -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class GatewayUnavailable(GatewayError):
    """5xx, or a connection that failed before the request was sent: documented as not billed, retried."""

    retryable = True


class SubmitOutcomeUnknown(GatewayError):
    """The submit request may have reached the gateway but no answer came back: never resubmit blindly."""


class MalformedResponse(GatewayError):
    """The gateway answered something that is not the documented shape."""


class DownloadError(Exception):
    """A result download that failed; `expired` when the pre-signed URL no longer works."""

    def __init__(self, message: str, *, expired: bool = False, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired
        self.permanent = permanent
