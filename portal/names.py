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


INVISIBLE_LETTERS = frozenset(
    "\u034f"  # combining grapheme joiner
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers: letters that draw nothing
    "\u17b4\u17b5"  # Khmer inherent vowels, drawn as nothing
    "\u180b\u180c\u180d\u180f"  # Mongolian free variation selectors
    "\u2800"  # Braille pattern blank: a symbol that draws as a space
)
"""Characters of other categories (letters, marks, a symbol) refused for the same reason: they
draw nothing, so "Sales" with one is another name that reads "Sales". Unicode lists them as
default-ignorable, or, for the Braille blank, is used as such. Variation selectors are kept: an
emoji's (U+FE0F) is part of how it is drawn."""


def hidden_character(text: str, allowed: frozenset[str] = frozenset()) -> tuple[int, str] | None:
    """The first invisible or control character of ``text`` not in ``allowed``, as (its
    1-based position, its code point written U+XXXX), or None."""
    for position, ch in enumerate(text, start=1):
        if ch in allowed:
            continue
        if ch in INVISIBLE_LETTERS or unicodedata.category(ch) in INVISIBLE_CATEGORIES:
            return position, f"U+{ord(ch):04X}"
    return None
