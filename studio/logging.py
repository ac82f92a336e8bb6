"""A logging filter that keeps the gateway credential out of every log line."""

from __future__ import annotations

import logging

REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Replace the API key wherever it appears in a record's message, arguments or traceback (defence in depth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from django.conf import settings

        secret = getattr(settings, "BYTESPIKE_API_KEY", "")
        if not secret:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call: let logging report it as it always does
            return True
        if secret in message:
            record.msg = message.replace(secret, REDACTED)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and secret in record.exc_text:
            record.exc_text = record.exc_text.replace(secret, REDACTED)
        if record.stack_info and secret in record.stack_info:
            record.stack_info = record.stack_info.replace(secret, REDACTED)
        return True
