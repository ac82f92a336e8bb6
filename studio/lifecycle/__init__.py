"""The render lifecycle: submit, poll (and cancel), download, the poller and the sweep, each safe to run twice.

- `transitions`: `advance()`, the one conditional update every step uses, and what the steps share;
- `submit`, `poll`, `download`: one step each, taking a render id;
- `poller`: the leased loop that keeps in-flight renders on cadence; `sweep`: revives anything stuck.
The django-q2 entry points are in `studio.tasks`; `studio.queue` queues them.
"""
