"""When to poll a render next: a pure function of how long the gateway has had it.

The Pro page recommends every 2 s for the first 90 s, then every 5 s up to 240 s. It says nothing after that,
so the studio backs off (10 s, 20 s, 30 s, then every 60 s) up to a hard deadline, past which the render is
`stalled` and an operator looks at it.
"""

from __future__ import annotations

DOCUMENTED = ((90.0, 2.0), (240.0, 5.0))
BACKOFF = ((300.0, 10.0), (420.0, 20.0), (840.0, 30.0))
LATE_INTERVAL = 60.0


def poll_delay(elapsed: float, stall_after: float) -> float | None:
    """Seconds until the next poll of a task submitted `elapsed` seconds ago; None once it has stalled."""
    if elapsed >= stall_after:
        return None
    delay = LATE_INTERVAL
    for until, interval in DOCUMENTED + BACKOFF:
        if elapsed < until:
            delay = interval
            break
    return min(delay, stall_after - elapsed)
