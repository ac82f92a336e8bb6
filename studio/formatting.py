"""Durations, moments in a clip and stored errors as people read them: the one home of these formats.

Pure (no Django, no database). The template filters (`studio_tags`) and the lifecycle's messages call these;
static/studio/app.js mirrors `duration` and `clip_time` for the clocks that tick in the browser.
"""

from __future__ import annotations

import re


def duration(seconds: float, *, hours: bool = True) -> str:
    """A duration, rounded to the second: "42 s", "3 min 05 s", "1 h 02 min".

    `hours=False` keeps counting minutes past the hour ("65 min 00 s"): the cards' ticking clock, whose last
    field must change every second.
    """
    total = max(0, round(seconds))
    whole_hours, rest = divmod(total, 3600) if hours else (0, total)
    minutes, secs = divmod(rest, 60)
    if whole_hours:
        return f"{whole_hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def duration_in_words(seconds: float) -> str:
    """A duration in a sentence, truncated: "1 second", "90 seconds", "60 minutes" (whole minutes from 2 on)."""
    whole = int(seconds)
    if whole >= 120:
        return f"{whole // 60} minutes"
    return f"{whole} second{'' if whole == 1 else 's'}"


def clip_time(seconds: float) -> str:
    """A moment in a clip, truncated to the tenth as the player shows it (never past the moment): 12.34 -> "0:12.3"."""
    tenths = int(float(seconds) * 10)
    minutes, tenths = divmod(tenths, 600)
    return f"{minutes}:{tenths // 10:02d}.{tenths % 10}"


# "(RemoteProtocolError)", "(ConnectTimeout)": the class name of an exception, which older rows stored in their
# error. People read what happened and what happens next, never the internals' names.
_EXCEPTION_NAME = re.compile(r"\s*\((?:[A-Z][a-z]+)+(?:Error|Timeout|Exception|Protocol|Redirects)\)")


def without_exception_names(text: str) -> str:
    """`text` with any parenthesised exception class name taken out."""
    return _EXCEPTION_NAME.sub("", text)
