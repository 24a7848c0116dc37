"""Text shown through Streamlit's Markdown (alerts, captions, widget labels) as it is written:
names, values and messages that quote them are data, not formatting."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")
# A ":" before a letter too: Streamlit reads ":red[…]", ":material/…:" and emoji codes (one
# before a space, "Name: ann", is left alone: widget labels are their accessible names).
_DIRECTIVE = re.compile(r":(?=[A-Za-z_])")
# What formats text wherever it stands: emphasis, code, links, strike-through, LaTeX ($).
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]~$])")
# What formats a line by how it starts (the first, or one after a line break): a heading, a
# quote, a list item, a rule or underline; a numbered item ("1." or "1)") by its mark.
_LINE_START = re.compile(r"((?:\A|\n)[ \t]*)([#>+\-=])")
_NUMBERED = re.compile(r"((?:\A|\n)[ \t]*\d+)([.)])")
# GitHub-style autolinks (http://…, www.…, a@b.c) are found in the text after its escapes are
# read, so no escape stops them: a name holding a URL became a link, its escapes showing in it.
# An invisible word joiner after "http", "www" and "@" breaks the pattern; the text reads the
# same.
_AUTOLINK_START = re.compile(r"(?i)(https?(?=:)|\bwww(?=\\?\.)|@)")
WORD_JOINER = "\u2060"


def md_escape(text: str) -> str:
    """Show ``text`` literally inside Markdown (names are data, not formatting): every character
    Markdown may read is escaped."""
    escaped = _DIRECTIVE.sub(r"\\:", _MARKDOWN_SPECIAL.sub(r"\\\1", text))
    return _AUTOLINK_START.sub(rf"\1{WORD_JOINER}", escaped)


def md_text(message: str) -> str:
    """Show a message literally inside Markdown, escaping only what would format it: the
    portal's messages quote values and names (“a*b*c”, a price in $), which must not turn into
    italics, links or formulas, while the sentence around them reads as written."""
    escaped = _DIRECTIVE.sub(r"\\:", _INLINE_SPECIAL.sub(r"\\\1", message))
    escaped = _LINE_START.sub(r"\1\\\2", escaped)
    escaped = _NUMBERED.sub(r"\1\\\2", escaped)
    return _AUTOLINK_START.sub(rf"\1{WORD_JOINER}", escaped)
