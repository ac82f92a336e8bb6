"""What the studio accepts as text from people: the one home of the control-character rule. Pure."""

from __future__ import annotations

import unicodedata

# Cc: C0/C1 controls (NUL, escapes, newlines, tabs). Every text field refuses them, except the whitespace it allows.
CONTROLS = frozenset({"Cc"})
# One-line names also refuse Unicode line and paragraph separators (Zl, Zp), which break a line like a newline.
LINE_BREAKS = frozenset({"Zl", "Zp"})
# Names shown to others also refuse format characters (Cf): bidi overrides and invisible joiners that disguise them.
FORMAT = frozenset({"Cf"})


def control_characters(text: str, *, allow: str = "", also: frozenset[str] = frozenset()) -> list[str]:
    """The characters of `text` in a control category (Cc, plus the categories `also` names), except `allow`."""
    refused = CONTROLS | also
    return [char for char in text if unicodedata.category(char) in refused and char not in allow]
