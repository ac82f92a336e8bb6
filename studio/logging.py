"""A logging filter that keeps the gateway credential out of every log line."""

from __future__ import annotations

import logging

REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Replace the API key wherever it appears in a record's message or arguments (defence in depth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from django.conf import settings

        secret = getattr(settings, "BYTESPIKE_API_KEY", "")
        if not secret:
            return True
        message = record.getMessage()
        if secret in message:
            record.msg = message.replace(secret, REDACTED)
            record.args = None
        return True
