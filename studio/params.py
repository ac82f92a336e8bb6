"""Values the user sends (a query string, a tag name, a command-line option): the one error for a value the studio
cannot use.

Pure: no database, no HTTP. The gallery's filters and tag names (`studio.gallery`), the money pages' team, month
and tolerance (`access.money_scope_for_user`, `studio.money.params`) raise `BadValue`. Page views answer it with
400 and its message (`views.decorators.answers_400`); the tag view as a toast; the `money` command as a
CommandError.
"""

from __future__ import annotations


class BadValue(ValueError):
    """A value from the user the studio cannot use; the message says why and is safe to show."""
