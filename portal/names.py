"""Names people choose (datasets, column labels, display names): the characters refused in them.

Kept apart from ``portal.datasets`` so that ``portal.users`` can apply the same rule without
importing the data-loading stack.
"""

from __future__ import annotations

import unicodedata

INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
"""Unicode categories refused in a dataset's name, its column labels and a display name: control
and format characters (zero-width spaces, bidi overrides), private-use, surrogate and unassigned
code points. Such a name can look exactly like another one, and be chosen in the wrong place."""


def hidden_character(text: str, allowed: frozenset[str] = frozenset()) -> tuple[int, str] | None:
    """The first invisible or control character of ``text`` not in ``allowed``, as (its
    1-based position, its code point written U+XXXX), or None."""
    for position, ch in enumerate(text, start=1):
        if ch not in allowed and unicodedata.category(ch) in INVISIBLE_CATEGORIES:
            return position, f"U+{ord(ch):04X}"
    return None
